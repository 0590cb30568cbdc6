/** AuditLog, the audit trail's service: append, list, verify and seal-legacy, keying at start-up, and sampled refusals. */
import { BeforeApplicationShutdown, Inject, Injectable, Logger, OnApplicationBootstrap, Optional } from '@nestjs/common';
import { CONFIG } from '../config/config.module';
import { TesseraConfig } from '../config/config.loader';
import { Metrics } from '../metrics/metrics';
import { Database, Queryable } from '../storage/database';
import { AuditVerification } from './audit-chain';
import { AuditEvent, storedEvent } from './audit-event';
import { AuditHeartbeat } from './audit-heartbeat';
import { AuditKeys } from './audit-keys';
import { AuditShards, PickedHead } from './audit-shards';
import { AuditWriter } from './audit-writer';
import { AuditRepository } from './audit.repository';
import { DenialSampler } from './denial-sampler';

export type { AuditEvent, AuditType } from './audit-event';
export type { AuditVerification } from './audit-chain';

export interface AuditRecord {
  id: string;
  at: string;
  type: string;
  actor: string | null;
  lease_id: string | null;
  detail: Record<string, unknown>;
}

/** What `tessera audit seal-legacy` did. */
export type LegacySeal =
  | { status: 'accepted'; first_id: string; boundary_id: string; events: number; event_id: string }
  | { status: 'already_accepted'; boundary_id: string; events: number }
  | { status: 'nothing_to_accept' };

/**
 * The audit trail, chained with a MAC keyed from the master key (DESIGN §9, invariant 5): each event's
 * hash is HMAC-SHA256(prev hash, canonical text) under a key derived from the master key, whose id is
 * stored with the event, and the head carries a seal over the newest hash. Whoever can write the state
 * database but does not hold the master key can therefore not edit, insert or delete an event and
 * recompute a chain that verifies. Appends run inside the caller's transaction when one is given.
 *
 * Nothing is ever sealed silently. Start-up keys the chain only when the trail is empty; an append onto
 * a head whose seal does not verify first writes an `audit.head_broken` event (see AuditWriter).
 * Events from before the chain was keyed (key_id null, plain SHA-256 links) are accepted only up to a
 * boundary an operator recorded in a keyed `audit.keyed` event (`tessera audit seal-legacy`).
 *
 * The trail is sharded: audit.shards independent chains, each with its own head, so concurrent appends
 * lock different heads (see AuditShards). Cutting events off the end of a shard by restoring an old
 * head row (whose seal is genuine) is found with keyed heartbeats in every shard (AuditHeartbeat); the
 * rules verify applies to each shard are ChainWalk's.
 *
 * Refused requests are sampled per caller (see DenialSampler), so a flood of them writes few rows.
 */
@Injectable()
export class AuditLog implements OnApplicationBootstrap, BeforeApplicationShutdown {
  private readonly log = new Logger(AuditLog.name);
  private readonly keys: AuditKeys;
  private readonly repo: AuditRepository;
  private readonly writer: AuditWriter;
  private readonly shards: AuditShards;
  private readonly heartbeats: AuditHeartbeat;
  private readonly denials: DenialSampler;
  private readonly denialWindowMs: number;
  private timer: NodeJS.Timeout | undefined;

  constructor(
    @Inject(Database) private readonly db: Database,
    @Inject(CONFIG) config: TesseraConfig,
    @Optional() private readonly metrics?: Metrics,
  ) {
    this.keys = new AuditKeys(config.encryption.key, config.encryption.previous_keys);
    this.repo = new AuditRepository(db);
    this.writer = new AuditWriter(this.keys, this.repo, this.log, metrics);
    this.shards = new AuditShards(this.keys, this.repo, this.writer, this.log, config.audit.shards);
    this.heartbeats = new AuditHeartbeat(db, this.repo, this.writer, config.audit.heartbeat_every * 1000, this.log, (n) => (this.shards.count = n), metrics);
    this.denialWindowMs = config.limits.audited_denials_window * 1000;
    this.denials = new DenialSampler(config.limits.audited_denials_per_identity, this.denialWindowMs);
  }

  /**
   * Keys a new, empty trail and creates missing shards (AuditShards.open). A trail that already has
   * events is never sealed here: an unsealed head or an unaccepted unkeyed prefix is logged, and verify
   * reports it. Then writes this process's first heartbeat in every shard and starts the ticker.
   */
  async onApplicationBootstrap(): Promise<void> {
    await this.db.tx((tx) => this.shards.open(tx));
    await this.heartbeats.start();
    // Summaries are written within a quarter window of the window's end.
    this.timer = setInterval(() => void this.writeSummaries(false), Math.max(250, Math.min(this.denialWindowMs / 4, 15_000)));
    this.timer.unref();
  }

  async beforeApplicationShutdown(): Promise<void> {
    if (this.timer) clearInterval(this.timer);
    await this.heartbeats.stop();
    await this.writeSummaries(true);
  }

  async append(event: AuditEvent, q?: Queryable): Promise<void> {
    if (event.type === 'request.denied' && !(await this.admitDenial(event))) return;
    const record = storedEvent(event);
    if (q) await this.writer.link(q, await this.shards.lockForAppend(q, true), record);
    else await this.db.tx(async (tx) => this.writer.link(tx, await this.shards.lockForAppend(tx, false), record));
  }

