/** The keyed audit heartbeats and their ticker, which let verify find events cut off the end of the trail. */
import { Logger } from '@nestjs/common';
import { Database } from '../storage/database';
import { Heartbeat } from './audit-chain';
import { storedEvent } from './audit-event';
import { AuditWriter } from './audit-writer';
import { AuditRepository } from './audit.repository';

/**
 * Writes a keyed `audit.heartbeat` when the newest one in the chain is audit.heartbeat_every old (so
 * replicas together write about one per interval), and always at this process's start. It records
 * the previous heartbeat's time: the chain's newest, unless the heartbeat this process saw last is no
 * longer in the chain, in which case that one's, which verify then finds missing (see ChainWalk).
 */
export class AuditHeartbeat {
  private timer: NodeJS.Timeout | undefined;
  private run: Promise<void> | undefined;
  private last: Heartbeat | undefined;

  constructor(
    private readonly db: Database,
    private readonly repo: AuditRepository,
    private readonly writer: AuditWriter,
    /** audit.heartbeat_every in ms. */
    readonly everyMs: number,
    private readonly log: Logger,
  ) {}

  /** The newest heartbeat this process wrote or saw in the chain; undefined until its first heartbeat. */
  get lastSeen(): Heartbeat | undefined {
    return this.last;
  }

  /** Whether the ticker was started: verify then also requires a recent heartbeat. */
  get started(): boolean {
    return this.timer !== undefined;
  }

  /** Writes this process's first heartbeat, then starts the ticker. */
  async start(): Promise<void> {
    await this.beat();
    const tickMs = Math.max(250, Math.min(this.everyMs / 4, 60_000));
    this.timer = setInterval(() => {
      this.run ??= this.beat()
        .catch((err: Error) => this.log.warn(`could not write an audit heartbeat (the next tick retries): ${err.message}`))
        .finally(() => (this.run = undefined));
    }, tickMs);
    this.timer.unref();
  }

  /** Stops the ticker and waits for a heartbeat being written. */
  async stop(): Promise<void> {
    if (this.timer) clearInterval(this.timer);
    await this.run;
  }

  private async beat(): Promise<void> {
    const seen = this.last;
    if (seen) {
      // Most ticks: the newest heartbeat is fresh and the one seen last is still there; no lock needed.
      const newest = await this.repo.newestHeartbeat(this.db);
      if (newest && this.fresh(newest) && (await this.repo.heartbeatKept(this.db, seen))) {
        this.last = newest;
        return;
      }
    }
    this.last = await this.db.tx(async (tx) => {
      const head = await this.repo.lockHead(tx);
      const newest = await this.repo.newestHeartbeat(tx);
      const lost = seen !== undefined && !(await this.repo.heartbeatKept(tx, seen));
      if (seen && !lost && newest && this.fresh(newest)) return newest;
      if (lost) this.log.error(`the audit heartbeat of ${seen.at} (event ${seen.id}) is gone from the trail: events were cut off the end; GET /v1/audit/verify reports it`);
      const event = storedEvent({
        type: 'audit.heartbeat',
        actor: null,
        detail: { previous_at: lost ? seen.at : (newest?.at ?? null), started: seen === undefined, every_seconds: this.everyMs / 1000 },
      });
      const written = await this.writer.link(tx, head, event);
      return { id: written.id, hash: written.hash, at: event.at };
    });
  }

  private fresh(heartbeat: Heartbeat): boolean {
    return Date.now() - Date.parse(heartbeat.at) < this.everyMs;
  }
}
