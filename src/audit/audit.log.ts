import { BeforeApplicationShutdown, Inject, Injectable, Logger, OnApplicationBootstrap } from '@nestjs/common';
import { createHash } from 'node:crypto';
import { CONFIG } from '../config/config.module';
import { TesseraConfig } from '../config/config.loader';
import { Database, Queryable } from '../storage/database';
import { AuditKeys } from './audit-keys';
import { DenialSampler } from './denial-sampler';

/** Event types written to the audit trail. */
export type AuditType =
  | 'lease.issued'
  | 'lease.issue_failed'
  | 'lease.renewed'
  | 'lease.revoked'
  | 'lease.expired'
  | 'lease.revoke_failed'
  | 'lease.abandoned'
  | 'lease.bulk_revoke'
  | 'request.denied'
  | 'request.denied_summary'
  | 'audit.keyed'
  | 'audit.heartbeat'
  | 'audit.head_broken'
  | 'bootstrap.created'
  | 'bootstrap.used'
  | 'static.rotated'
  | 'static.exposure_contained'
  | 'static.rotation_failed'
  | 'static.imported'
  | 'static.read'
  | 'static.rotation_requested'
  | 'event.received';

export interface AuditEvent {
  type: AuditType;
  actor?: string | null;
  leaseId?: string | null;
  /** Names, ids, counts and reasons. Never a password, key or token. */
  detail?: Record<string, unknown>;
}

export interface AuditRecord {
  id: string;
  at: string;
  type: string;
  actor: string | null;
  lease_id: string | null;
  detail: Record<string, unknown>;
}

export interface AuditVerification {
  ok: boolean;
  events_checked: number;
  first_bad_id?: string;
  /** Why the trail does not verify (present when ok is false). */
  reason?: string;
}

/** What `tessera audit seal-legacy` did. */
export type LegacySeal =
  | { status: 'accepted'; first_id: string; boundary_id: string; events: number; event_id: string }
  | { status: 'already_accepted'; boundary_id: string; events: number }
  | { status: 'nothing_to_accept' };

const ZERO = Buffer.alloc(32);

interface Head {
  hash: Buffer;
  key_id: string | null;
  seal: Buffer | null;
}

/** A heartbeat as a process saw it in the chain: its row (id and hash) and its time. */
interface Heartbeat {
  id: string;
  hash: Buffer;
  at: string;
}

/** Taken first by every append: the row lock on audit_head serialises appends. */
const LOCK_HEAD = 'SELECT hash, key_id, seal FROM audit_head WHERE id = 1 FOR UPDATE';
/** Chains the event onto the locked head and moves the head (with its new seal) in one statement. */
const INSERT = `
  WITH ins AS (
    INSERT INTO audit_events (at, type, actor, lease_id, body, prev_hash, hash, key_id)
    VALUES ($1, $2, $3, $4, $5, $6, $7, $8) RETURNING id)
  UPDATE audit_head SET hash = $7, key_id = $8, seal = $9 FROM ins WHERE audit_head.id = 1 RETURNING ins.id`;
const NEWEST_HEARTBEAT = `SELECT id, hash, body FROM audit_events WHERE type = 'audit.heartbeat' ORDER BY id DESC LIMIT 1`;
const HEARTBEAT_KEPT = 'SELECT 1 FROM audit_events WHERE id = $1 AND hash = $2';
const SEAL_LEGACY_HINT = 'run `tessera audit seal-legacy` once you know they were not rewritten';

/**
 * The audit trail, chained with a MAC keyed from the master key (DESIGN §9, invariant 5): each event's
 * hash is HMAC-SHA256(prev hash, canonical text) under a key derived from the master key, whose id is
 * stored with the event, and the head carries a seal over the newest hash. Whoever can write the state
 * database but does not hold the master key can therefore not edit, insert or delete an event and
 * recompute a chain that verifies. The key never reaches PostgreSQL: the MAC is computed here, between
 * locking the head and writing the event. Appends run inside the caller's transaction when one is given.
 *
 * Nothing is ever sealed silently. Start-up keys the chain only when the trail is empty; an append onto
 * a head whose seal does not verify first writes an `audit.head_broken` event (which verify reports), so
 * a head moved back, or unsealed, by someone without the key cannot be re-sealed by the next event.
 * Events from before the chain was keyed (key_id null, plain SHA-256 links) are accepted only up to a
 * boundary an operator recorded in a keyed `audit.keyed` event (`tessera audit seal-legacy`).
 *
 * Cutting events off the end by restoring an old head row (whose seal is genuine) is found with keyed
 * heartbeats; see heartbeat() and the rules in verifyIn().
 *
 * Refused requests are sampled per caller (see DenialSampler), so a flood of them writes few rows.
 */
