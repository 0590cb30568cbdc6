import type { ThrottlerStorage } from '@nestjs/throttler';

interface Window {
  /** Start of the current window (ms). */
  start: number;
  /** Requests counted in the current window and in the one before it. */
  current: number;
  previous: number;
}

/**
 * The throttler's counts in memory (per process), as a sliding window estimated from two fixed ones:
 * the requests of the current window plus the previous window's, weighted by how much of it still
 * overlaps the sliding one. Constant work and memory per key and request; the library's own storage
 * keeps one timestamp per request and filters them all on every request, so its cost grows with the
 * rate it is asked to allow. A refused request is not counted (a client that keeps hammering is let
 * in again as soon as its allowed rate frees a slot). Idle keys are forgotten.
 */
export class WindowThrottlerStorage implements ThrottlerStorage {
  private readonly windows = new Map<string, Window>();
  private sweptAt = 0;

  constructor(private readonly now: () => number = Date.now) {}

  async increment(key: string, ttl: number, limit: number, _blockDuration: number, _throttlerName: string) {
    const now = this.now();
    if (now - this.sweptAt > 10 * ttl) this.sweep(now, ttl);
    let w = this.windows.get(key);
    if (!w) this.windows.set(key, (w = { start: now, current: 0, previous: 0 }));
    const elapsed = now - w.start;
    if (elapsed >= 2 * ttl) Object.assign(w, { start: now, current: 0, previous: 0 });
    else if (elapsed >= ttl) Object.assign(w, { start: w.start + ttl, previous: w.current, current: 0 });
    const overlap = 1 - (now - w.start) / ttl;
    const estimate = w.previous * overlap + w.current;
    const isBlocked = estimate + 1 > limit;
    if (!isBlocked) w.current += 1;
    const timeToExpire = Math.max(1, Math.ceil((w.start + ttl - now) / 1000));
    // Refused: the estimate falls below the limit once enough of the previous window has slid out,
    // or at the latest when the current one ends.
    let wait = w.start + ttl - now;
    if (isBlocked && w.previous > 0 && w.current + 1 <= limit) wait = Math.min(wait, ((estimate + 1 - limit) / w.previous) * ttl);
    return {
      totalHits: isBlocked ? limit + 1 : Math.ceil(estimate + 1),
      timeToExpire,
      isBlocked,
      timeToBlockExpire: isBlocked ? Math.max(1, Math.ceil(wait / 1000)) : 0,
    };
  }

  private sweep(now: number, ttl: number): void {
    this.sweptAt = now;
    for (const [key, w] of this.windows) if (now - w.start >= 2 * ttl) this.windows.delete(key);
  }
}
