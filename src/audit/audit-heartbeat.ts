/** The keyed audit heartbeats and their ticker, which let verify find events cut off the end of any shard. */
import { Logger } from '@nestjs/common';
import type { Metrics } from '../metrics/metrics';
import { Database } from '../storage/database';
import { Heartbeat } from './audit-chain';
import { storedEvent } from './audit-event';
import { AuditWriter } from './audit-writer';
import { AuditRepository } from './audit.repository';

/**
 * Every shard of the trail has its own heartbeats, so each shard's tail is protected exactly as a
 * single chain's is. Per shard: writes a keyed `audit.heartbeat` when the newest one in that shard is
 * audit.heartbeat_every old (so replicas together write about one per shard per interval), and
 * always at this process's start. It records the previous heartbeat's time: the shard's newest,
 * unless the heartbeat this process saw last in that shard is no longer there, in which case that
 * one's, which verify then finds missing (see ChainWalk). Each shard's heartbeat is written in its
 * own transaction, holding only that shard's head.
 */
export class AuditHeartbeat {
  private timer: NodeJS.Timeout | undefined;
  private run: Promise<void> | undefined;
  private readonly last = new Map<number, Heartbeat>();

  constructor(
    private readonly db: Database,
    private readonly repo: AuditRepository,
    private readonly writer: AuditWriter,
    /** audit.heartbeat_every in ms. */
    readonly everyMs: number,
    private readonly log: Logger,
    /** Told the number of shards at every tick. */
    private readonly onShards: (count: number) => void = () => undefined,
    private readonly metrics?: Pick<Metrics, 'auditChainBroken'>,
  ) {}

  /** The newest heartbeat this process wrote or saw in each shard; empty until its first heartbeat. */
  get lastSeen(): ReadonlyMap<number, Heartbeat> {
    return new Map(this.last);
  }

  /** Whether the ticker was started: verify then also requires a recent heartbeat in every shard. */
  get started(): boolean {
    return this.timer !== undefined;
  }

  /** Writes this process's first heartbeat in every shard, then starts the ticker. */
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
    // Most ticks: every shard's newest heartbeat is fresh and the one seen last is still there; two queries, no lock.
    const newest = await this.repo.newestHeartbeats(this.db);
    this.onShards(newest.size);
    const seen = [...this.last].map(([shard, heartbeat]) => ({ shard, heartbeat }));
    const kept = await this.repo.heartbeatsKept(this.db, seen);
    for (const [shard, heartbeat] of newest) {
      const saw = this.last.get(shard);
      if (saw && heartbeat && this.fresh(heartbeat) && kept.has(saw.id)) this.last.set(shard, heartbeat);
      else await this.beatShard(shard, saw);
    }
  }

  private async beatShard(shard: number, seen: Heartbeat | undefined): Promise<void> {
    const written = await this.db.tx(async (tx) => {
      const head = await this.repo.lockHead(tx, shard);
      if (!head) return undefined;
      const newest = await this.repo.newestHeartbeat(tx, shard);
      const lost = seen !== undefined && !(await this.repo.heartbeatsKept(tx, [{ shard, heartbeat: seen }])).has(seen.id);
      if (seen && !lost && newest && this.fresh(newest)) return newest;
      if (lost) {
        this.metrics?.auditChainBroken('heartbeat');
        this.log.error(`the audit heartbeat of ${seen.at} (event ${seen.id}, shard ${shard}) is gone from the trail: events were cut off the end; GET /v1/audit/verify reports it`);
      }
      const event = storedEvent({
        type: 'audit.heartbeat',
        actor: null,
        detail: { previous_at: lost ? seen.at : (newest?.at ?? null), started: seen === undefined, every_seconds: this.everyMs / 1000 },
      });
      const link = await this.writer.link(tx, head, event);
      return { id: link.id, hash: link.hash, at: event.at };
    });
    if (written) this.last.set(shard, written);
  }

  private fresh(heartbeat: Heartbeat): boolean {
    return Date.now() - Date.parse(heartbeat.at) < this.everyMs;
  }
}
