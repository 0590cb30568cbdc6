/** The audit trail's SQL: the head's row lock, the insert that moves the head, and the reads behind list, verify and heartbeats. */
import { Database, Queryable } from '../storage/database';
import { AuditHead, AuditRow, Heartbeat } from './audit-chain';
import { StoredEvent } from './audit-event';

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
/** Rows verify reads per query. */
const PAGE = 5000;

/**
 * Every method but list takes the Queryable to run on (the pool, or the caller's transaction), so the
 * head's lock and the statements after it share one transaction.
 */
export class AuditRepository {
  constructor(private readonly db: Database) {}

  /** Locks the head's row until the transaction ends, and reads it. */
  async lockHead(q: Queryable): Promise<AuditHead> {
    return (await q.query<AuditHead>(LOCK_HEAD)).rows[0];
  }

  /** Reads the head without locking it (undefined if its row is missing). */
  async readHead(q: Queryable): Promise<AuditHead | undefined> {
    return (await q.query<AuditHead>('SELECT hash, key_id, seal FROM audit_head WHERE id = 1')).rows[0];
  }

  async oldestEvent(q: Queryable): Promise<{ key_id: string | null } | undefined> {
    return (await q.query<{ key_id: string | null }>('SELECT key_id FROM audit_events ORDER BY id LIMIT 1')).rows[0];
  }

  async newestEvent(q: Queryable): Promise<{ hash: Buffer; key_id: string | null } | undefined> {
    return (await q.query<{ hash: Buffer; key_id: string | null }>('SELECT hash, key_id FROM audit_events ORDER BY id DESC LIMIT 1')).rows[0];
  }

  /** Whether a keyed event records an accepted legacy boundary (start-up's hint only; verify decides). */
  async hasLegacyBoundary(q: Queryable): Promise<boolean> {
    const { rows } = await q.query(
      `SELECT 1 FROM audit_events WHERE type = 'audit.keyed' AND key_id IS NOT NULL AND body::jsonb->'detail' ? 'legacy_boundary' LIMIT 1`,
    );
    return rows.length > 0;
  }

  /** Writes the event with its link and moves the head to it; the caller holds the head's lock. Returns the event's id. */
  async insert(q: Queryable, e: StoredEvent, link: { prev: Buffer; hash: Buffer; keyId: string; seal: Buffer }): Promise<string> {
    const { rows } = await q.query<{ id: string }>(INSERT, [e.at, e.type, e.actor, e.leaseId, e.body, link.prev, link.hash, link.keyId, link.seal]);
    return String(rows[0].id);
  }

  /** Events at or after `since`, oldest first: their ids and canonical text. */
  async list(since: Date | undefined, limit: number): Promise<{ id: string; body: string }[]> {
    const { rows } = await this.db.query<{ id: string; body: string }>(
      `SELECT id, body FROM audit_events WHERE ($1::timestamptz IS NULL OR at >= $1) ORDER BY id LIMIT $2`,
      [since ?? null, limit],
    );
    return rows;
  }

  /** Every event in id order, a page at a time. */
  async *pages(q: Queryable): AsyncGenerator<AuditRow[]> {
    let after = '0';
    for (;;) {
      const { rows } = await q.query<AuditRow>(
        'SELECT id, at, type, actor, lease_id, body, prev_hash, hash, key_id FROM audit_events WHERE id > $1 ORDER BY id LIMIT $2',
        [after, PAGE],
      );
      if (rows.length) yield rows;
      if (rows.length < PAGE) return;
      after = String(rows[rows.length - 1].id);
    }
  }

  async newestHeartbeat(q: Queryable): Promise<Heartbeat | undefined> {
    const { rows } = await q.query<{ id: string; hash: Buffer; body: string }>(NEWEST_HEARTBEAT);
    return rows[0] && { id: String(rows[0].id), hash: rows[0].hash, at: JSON.parse(rows[0].body).at };
  }

  /** Whether the heartbeat is still in the trail, unchanged. */
  async heartbeatKept(q: Queryable, heartbeat: Heartbeat): Promise<boolean> {
    return (await q.query(HEARTBEAT_KEPT, [heartbeat.id, heartbeat.hash])).rows.length > 0;
  }
}