@Injectable()
export class AuditLog implements OnApplicationBootstrap, BeforeApplicationShutdown {
  private readonly log = new Logger(AuditLog.name);
  private readonly keys: AuditKeys;
  private readonly denials: DenialSampler;
  private readonly denialWindowMs: number;
  private readonly heartbeatMs: number;
  private timer: NodeJS.Timeout | undefined;
  private heartbeatTimer: NodeJS.Timeout | undefined;
  private heartbeatRun: Promise<void> | undefined;
  /** The newest heartbeat this process wrote or saw in the chain; undefined until its first heartbeat. */
  private lastHeartbeat: Heartbeat | undefined;

  constructor(
    @Inject(Database) private readonly db: Database,
    @Inject(CONFIG) config: TesseraConfig,
  ) {
    this.keys = new AuditKeys(config.encryption.key, config.encryption.previous_keys);
    this.denialWindowMs = config.limits.audited_denials_window * 1000;
    this.denials = new DenialSampler(config.limits.audited_denials_per_identity, this.denialWindowMs);
    this.heartbeatMs = config.audit.heartbeat_every * 1000;
  }

  /**
   * Keys a new, empty trail with an `audit.keyed` event. A trail that already has events is never
   * sealed here: an unsealed head or an unaccepted unkeyed prefix is logged, and verify reports it.
   * Then writes this process's first heartbeat and starts the heartbeat ticker.
   */
  async onApplicationBootstrap(): Promise<void> {
    await this.db.tx(async (tx) => {
      const head = await this.lockHead(tx);
      const { rows } = await tx.query<{ key_id: string | null }>('SELECT key_id FROM audit_events ORDER BY id LIMIT 1');
      if (!rows[0]) {
        if (!head.seal && head.hash.equals(ZERO)) {
          await this.link(tx, head, this.record({ type: 'audit.keyed', actor: null, detail: { key_id: this.keys.currentId } }), { genesis: true });
        } else {
          this.log.error('the audit trail is empty but its head is not the initial one: events were deleted; GET /v1/audit/verify reports it');
        }
        return;
      }
      if (rows[0].key_id === null && !(await this.hasLegacyBoundary(tx))) {
        this.log.error(`the audit trail starts with events written before it was keyed and not accepted by an operator: GET /v1/audit/verify reports not ok until then; ${SEAL_LEGACY_HINT}`);
      } else if (!head.seal) {
        this.log.error('the audit head is not sealed although the trail has keyed events: events may have been cut off the end; the next event records this and GET /v1/audit/verify reports it');
      }
    });
    await this.heartbeat();
    const tickMs = Math.max(250, Math.min(this.heartbeatMs / 4, 60_000));
    this.heartbeatTimer = setInterval(() => {
      this.heartbeatRun ??= this.heartbeat()
        .catch((err: Error) => this.log.warn(`could not write an audit heartbeat (the next tick retries): ${err.message}`))
        .finally(() => (this.heartbeatRun = undefined));
    }, tickMs);
    this.heartbeatTimer.unref();
    // Summaries are written within a quarter window of the window's end.
    this.timer = setInterval(() => void this.writeSummaries(false), Math.max(250, Math.min(this.denialWindowMs / 4, 15_000)));
    this.timer.unref();
  }

  async beforeApplicationShutdown(): Promise<void> {
    if (this.heartbeatTimer) clearInterval(this.heartbeatTimer);
    if (this.timer) clearInterval(this.timer);
    await this.heartbeatRun;
    await this.writeSummaries(true);
  }

  async append(event: AuditEvent, q?: Queryable): Promise<void> {
    if (event.type === 'request.denied' && !(await this.admitDenial(event))) return;
    const record = this.record(event);
    const chain = async (tx: Queryable) => {
      await this.link(tx, await this.lockHead(tx), record);
    };
    if (q) await chain(q);
    else await this.db.tx(chain);
  }

