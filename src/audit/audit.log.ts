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
}

const ZERO = Buffer.alloc(32);

/** Taken first by every append: the row lock on audit_head serialises appends. */
const LOCK_HEAD = 'SELECT hash, seal FROM audit_head WHERE id = 1 FOR UPDATE';
/** Chains the event onto the locked head and moves the head (with its new seal) in one statement. */
const INSERT = `
  WITH ins AS (
    INSERT INTO audit_events (at, type, actor, lease_id, body, prev_hash, hash, key_id)
    VALUES ($1, $2, $3, $4, $5, $6, $7, $8) RETURNING id)
  UPDATE audit_head SET hash = $7, key_id = $8, seal = $9 FROM ins WHERE audit_head.id = 1 RETURNING ins.id`;

/**
 * The audit trail, chained with a MAC keyed from the master key (DESIGN §9, invariant 5): each event's
 * hash is HMAC-SHA256(prev hash, canonical text) under a key derived from the master key, whose id is
 * stored with the event, and the head carries a seal over the newest hash. Whoever can write the state
 * database but does not hold the master key can therefore not edit, insert or delete an event (nor cut
 * events off the end) and recompute a chain that verifies. The key never reaches PostgreSQL: the MAC is
 * computed here, between locking the head and writing the event. Appends run inside the caller's
 * transaction when one is given.
 *
 * Refused requests are sampled per caller (see DenialSampler), so a flood of them writes few rows.
 */
@Injectable()
export class AuditLog implements OnApplicationBootstrap, BeforeApplicationShutdown {
  private readonly log = new Logger(AuditLog.name);
  private readonly keys: AuditKeys;
  private readonly denials: DenialSampler;
  private readonly denialWindowMs: number;
  private timer: NodeJS.Timeout | undefined;

  constructor(
    @Inject(Database) private readonly db: Database,
    @Inject(CONFIG) config: TesseraConfig,
  ) {
    this.keys = new AuditKeys(config.encryption.key, config.encryption.previous_keys);
    this.denialWindowMs = config.limits.audited_denials_window * 1000;
    this.denials = new DenialSampler(config.limits.audited_denials_per_identity, this.denialWindowMs);
  }

  /**
   * A chain without a keyed event (a new database, or one written before the chain was keyed) gets one
   * now: from then on verify requires the keyed part, so rewriting everything as plain SHA-256 fails.
   */
  async onApplicationBootstrap(): Promise<void> {
    await this.db.tx(async (tx) => {
      const { rows } = await tx.query<{ hash: Buffer; seal: Buffer | null }>(LOCK_HEAD);
      if (!rows[0]?.seal) await this.link(tx, rows[0].hash, this.record({ type: 'audit.keyed', actor: null, detail: { key_id: this.keys.currentId } }));
    });
    // Summaries are written within a quarter window of the window's end.
    this.timer = setInterval(() => void this.writeSummaries(false), Math.max(250, Math.min(this.denialWindowMs / 4, 15_000)));
    this.timer.unref();
  }

  async beforeApplicationShutdown(): Promise<void> {
    if (this.timer) clearInterval(this.timer);
    await this.writeSummaries(true);
  }

