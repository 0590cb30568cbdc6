/**
 * The result of a read shared by every scrape within `ttlMs` of it, so a scrape storm (or many
 * Prometheus replicas) costs the database one query per interval. A read in flight is shared too; a
 * read that fails or takes longer than `timeoutMs` is not kept, and the next scrape tries again.
 */
export class ScrapeCache<T> {
  private value: { at: number; result: Promise<T> } | undefined;

  constructor(
    private readonly read: () => Promise<T>,
    private readonly ttlMs: number,
    private readonly timeoutMs: number,
    private readonly now: () => number = Date.now,
  ) {}

  get(): Promise<T> {
    const at = this.now();
    if (this.value && at - this.value.at < this.ttlMs) return this.value.result;
    const result = withTimeout(this.read(), this.timeoutMs);
    const entry = { at, result };
    this.value = entry;
    result.catch(() => {
      if (this.value === entry) this.value = undefined;
    });
    return result;
  }
}

function withTimeout<T>(p: Promise<T>, ms: number): Promise<T> {
  let timer: NodeJS.Timeout | undefined;
  const timeout = new Promise<never>((_, reject) => {
    timer = setTimeout(() => reject(new Error(`no answer within ${ms} ms`)), ms);
    timer.unref();
  });
  return Promise.race([p, timeout]).finally(() => clearTimeout(timer));
}
