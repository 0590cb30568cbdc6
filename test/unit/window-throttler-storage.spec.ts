import { WindowThrottlerStorage } from '../../src/http/window-throttler-storage';

describe('the throttler storage (sliding window from two fixed ones)', () => {
  let now = 1_000_000;
  const storage = new WindowThrottlerStorage(() => now);
  const hit = (key = 'k') => storage.increment(key, 1000, 5, 1000, 'identity');
  const allowed = async (n: number, key = 'k') => {
    let ok = 0;
    for (let i = 0; i < n; i++) if (!(await hit(key)).isBlocked) ok++;
    return ok;
  };

  it('allows the limit in a window, refuses the rest without counting them, and says when to retry', async () => {
    expect(await allowed(5)).toBe(5);
    const refused = await hit();
    expect(refused).toMatchObject({ isBlocked: true, totalHits: 6 });
    expect(refused.timeToBlockExpire).toBeGreaterThanOrEqual(1);
    expect(await allowed(100)).toBe(0);
    expect(await allowed(5, 'other')).toBe(5); // keys are counted apart
  });

  it('slides: half a window later half of the previous window has left, so about half the limit is free', async () => {
    now += 1500; // the 5 hits are now in the previous window, which overlaps the sliding one by half
    expect(await allowed(10)).toBe(2); // 5 × 0.5 + 2 = 4.5; a third would reach 5.5 > 5
    now += 500; // the previous window (the 5) is gone; the 2 are now the previous one, fully overlapping
    expect(await allowed(10)).toBe(3);
  });

  it('forgets a key idle for two windows: the full limit again', async () => {
    now += 2000;
    expect(await allowed(10)).toBe(5);
    const first = await storage.increment('fresh', 1000, 5, 1000, 'identity');
    expect(first).toMatchObject({ isBlocked: false, totalHits: 1, timeToBlockExpire: 0 });
  });
});
