/**
 * Group commit: work submitted one item at a time, done in batches. Up to `inFlight` batches run at
 * once. A batch starts when the turn of the event loop in which its first item came is over, so what
 * is asked within one turn (requests read together, the callers a batch just answered) goes together;
 * items submitted while every slot is busy wait and form the next batch (at most `maxBatch` items).
 * Nothing waits on a timer, so a lone caller is served at the end of its turn and latency only ever
 * trades against a batch already running; under load, N callers share one round trip (and one
 * commit) instead of making N.
 *
 * `run` answers every item of its batch, in order; an answer that is an ItemFailed rejects that item
 * alone. When `run` throws, every item of the batch gets the error, unless `alone` is given: then a
 * batch of one is done with `alone`, and when `run` throws for several, each is done on its own with
 * `alone`, so one item's failure never fails its neighbours.
 */
export class GroupCommit<T, R> {
  private readonly waiting: { item: T; resolve: (r: R) => void; reject: (e: unknown) => void }[] = [];
  private running = 0;
  /** A start is due at the end of this turn of the event loop. */
  private starting = false;

  constructor(
    private readonly run: (items: T[]) => Promise<(R | ItemFailed)[]>,
    private readonly opts: { maxBatch: number; inFlight: number; alone?: (item: T) => Promise<R> },
  ) {}

  submit(item: T): Promise<R> {
    return new Promise<R>((resolve, reject) => {
      this.waiting.push({ item, resolve, reject });
      // A free slot starts its batch once this turn of the event loop is done, so the callers that
      // ask within it (requests read together, the items of a batch that answered) share it.
      if (!this.starting && this.running < this.opts.inFlight) {
        this.starting = true;
        setImmediate(() => {
          this.starting = false;
          while (this.running < this.opts.inFlight && this.waiting.length > 0) this.next();
        });
      }
    });
  }

  private async runBatch(items: T[]): Promise<(R | ItemFailed)[]> {
    const alone = this.opts.alone;
    if (!alone) return this.run(items);
    if (items.length === 1) return [await alone(items[0])];
    try {
      return await this.run(items);
    } catch {
      const results: (R | ItemFailed)[] = [];
      for (const item of items) results.push(await alone(item).catch((err: unknown) => new ItemFailed(err)));
      return results;
    }
  }

  private next(): void {
    if (this.running >= this.opts.inFlight || this.waiting.length === 0) return;
    const batch = this.waiting.splice(0, this.opts.maxBatch);
    this.running++;
    this.runBatch(batch.map((b) => b.item))
      .then(
        (results) => {
          if (results.length !== batch.length) throw new Error(`a batch of ${batch.length} got ${results.length} answers`);
          batch.forEach((b, i) => {
            const r = results[i];
            if (r instanceof ItemFailed) b.reject(r.error);
            else b.resolve(r);
          });
        },
        (err: unknown) => batch.forEach((b) => b.reject(err)),
      )
      .catch((err: unknown) => batch.forEach((b) => b.reject(err)))
      .finally(() => {
        this.running--;
        this.next();
      });
  }
}

/** One item's failure inside a batch that otherwise went through. */
export class ItemFailed {
  constructor(readonly error: unknown) {}
}