  async append(event: AuditEvent, q?: Queryable): Promise<void> {
    if (event.type === 'request.denied' && !(await this.admitDenial(event))) return;
    const record = this.record(event);
    const chain = async (tx: Queryable) => {
      const { rows } = await tx.query<{ hash: Buffer }>(LOCK_HEAD);
      await this.link(tx, rows[0].hash, record);
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
      const { rows } = await tx.query<{ row: Record<string, any> | null; head: Buffer | null }>(
        `WITH guard AS (${guard.sql}),
         head AS (SELECT hash FROM audit_head WHERE id = 1 AND EXISTS (SELECT 1 FROM guard) FOR UPDATE)
         SELECT (SELECT to_jsonb(g) FROM guard g LIMIT 1) AS row, (SELECT hash FROM head) AS head`,
        guard.values,
      );
      const row = rows[0]?.row ?? undefined;
      if (row && rows[0].head) await this.link(tx, rows[0].head, record);
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
   * Walks the chain from the first event; an edited, inserted or deleted event breaks it, and so does a
   * head whose seal does not cover the last event. Events from before the chain was keyed (key_id null,
   * plain SHA-256 links) are accepted only as a prefix followed by keyed events. One snapshot throughout,
   * so events appended meanwhile are neither half-seen nor mistaken for a broken head.
   */
  async verify(): Promise<AuditVerification> {
    return this.db.tx((q) => this.verifyIn(q), { snapshot: true });
  }

  private async verifyIn(q: Queryable): Promise<AuditVerification> {
    let prev: Buffer = ZERO;
    let prevKeyId: string | null = null;
    let keyed = false;
    let checked = 0;
    let after = '0';
    const page = 5000;
    for (;;) {
      const { rows } = await q.query<AuditRow>(
        'SELECT id, at, type, actor, lease_id, body, prev_hash, hash, key_id FROM audit_events WHERE id > $1 ORDER BY id LIMIT $2',
        [after, page],
      );
      for (const row of rows) {
        keyed ||= row.key_id !== null;
        const expected = this.expectedHash(row, prev, keyed);
        if (!expected || !row.prev_hash.equals(prev) || !row.hash.equals(expected) || !matchesColumns(row)) {
          return { ok: false, events_checked: checked, first_bad_id: String(row.id) };
        }
        prev = row.hash;
        prevKeyId = row.key_id;
        checked++;
        after = String(row.id);
      }
      if (rows.length < page) break;
    }
    const { rows: head } = await q.query<{ hash: Buffer; key_id: string | null; seal: Buffer | null }>('SELECT hash, key_id, seal FROM audit_head WHERE id = 1');
    // A head that is not the last event's, or not sealed under the key: events were removed from the
    // end (or the whole keyed chain replaced).
    const seal = prevKeyId === null ? undefined : this.keys.seal(prev, prevKeyId);
    const sealed = head[0] && seal && head[0].seal && head[0].key_id === prevKeyId && head[0].hash.equals(prev) && head[0].seal.equals(seal);
    if (!keyed || !sealed) return { ok: false, events_checked: checked, first_bad_id: String(Number(after) + 1) };
    return { ok: true, events_checked: checked };
  }

  private expectedHash(row: AuditRow, prev: Buffer, keyed: boolean): Buffer | undefined {
    if (row.key_id !== null) return this.keys.link(prev, row.body, row.key_id);
    // Plain SHA-256 only before the first keyed event, and never for the event that starts the keying.
    if (keyed || row.type === 'audit.keyed') return undefined;
    return createHash('sha256').update(prev).update(row.body, 'utf8').digest();
  }

  private record(event: AuditEvent) {
    const at = new Date().toISOString();
    const actor = event.actor ?? null;
    const leaseId = event.leaseId ?? null;
    const body = JSON.stringify({ at, type: event.type, actor, lease_id: leaseId, detail: event.detail ?? {} });
    return { at, type: event.type, actor, leaseId, body };
  }

  /** Writes one event onto `prev`, the head the caller has locked. */
  private async link(q: Queryable, prev: Buffer, r: ReturnType<AuditLog['record']>): Promise<void> {
    const hash = this.keys.link(prev, r.body)!;
    await q.query(INSERT, [r.at, r.type, r.actor, r.leaseId, r.body, prev, hash, this.keys.currentId, this.keys.seal(hash)]);
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

function matchesColumns(row: { at: Date; type: string; actor: string | null; lease_id: string | null; body: string }): boolean {
  try {
    const body = JSON.parse(row.body);
    return body.type === row.type && body.actor === row.actor && body.lease_id === row.lease_id && new Date(body.at).getTime() === row.at.getTime();
  } catch {
    return false;
  }
}
