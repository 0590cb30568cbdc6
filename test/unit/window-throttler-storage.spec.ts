import { WindowThrottlerStorage } from '../../src/http/window-throttler-storage';

describe('the throttler storage (a sliding log)', () => {
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
    now += 400;
    const refused = await hit();
    expect(refused).toMatchObject({ isBlocked: true, totalHits: 6, timeToBlockExpire: 1 });
    expect(await allowed(100)).toBe(0);
    expect(await allowed(5, 'other')).toBe(5); // keys are counted apart
  });

  it('never lets more than the limit in within any window, even across a boundary', async () => {
    now += 599; // 999 ms after the five: still inside their window
    expect(await allowed(10)).toBe(0);
    now += 1; // the five leave the window together
    expect(await allowed(10)).toBe(5);
    // From then on the five slots free again exactly one window after they were taken.
    for (let step = 0; step < 20; step++) {
      now += 100;
      const inWindow = await allowed(10);
      expect(inWindow).toBe(step % 10 === 9 ? 5 : 0);
    }
  });

  it('forgets a key idle for a while: the full limit again', async () => {
    now += 20_000;
    expect(await allowed(10)).toBe(5);
    expect(await storage.increment('fresh', 1000, 5, 1000, 'identity')).toMatchObject({ isBlocked: false, totalHits: 1, timeToBlockExpire: 0 });
  });
});
