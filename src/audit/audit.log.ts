/** AuditLog, the audit trail's service: append, list, verify and seal-legacy, keying at start-up, and sampled refusals. */
import { BeforeApplicationShutdown, Inject, Injectable, Logger, OnApplicationBootstrap } from '@nestjs/common';
import { CONFIG } from '../config/config.module';
import { TesseraConfig } from '../config/config.loader';
import { Database, Queryable } from '../storage/database';
import { AuditVerification, ChainWalk, SEAL_LEGACY_HINT, Walk, WalkOptions, ZERO } from './audit-chain';
import { AuditEvent, storedEvent } from './audit-event';
import { AuditHeartbeat } from './audit-heartbeat';
import { AuditKeys } from './audit-keys';
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
 * Cutting events off the end by restoring an old head row (whose seal is genuine) is found with keyed
 * heartbeats (AuditHeartbeat); the rules verify applies are ChainWalk's.
 *
 * Refused requests are sampled per caller (see DenialSampler), so a flood of them writes few rows.
 */
@Injectable()
export class AuditLog implements OnApplicationBootstrap, BeforeApplicationShutdown {
  private readonly log = new Logger(AuditLog.name);
  private readonly keys: AuditKeys;
  private readonly repo: AuditRepository;
  private readonly writer: AuditWriter;
  private readonly heartbeats: AuditHeartbeat;
  private readonly denials: DenialSampler;
  private readonly denialWindowMs: number;
  private timer: NodeJS.Timeout | undefined;

  constructor(
    @Inject(Database) private readonly db: Database,
    @Inject(CONFIG) config: TesseraConfig,
  ) {
    this.keys = new AuditKeys(config.encryption.key, config.encryption.previous_keys);
    this.repo = new AuditRepository(db);
    this.writer = new AuditWriter(this.keys, this.repo, this.log);
    this.heartbeats = new AuditHeartbeat(db, this.repo, this.writer, config.audit.heartbeat_every * 1000, this.log);
    this.denialWindowMs = config.limits.audited_denials_window * 1000;
    this.denials = new DenialSampler(config.limits.audited_denials_per_identity, this.denialWindowMs);
  }

  /**
   * Keys a new, empty trail with an `audit.keyed` event. A trail that already has events is never
   * sealed here: an unsealed head or an unaccepted unkeyed prefix is logged, and verify reports it.
   * Then writes this process's first heartbeat and starts the heartbeat ticker.
   */
  async onApplicationBootstrap(): Promise<void> {
    await this.db.tx(async (tx) => {
      const head = await this.repo.lockHead(tx);
      const oldest = await this.repo.oldestEvent(tx);
      if (!oldest) {
        if (!head.seal && head.hash.equals(ZERO)) {
          await this.writer.link(tx, head, storedEvent({ type: 'audit.keyed', actor: null, detail: { key_id: this.keys.currentId } }), { genesis: true });
        } else {
          this.log.error('the audit trail is empty but its head is not the initial one: events were deleted; GET /v1/audit/verify reports it');
        }
        return;
      }
      if (oldest.key_id === null && !(await this.repo.hasLegacyBoundary(tx))) {
        this.log.error(`the audit trail starts with events written before it was keyed and not accepted by an operator: GET /v1/audit/verify reports not ok until then; ${SEAL_LEGACY_HINT}`);
      } else if (!head.seal) {
        this.log.error('the audit head is not sealed although the trail has keyed events: events may have been cut off the end; the next event records this and GET /v1/audit/verify reports it');
      }
    });
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
    const chain = async (tx: Queryable) => {
      await this.writer.link(tx, await this.repo.lockHead(tx), record);
    };
    if (q) await chain(q);
    else await this.db.tx(chain);
  }

  async list(since: Date | undefined, limit: number): Promise<AuditRecord[]> {
    return (await this.repo.list(since, limit)).map((row) => {
      const body = JSON.parse(row.body);
      return { id: String(row.id), at: body.at, type: body.type, actor: body.actor, lease_id: body.lease_id, detail: body.detail };
    });
  }

  /**
   * Walks the chain from the first event (see ChainWalk for the rules). One snapshot throughout, so
   * events appended meanwhile are neither half-seen nor mistaken for a broken head.
   */
  async verify(): Promise<AuditVerification> {
    // Taken before the snapshot: a heartbeat this process knows of was committed before it began.
    const seen = this.heartbeats.lastSeen;
    const heartbeatEveryMs = this.heartbeats.started ? this.heartbeats.everyMs : undefined;
    const walk = await this.db.tx((q) => this.walk(q, { seen, heartbeatEveryMs }), { snapshot: true });
    const { ok, events_checked, first_bad_id, reason } = walk;
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
      // The head's lock keeps appends out while the trail is checked and the boundary written.
      const head = await this.repo.lockHead(tx);
      const walk = await this.walk(tx, { ignoreLegacy: true });
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

  /** Feeds every event, then the head, to a ChainWalk; stops reading at the first fault. */
  private async walk(q: Queryable, opts: WalkOptions): Promise<Walk> {
    const walk = new ChainWalk(this.keys, opts);
    for await (const rows of this.repo.pages(q)) {
      for (const row of rows) {
        const bad = walk.add(row);
        if (bad) return bad;
      }
    }
    return walk.end(await this.repo.readHead(q), Date.now());
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