  /**
   * A state change and its audit event, atomically: `guard` is a data-modifying statement with
   * RETURNING (its parameters $1..$n); the event is appended only if it returned a row. The guard and
   * the head's lock share one statement, so the chain stays locked only while the event is written.
   * Returns the guard's row as JSON, or undefined when it matched nothing.
   */
  async appendGuarded(guard: { sql: string; values: unknown[] }, event: AuditEvent, q?: Queryable): Promise<Record<string, any> | undefined> {
    const record = this.record(event);
    const run = async (tx: Queryable) => {
      const { rows } = await tx.query<{ row: Record<string, any> | null; hash: Buffer | null; key_id: string | null; seal: Buffer | null }>(
        `WITH guard AS (${guard.sql}),
         head AS (SELECT hash, key_id, seal FROM audit_head WHERE id = 1 AND EXISTS (SELECT 1 FROM guard) FOR UPDATE)
         SELECT (SELECT to_jsonb(g) FROM guard g LIMIT 1) AS row, h.hash, h.key_id, h.seal FROM (SELECT 1) one LEFT JOIN head h ON true`,
        guard.values,
      );
      const row = rows[0]?.row ?? undefined;
      if (row && rows[0].hash) await this.link(tx, { hash: rows[0].hash, key_id: rows[0].key_id, seal: rows[0].seal }, record);
      return row;
    };
    return q ? run(q) : this.db.tx(run);
  }

  async list(since: Date | undefined, limit: number): Promise<AuditRecord[]> {
    const { rows } = await this.db.query<{ id: string; body: string }>(
      `SELECT id, body FROM audit_events WHERE ($1::timestamptz IS NULL OR at >= $1) ORDER BY id LIMIT $2`,
      [since ?? null, limit],
    );
    return rows.map((row) => {
      const body = JSON.parse(row.body);
      return { id: String(row.id), at: body.at, type: body.type, actor: body.actor, lease_id: body.lease_id, detail: body.detail };
    });
  }