  /**
   * Several events, in order, in the caller's transaction: one statement however many there are.
   * `picked`: the head the caller's own statement already tried to lock, from firstShard (see pickHeadSql).
   */
  async appendMany(events: AuditEvent[], q: Queryable, picked?: PickedHead): Promise<void> {
    if (events.some((e) => e.type === 'request.denied')) throw new Error('refusals are sampled: append them one by one');
    if (events.length === 0) return;
    const now = new Date();
    await this.writer.linkMany(q, await this.shards.lockForAppend(q, true, picked), events.map((e) => storedEvent(e, now)));
  }

  /** The shard a caller that picks the head in its own statement should try first (see appendMany). */
  firstShard(): number {
    return this.shards.firstChoice();
  }

  async list(since: Date | undefined, limit: number): Promise<AuditRecord[]> {
    return (await this.repo.list(since, limit)).map(toRecord);
  }

  /** Newest first, optionally of one type, by one actor (an exact subject), older than an event id. */
  async search(filter: { type?: string; actor?: string; beforeId?: string }, limit: number): Promise<AuditRecord[]> {
    return (await this.repo.search(filter, limit)).map(toRecord);
  }

  /**
   * Walks every shard from its first event (see AuditShards.walk and ChainWalk for the rules). One
   * snapshot throughout, so events appended meanwhile are neither half-seen nor mistaken for a broken head.
   */
  async verify(): Promise<AuditVerification> {
    // Taken before the snapshot: a heartbeat this process knows of was committed before it began.
    const seen = this.heartbeats.lastSeen;
    const heartbeatEveryMs = this.heartbeats.started ? this.heartbeats.everyMs : undefined;
    const walk = await this.db.tx((q) => this.shards.walk(q, (shard) => ({ seen: seen.get(shard), heartbeatEveryMs })), { snapshot: true });
    const { ok, events_checked, first_bad_id, reason } = walk;
    this.metrics?.auditVerified(ok);
    return ok ? { ok, events_checked } : { ok, events_checked, first_bad_id, reason };
  }

  /**
   * `tessera audit seal-legacy`: accepts the events written before the chain was keyed by recording
   * their end (id and hash) in a keyed `audit.keyed` event. Refused when anything else is wrong with
   * the trail. Only the operator can know that those events were not rewritten (anyone who could write
   * the database could have recomputed their plain SHA-256 links), hence an explicit command.
   */
  async sealLegacy(): Promise<LegacySeal> {
    return this.db.tx(async (tx) => {
      // The heads' locks keep appends out while the trail is checked and the boundary written.
      const head = (await this.repo.lockHeads(tx)).find((h) => h.shard === 1);
      if (!head) throw new Error('the audit head of shard 1 is missing; nothing was accepted');
      const walk = await this.shards.walk(tx, () => ({ ignoreLegacy: true }));
      const legacy = walk.legacy;
      if (!legacy) {
        if (!walk.ok) throw new Error(`the audit trail does not verify (${walk.reason}, event ${walk.first_bad_id}); nothing was accepted`);
        return { status: 'nothing_to_accept' };
      }
      if (legacy.accepted) {
        if (!walk.ok) throw new Error(`the audit trail does not verify (${walk.reason}, event ${walk.first_bad_id}); nothing was accepted`);
        return { status: 'already_accepted', boundary_id: legacy.endId, events: legacy.count };
      }
      // Apart from the prefix itself, the only fault allowed is the one it causes when nothing was
      // appended after it yet: an unsealed head that is its last event.
      const legacyHead = !walk.keyed && !head.seal && head.key_id === null && head.hash.equals(legacy.endHash);
      if (!walk.ok && !(walk.broken === 'unsealed' && legacyHead)) {
        throw new Error(`the audit trail does not verify apart from its unkeyed events (${walk.reason}, event ${walk.first_bad_id}); nothing was accepted`);
      }
      const record = storedEvent({
        type: 'audit.keyed',
        actor: null,
        detail: {
          key_id: this.keys.currentId,
          legacy_boundary: { first_id: legacy.firstId, id: legacy.endId, hash: legacy.endHash.toString('hex'), events: legacy.count },
        },
      });
      const written = await this.writer.link(tx, head, record);
      return { status: 'accepted', first_id: legacy.firstId, boundary_id: legacy.endId, events: legacy.count, event_id: written.id };
    });
  }

  /** Whether a refusal is written one by one; a summary of the caller's previous window is written first. */
  private async admitDenial(event: AuditEvent): Promise<boolean> {
    const detail = event.detail ?? {};
    const text = (v: unknown) => (typeof v === 'string' ? v : null);
    const { write, summary } = this.denials.admit({
      actor: event.actor ?? null,
      issuer: text(detail.issuer),
      client: text(detail.client),
      status: String(detail.status ?? 'unknown'),
    });
    if (summary) await this.append({ type: 'request.denied_summary', actor: summary.actor, detail: { ...summary.detail } });
    return write;
  }

  private async writeSummaries(all: boolean): Promise<void> {
    for (const summary of this.denials.drain(Date.now(), all)) {
      await this.append({ type: 'request.denied_summary', actor: summary.actor, detail: { ...summary.detail } }).catch((err: Error) =>
        this.log.warn(`could not write a summary of ${summary.detail.suppressed} refused requests: ${err.message}`),
      );
    }
  }
}

function toRecord(row: { id: string; body: string }): AuditRecord {
  const body = JSON.parse(row.body);
  return { id: String(row.id), at: body.at, type: body.type, actor: body.actor, lease_id: body.lease_id, detail: body.detail };
}
