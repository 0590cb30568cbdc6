import type { ThrottlerStorage } from '@nestjs/throttler';

/** The times (ms, monotonic) of the requests a key was let in with inside the window, oldest first. */
interface Hits {
  times: number[];
  /** Index of the oldest time still in the window; the entries before it are spent. */
  head: number;
}

/**
 * The throttler's counts in memory (per process): a sliding log, exact like the library's own storage
 * (never more than `limit` requests let in within any `ttl`), but each request drops the times that
 * left the window from the front instead of filtering every time it holds, so its cost no longer grows
 * with the rate allowed. A refused request is not counted, and `Retry-After` is when the oldest counted
 * request leaves the window (the library would refuse a key for `blockDuration` once it went over;
 * here it gets in as soon as it is within its rate again). A key holds at most `limit` times; idle
 * keys are forgotten. Times come from a monotonic clock, so a wall-clock step neither blocks nor frees
 * anyone.
 */
export class WindowThrottlerStorage implements ThrottlerStorage {
  private readonly keys = new Map<string, Hits>();
  private sweptAt: number;

  constructor(private readonly now: () => number = () => performance.now()) {
    this.sweptAt = now();
  }

  async increment(key: string, ttl: number, limit: number, _blockDuration: number, _throttlerName: string) {
    const now = this.now();
    if (now - this.sweptAt > 10 * ttl) this.sweep(now, ttl);
    let hits = this.keys.get(key);
    if (!hits) this.keys.set(key, (hits = { times: [], head: 0 }));
    const { times } = hits;
    while (hits.head < times.length && times[hits.head] <= now - ttl) hits.head++;
    if (hits.head > 64 && hits.head * 2 > times.length) {
      times.splice(0, hits.head);
      hits.head = 0;
    }
    const counted = times.length - hits.head;
    const isBlocked = counted >= limit;
    if (!isBlocked) times.push(now);
    // The window's start moves with the oldest counted request: it leaves the window at oldest + ttl.
    const oldest = times[hits.head] ?? now;
    const freesAt = isBlocked ? times[times.length - limit] + ttl : oldest + ttl;
    return {
      totalHits: isBlocked ? limit + 1 : counted + 1,
      timeToExpire: Math.max(1, Math.ceil((oldest + ttl - now) / 1000)),
      isBlocked,
      timeToBlockExpire: isBlocked ? Math.max(1, Math.ceil((freesAt - now) / 1000)) : 0,
    };
  }

  private sweep(now: number, ttl: number): void {
    this.sweptAt = now;
    for (const [key, hits] of this.keys) {
      const newest = hits.times[hits.times.length - 1];
      if (newest === undefined || newest <= now - ttl) this.keys.delete(key);
    }
  }
}
