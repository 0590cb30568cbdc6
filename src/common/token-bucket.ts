/**
 * Per-key token buckets in memory (per process): `rate` tokens a second, up to `burst`. Idle keys are
 * forgotten, so memory follows the number of active clients, not their history.
 */
export class TokenBucket {
  private readonly buckets = new Map<string, { tokens: number; at: number }>();

  constructor(
    private readonly rate: number,
    private readonly burst: number,
  ) {}

  take(key: string, now = Date.now()): boolean {
    const bucket = this.buckets.get(key) ?? { tokens: this.burst, at: now };
    bucket.tokens = Math.min(this.burst, bucket.tokens + ((now - bucket.at) / 1000) * this.rate);
    bucket.at = now;
    const ok = bucket.tokens >= 1;
    if (ok) bucket.tokens -= 1;
    this.buckets.set(key, bucket);
    if (this.buckets.size > 10_000) this.sweep(now);
    return ok;
  }

  private sweep(now: number): void {
    for (const [key, b] of this.buckets) if (now - b.at > (this.burst / this.rate) * 1000) this.buckets.delete(key);
  }
}
