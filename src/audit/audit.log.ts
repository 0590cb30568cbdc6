import { Inject, Injectable } from '@nestjs/common';
import { createHash } from 'node:crypto';
import { Database, Queryable } from '../storage/database';

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
  | 'bootstrap.created'
  | 'bootstrap.used'
  | 'static.rotated'
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

// One statement: lock the head, chain the new event onto it, move the head. The row lock on
// audit_head serialises appends, so two transactions never chain onto the same predecessor.
const APPEND = `
  WITH head AS (SELECT hash FROM audit_head WHERE id = 1 FOR UPDATE),
  ins AS (
    INSERT INTO audit_events (at, type, actor, lease_id, body, prev_hash, hash)
    SELECT $1, $2, $3, $4, $5, head.hash, sha256(head.hash || convert_to($5, 'UTF8')) FROM head
    RETURNING id, hash)
  UPDATE audit_head SET hash = ins.hash FROM ins WHERE audit_head.id = 1 RETURNING ins.id`;

/** The hash-chained audit trail. Appends run inside the caller's transaction when one is given. */
@Injectable()
export class AuditLog {
  constructor(@Inject(Database) private readonly db: Database) {}

  async append(event: AuditEvent, q: Queryable = this.db): Promise<void> {
    const at = new Date().toISOString();
    const actor = event.actor ?? null;
    const leaseId = event.leaseId ?? null;
    const body = JSON.stringify({ at, type: event.type, actor, lease_id: leaseId, detail: event.detail ?? {} });
    await q.query(APPEND, [at, event.type, actor, leaseId, body]);
  }

  /**
   * One round trip for a state change and its audit event: `guard` is a data-modifying statement with
   * RETURNING (its parameters $1..$n); the event is appended only if it returned a row, in the same
   * statement (so atomically, and holding the chain's lock only for that statement). Returns the
   * guard's row as JSON, or undefined when it matched nothing.
   */
  async appendGuarded(guard: { sql: string; values: unknown[] }, event: AuditEvent, q: Queryable = this.db): Promise<Record<string, any> | undefined> {
    const at = new Date().toISOString();
    const n = guard.values.length;
    const p = (i: number) => `$${n + i}`;
    const body = JSON.stringify({ at, type: event.type, actor: event.actor ?? null, lease_id: event.leaseId ?? null, detail: event.detail ?? {} });
    const { rows } = await q.query<{ row: Record<string, any> | null }>(
      `WITH guard AS (${guard.sql}),
       head AS (SELECT hash FROM audit_head WHERE id = 1 AND EXISTS (SELECT 1 FROM guard) FOR UPDATE),
       ins AS (
         INSERT INTO audit_events (at, type, actor, lease_id, body, prev_hash, hash)
         SELECT ${p(1)}, ${p(2)}, ${p(3)}, ${p(4)}, ${p(5)}, head.hash, sha256(head.hash || convert_to(${p(5)}, 'UTF8')) FROM head
         RETURNING hash),
       moved AS (UPDATE audit_head SET hash = ins.hash FROM ins WHERE audit_head.id = 1 RETURNING 1)
       SELECT (SELECT to_jsonb(g) FROM guard g LIMIT 1) AS row, (SELECT count(*) FROM moved) AS moved`,
      [...guard.values, at, event.type, event.actor ?? null, event.leaseId ?? null, body],
    );
    return rows[0]?.row ?? undefined;
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
   * Walks the chain from the first event; an edited, inserted or deleted event breaks it. One snapshot
   * throughout, so events appended meanwhile are neither half-seen nor mistaken for a broken head.
   */
  async verify(): Promise<AuditVerification> {
    return this.db.tx((q) => this.verifyIn(q), { snapshot: true });
  }

  private async verifyIn(q: Queryable): Promise<AuditVerification> {
    let prev: Buffer = ZERO;
    let checked = 0;
    let after = '0';
    const page = 5000;
    for (;;) {
      const { rows } = await q.query<{ id: string; at: Date; type: string; actor: string | null; lease_id: string | null; body: string; prev_hash: Buffer; hash: Buffer }>(
        'SELECT id, at, type, actor, lease_id, body, prev_hash, hash FROM audit_events WHERE id > $1 ORDER BY id LIMIT $2',
        [after, page],
      );
      for (const row of rows) {
        const expected = createHash('sha256').update(prev).update(row.body, 'utf8').digest();
        if (!row.prev_hash.equals(prev) || !row.hash.equals(expected) || !matchesColumns(row)) {
          return { ok: false, events_checked: checked, first_bad_id: String(row.id) };
        }
        prev = row.hash;
        checked++;
        after = String(row.id);
      }
      if (rows.length < page) break;
    }
    const { rows: head } = await q.query<{ hash: Buffer }>('SELECT hash FROM audit_head WHERE id = 1');
    // A head that is not the last event's hash means events were removed from the end.
    if (!head[0] || !head[0].hash.equals(prev)) return { ok: false, events_checked: checked, first_bad_id: String(Number(after) + 1) };
    return { ok: true, events_checked: checked };
  }
}

function matchesColumns(row: { at: Date; type: string; actor: string | null; lease_id: string | null; body: string }): boolean {
  try {
    const body = JSON.parse(row.body);
    return body.type === row.type && body.actor === row.actor && body.lease_id === row.lease_id && new Date(body.at).getTime() === row.at.getTime();
  } catch {
    return false;
  }
}
