import { intoWindow, nextRotation } from '../../src/statics/schedule';

describe('rotation schedule', () => {
  const from = new Date('2026-11-23T10:17:00Z');

  it('rotate_every counts from the last rotation', () => {
    expect(nextRotation({ rotate_every: 86400 }, from)?.toISOString()).toBe('2026-11-24T10:17:00.000Z');
  });

  it('rotate_cron is read in UTC', () => {
    expect(nextRotation({ rotate_cron: '0 3 * * *' }, from)?.toISOString()).toBe('2026-11-24T03:00:00.000Z');
    expect(nextRotation({ rotate_cron: '*/15 * * * *' }, from)?.toISOString()).toBe('2026-11-23T10:30:00.000Z');
  });

  it('a window moves a due time to the window\'s next start, and leaves times inside it alone', () => {
    expect(nextRotation({ rotate_every: 3600, window: '02:00-05:00' }, from)?.toISOString()).toBe('2026-11-24T02:00:00.000Z');
    expect(intoWindow(new Date('2026-11-23T03:30:00Z'), '02:00-05:00').toISOString()).toBe('2026-11-23T03:30:00.000Z');
    expect(intoWindow(new Date('2026-11-23T01:00:00Z'), '02:00-05:00').toISOString()).toBe('2026-11-23T02:00:00.000Z');
  });

  it('a window may wrap midnight', () => {
    expect(intoWindow(new Date('2026-11-23T23:30:00Z'), '22:00-02:00').toISOString()).toBe('2026-11-23T23:30:00.000Z');
    expect(intoWindow(new Date('2026-11-23T01:30:00Z'), '22:00-02:00').toISOString()).toBe('2026-11-23T01:30:00.000Z');
    expect(intoWindow(new Date('2026-11-23T12:00:00Z'), '22:00-02:00').toISOString()).toBe('2026-11-23T22:00:00.000Z');
  });

  it('no cadence: on demand only', () => {
    expect(nextRotation({}, from)).toBeNull();
  });
});