  /**
   * Walks the chain from the first event (see verifyIn for the rules). One snapshot throughout, so
   * events appended meanwhile are neither half-seen nor mistaken for a broken head.
   */
  async verify(): Promise<AuditVerification> {
    // Taken before the snapshot: a heartbeat this process knows of was committed before it began.
    const seen = this.lastHeartbeat;
    const walk = await this.db.tx((q) => this.verifyIn(q, { seen, heartbeats: this.heartbeatTimer !== undefined }), { snapshot: true });
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
      const head = await this.lockHead(tx);
      const walk = await this.verifyIn(tx, { heartbeats: false, ignoreLegacy: true });
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
      const record = this.record({
        type: 'audit.keyed',
        actor: null,
        detail: {
          key_id: this.keys.currentId,
          legacy_boundary: { first_id: legacy.firstId, id: legacy.endId, hash: legacy.endHash.toString('hex'), events: legacy.count },
        },
      });
      const written = await this.link(tx, head, record);
      return { status: 'accepted', first_id: legacy.firstId, boundary_id: legacy.endId, events: legacy.count, event_id: written.id };
    });
  }

  /**
   * The rules, in chain order:
   * - every link is the MAC of the previous hash and the event's text under the key its key_id names,
   *   and the event's columns match its text;
   * - unkeyed events (plain SHA-256 links) only as a prefix, accepted only when a later keyed
   *   `audit.keyed` event records that prefix's last event (id and hash) as its legacy_boundary; the
   *   chain's own events (`audit.*`) are never unkeyed; without a prefix the chain starts with `audit.keyed`;
   * - an `audit.head_broken` event (an append found the head's seal invalid) fails verify;
   * - heartbeats: each records the time of the heartbeat before it as its writer knew it. The writer
   *   reads it from the chain, unless the heartbeat it saw last is gone from the chain, in which case it
   *   records that one: so a heartbeat whose previous_at is not the previous heartbeat's time in the
   *   chain proves that events were cut off before it (durable evidence, also after restarts). The
   *   `started` flag only tells that its writer had just started and so remembered nothing.
   * Then, at the end:
   * - the head is sealed under the key over the last event's hash (or events were cut off the end);
   * - (a running broker only) the heartbeat this process saw last is still in the chain (so a cut tail
   *   is reported even before the next heartbeat), and the newest heartbeat is less than
   *   2 × audit.heartbeat_every old: every running broker writes one at start and then whenever the
   *   newest is heartbeat_every old, so an idle but running broker passes, and a head restored from
   *   longer ago does not.
   * Consecutive heartbeats far apart are not a fault by themselves: a broker that was stopped, or could
   * not reach PostgreSQL, leaves such a gap legitimately, and a cut tail is already caught above while a
   * broker that saw it runs. What this cannot catch: events cut off the end since the newest heartbeat
   * any running broker saw, and a tail cut while no broker was running (every process restarts with an
   * empty memory); nor a trail deleted entirely, head reset to its initial value, before the next start.
   */
  private async verifyIn(q: Queryable, opts: { seen?: Heartbeat; heartbeats: boolean; ignoreLegacy?: boolean }): Promise<Walk> {
    let prev: Buffer = ZERO;
    let prevKeyId: string | null = null;
    let keyed = false;
    let checked = 0;
    let after = '0';
    let legacy: Walk['legacy'];
    let lastHeartbeatAt: string | null = null;
    let seenKept = false;
    const page = 5000;
    const bad = (id: string, reason: string, broken: Walk['broken'] = 'chain'): Walk => ({
      ok: false,
      events_checked: checked,
      first_bad_id: id,
      reason,
      broken,
      keyed,
      legacy,
    });
    for (;;) {
      const { rows } = await q.query<AuditRow>(
        'SELECT id, at, type, actor, lease_id, body, prev_hash, hash, key_id FROM audit_events WHERE id > $1 ORDER BY id LIMIT $2',
        [after, page],
      );
      for (const row of rows) {
        const id = String(row.id);
        const body = parseBody(row.body);
        const expected = this.expectedHash(row, prev, keyed);
        if (!expected || !row.prev_hash.equals(prev) || !row.hash.equals(expected) || !body || !matchesColumns(row, body)) {
          const reason =
            row.key_id !== null || !(keyed || row.type.startsWith('audit.'))
              ? 'the event does not chain: it was edited, inserted or moved, or one before it deleted'
              : keyed
                ? 'an unkeyed event after keyed ones'
                : 'an unkeyed event of the chain itself: the trail was rewritten';
          return bad(id, reason);
        }
        const detail = (body.detail ?? {}) as Record<string, any>;
        if (row.key_id === null) {
          legacy = { firstId: legacy?.firstId ?? id, endId: id, endHash: row.hash, count: (legacy?.count ?? 0) + 1, accepted: false };
        } else {
          if (!keyed && !legacy && row.type !== 'audit.keyed') return bad(id, 'the keyed trail does not start with audit.keyed: events before it were removed');
          keyed = true;
          if (row.type === 'audit.keyed' && detail.legacy_boundary !== undefined) {
            const boundary = detail.legacy_boundary as { id?: unknown; hash?: unknown };
            if (!legacy || boundary.id !== legacy.endId || boundary.hash !== legacy.endHash.toString('hex')) {
              return bad(id, 'the accepted legacy boundary is not the end of the unkeyed events');
            }
            legacy.accepted = true;
          }
          if (row.type === 'audit.head_broken') {
            return bad(id, `an event was appended onto a head whose seal did not verify (${String(detail.problem)}): events were cut off the end or the head was replaced`);
          }
        }
        if (row.type === 'audit.heartbeat') {
          if (row.key_id !== null && (detail.previous_at ?? null) !== lastHeartbeatAt) {
            return bad(id, `this heartbeat follows one of ${String(detail.previous_at)} that is no longer in the trail: events were cut off before it`);
          }
          lastHeartbeatAt = body.at;
        }
        if (opts.seen && id === opts.seen.id && row.hash.equals(opts.seen.hash)) seenKept = true;
        prev = row.hash;
        prevKeyId = row.key_id;
        checked++;
        after = id;
      }
      if (rows.length < page) break;
    }
    const end = String(Number(after) + 1);
    if (legacy && !legacy.accepted && !opts.ignoreLegacy) {
      return bad(legacy.firstId, `${legacy.count} events from before the chain was keyed have not been accepted by an operator; ${SEAL_LEGACY_HINT}`, 'legacy');
    }
    // A head that is not the last event's, or not sealed under the key: events were removed from the
    // end (or the whole keyed chain replaced).
    const { rows: head } = await q.query<Head>('SELECT hash, key_id, seal FROM audit_head WHERE id = 1');
    const seal = prevKeyId === null ? undefined : this.keys.seal(prev, prevKeyId);
    const sealed = head[0] && seal && head[0].seal && head[0].key_id === prevKeyId && head[0].hash.equals(prev) && head[0].seal.equals(seal);
    if (!keyed) return bad(end, checked ? 'no keyed events' : 'the trail is empty', 'unsealed');
    if (!sealed) return bad(end, 'the head is not sealed over the last event: events were cut off the end', 'unsealed');
    if (opts.seen && !seenKept) {
      return bad(end, `the heartbeat of ${opts.seen.at} (event ${opts.seen.id}) this broker saw is gone: events were cut off the end`, 'tail');
    }
    if (opts.heartbeats && (lastHeartbeatAt === null || Date.now() - Date.parse(lastHeartbeatAt) > 2 * this.heartbeatMs)) {
      return bad(end, `no heartbeat since ${lastHeartbeatAt ?? 'the start'} (audit.heartbeat_every is ${this.heartbeatMs / 1000}s): events were cut off the end, or heartbeats are not being written`, 'tail');
    }
    return { ok: true, events_checked: checked, keyed, legacy };
  }

  /**
   * Writes a keyed `audit.heartbeat` when the newest one in the chain is audit.heartbeat_every old (so
   * replicas together write about one per interval), and always at this process's start. It records
   * the previous heartbeat's time: the chain's newest, unless the heartbeat this process saw last is no
   * longer in the chain, in which case that one's, which verify then finds missing (see verifyIn).
   */
  private async heartbeat(): Promise<void> {
    const seen = this.lastHeartbeat;
    if (seen) {
      // Most ticks: the newest heartbeat is fresh and the one seen last is still there; no lock needed.
      const newest = await newestHeartbeat(this.db);
      if (newest && this.fresh(newest) && (await this.db.query(HEARTBEAT_KEPT, [seen.id, seen.hash])).rows.length) {
        this.lastHeartbeat = newest;
        return;
      }
    }
    this.lastHeartbeat = await this.db.tx(async (tx) => {
      const head = await this.lockHead(tx);
      const newest = await newestHeartbeat(tx);
      const lost = seen !== undefined && !(await tx.query(HEARTBEAT_KEPT, [seen.id, seen.hash])).rows.length;
      if (seen && !lost && newest && this.fresh(newest)) return newest;
      if (lost) this.log.error(`the audit heartbeat of ${seen.at} (event ${seen.id}) is gone from the trail: events were cut off the end; GET /v1/audit/verify reports it`);
      const record = this.record({
        type: 'audit.heartbeat',
        actor: null,
        detail: { previous_at: lost ? seen.at : (newest?.at ?? null), started: seen === undefined, every_seconds: this.heartbeatMs / 1000 },
      });
      const written = await this.link(tx, head, record);
      return { id: written.id, hash: written.hash, at: record.at };
    });
  }

  private fresh(heartbeat: Heartbeat): boolean {
    return Date.now() - Date.parse(heartbeat.at) < this.heartbeatMs;
  }

  private async lockHead(q: Queryable): Promise<Head> {
    return (await q.query<Head>(LOCK_HEAD)).rows[0];
  }

  /** Whether a keyed event records an accepted legacy boundary (start-up's hint only; verify decides). */
  private async hasLegacyBoundary(q: Queryable): Promise<boolean> {
    const { rows } = await q.query(
      `SELECT 1 FROM audit_events WHERE type = 'audit.keyed' AND key_id IS NOT NULL AND body::jsonb->'detail' ? 'legacy_boundary' LIMIT 1`,
    );
    return rows.length > 0;
  }

  private expectedHash(row: AuditRow, prev: Buffer, keyed: boolean): Buffer | undefined {
    if (row.key_id !== null) return this.keys.link(prev, row.body, row.key_id);
    // Plain SHA-256 only before the first keyed event, and never for the chain's own events.
    if (keyed || row.type.startsWith('audit.')) return undefined;
    return createHash('sha256').update(prev).update(row.body, 'utf8').digest();
  }

  private record(event: AuditEvent) {
    const at = new Date().toISOString();
    const actor = event.actor ?? null;
    const leaseId = event.leaseId ?? null;
    const body = JSON.stringify({ at, type: event.type, actor, lease_id: leaseId, detail: event.detail ?? {} });
    return { at, type: event.type, actor, leaseId, body };
  }

  /**
   * Writes one event onto `head`, which the caller has locked. A head whose seal does not verify gets
   * an `audit.head_broken` event first, so that sealing the new event does not hide what happened.
   */
  private async link(q: Queryable, head: Head, r: ReturnType<AuditLog['record']>, opts: { genesis?: boolean } = {}): Promise<{ id: string; hash: Buffer }> {
    let prev = head.hash;
    const problem = await this.headProblem(q, head, opts.genesis === true);
    if (problem) {
      this.log.error(`the audit head's seal does not verify (${problem}): events were cut off the end or the head was replaced; recorded in the trail`);
      const evidence = this.record({
        type: 'audit.head_broken',
        actor: null,
        detail: { problem, head_hash: head.hash.toString('hex'), head_key_id: head.key_id },
      });
      prev = (await this.insert(q, prev, evidence)).hash;
    }
    return this.insert(q, prev, r);
  }

  private async insert(q: Queryable, prev: Buffer, r: ReturnType<AuditLog['record']>): Promise<{ id: string; hash: Buffer }> {
    const hash = this.keys.link(prev, r.body)!;
    const { rows } = await q.query<{ id: string }>(INSERT, [r.at, r.type, r.actor, r.leaseId, r.body, prev, hash, this.keys.currentId, this.keys.seal(hash)]);
    return { id: String(rows[0].id), hash };
  }

  /**
   * Undefined when the head may be extended: its seal verifies; or it is the initial head and this is
   * the genesis event; or it is the unkeyed end of a trail from before keying (verify then asks for the
   * operator's acceptance of that prefix). Otherwise what is wrong with it.
   */
  private async headProblem(q: Queryable, head: Head, genesis: boolean): Promise<string | undefined> {
    if (head.seal && head.key_id) {
      const expected = this.keys.seal(head.hash, head.key_id);
      if (expected?.equals(head.seal)) return undefined;
      return expected ? 'seal_invalid' : 'seal_key_unknown';
    }
    if (head.seal || head.key_id) return 'seal_invalid';
    const { rows } = await q.query<{ hash: Buffer; key_id: string | null }>('SELECT hash, key_id FROM audit_events ORDER BY id DESC LIMIT 1');
    if (!rows[0]) return genesis && head.hash.equals(ZERO) ? undefined : 'trail_emptied';
    if (rows[0].key_id === null && rows[0].hash.equals(head.hash)) return undefined;
    return 'seal_missing';
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

/** verifyIn's result: the public answer plus what seal-legacy needs to know. */
interface Walk extends AuditVerification {
  /** Which check failed: a link ('chain'), the unaccepted prefix, the head's seal, or the tail's heartbeats. */
  broken?: 'chain' | 'legacy' | 'unsealed' | 'tail';
  /** Whether the trail has keyed events. */
  keyed: boolean;
  /** The unkeyed prefix, if any. */
  legacy?: { firstId: string; endId: string; endHash: Buffer; count: number; accepted: boolean };
}

interface AuditRow {
  id: string;
  at: Date;
  type: string;
  actor: string | null;
  lease_id: string | null;
  body: string;
  prev_hash: Buffer;
  hash: Buffer;
  key_id: string | null;
}

async function newestHeartbeat(q: Queryable): Promise<Heartbeat | undefined> {
  const { rows } = await q.query<{ id: string; hash: Buffer; body: string }>(NEWEST_HEARTBEAT);
  return rows[0] && { id: String(rows[0].id), hash: rows[0].hash, at: JSON.parse(rows[0].body).at };
}

function parseBody(text: string): Record<string, any> | undefined {
  try {
    const body = JSON.parse(text);
    return body !== null && typeof body === 'object' ? body : undefined;
  } catch {
    return undefined;
  }
}

function matchesColumns(row: { at: Date; type: string; actor: string | null; lease_id: string | null }, body: Record<string, any>): boolean {
  return body.type === row.type && body.actor === row.actor && body.lease_id === row.lease_id && new Date(body.at).getTime() === row.at.getTime();
}
