import { Inject, Injectable, OnApplicationShutdown } from '@nestjs/common';
import { CONFIG } from '../config/config.module';
import { TesseraConfig } from '../config/config.loader';
import { Database, Queryable } from '../storage/database';
import { ISSUER_LOCK_NAMESPACE, IssuerSession } from './issuer-session';
import { LeaseError } from './lease-errors';
import { LeaseFilter, LeaseRow } from './lease.model';

const COLUMNS =
  'id, role, connection, plugin, account, owner, owner_issuer, run_id, state, created_at, updated_at, expires_at, max_expires_at, activated_at, revoked_at, last_error, last_error_code, issuer_lock';

/**
 * A pending lease whose issuing process is gone: the session lock its issuer_lock names is held by
 * nobody in this database (see IssuerSession). Leases written before issuer locks have none.
 */
const ISSUER_GONE = `(issuer_lock IS NOT NULL AND NOT EXISTS (
  SELECT 1 FROM pg_locks k
  WHERE k.locktype = 'advisory' AND k.granted AND k.objsubid = 2
    AND k.database = (SELECT oid FROM pg_database WHERE datname = current_database())
    AND k.classid = ${ISSUER_LOCK_NAMESPACE}::oid AND k.objid = leases.issuer_lock::oid))`;

/** States from which a lease can still be (or is being) revoked. */
const REVOCABLE = `('active','revoking','revoke_failed')`;

export interface NewLease {
  id: string;
  role: string;
  connection: string;
  plugin: string;
  account: string;
  owner: string;
  ownerIssuer: string;
  runId: string | null;
  expiresAt: Date;
  maxExpiresAt: Date;
}

/** Why a lease-wide limit refused a new lease. */
export type InsertRefusal = 'role_limit' | 'owner_limit';

/** All SQL about leases. Every state transition is conditional on the state it leaves. */
@Injectable()
export class LeaseRepository implements OnApplicationShutdown {
  private readonly issuerSession: IssuerSession;

  constructor(
    @Inject(Database) private readonly db: Database,
    @Inject(CONFIG) config: TesseraConfig,
  ) {
    this.issuerSession = new IssuerSession(config.storage.postgres_url);
  }

  async onApplicationShutdown(): Promise<void> {
    await this.issuerSession.close();
  }

  /**
   * Writes the pending lease, naming this process's issuer lock, unless the role already has
   * `caps.role` live leases or the owner (subject and issuer) `caps.owner`: then nothing is written and
   * the refusal is returned. Each count stops at its cap and uses its own partial index, so it stays
   * cheap however many leases exist; concurrent issues may overshoot a cap by a few.
   */
  async insertPending(l: NewLease, caps: { role: number; owner: number }): Promise<InsertRefusal | undefined> {
    const issuerLock = await this.issuerSession.key();
    const { rows } = await this.db.query<{ inserted: boolean; role_full: boolean; owner_full: boolean }>(
      `WITH role_full AS (SELECT count(*) >= $11 AS reached FROM (SELECT 1 FROM leases WHERE role = $2 AND state IN ('pending','active') LIMIT $11) r),
       owner_full AS (SELECT count(*) >= $12 AS reached FROM (SELECT 1 FROM leases WHERE owner = $6 AND owner_issuer = $7 AND state IN ('pending','active') LIMIT $12) o),
       ins AS (
         INSERT INTO leases (id, role, connection, plugin, account, owner, owner_issuer, run_id, state, expires_at, max_expires_at, issuer_lock)
         SELECT $1, $2, $3, $4, $5, $6, $7, $8, 'pending', $9, $10, $13
         WHERE NOT (SELECT reached FROM role_full) AND NOT (SELECT reached FROM owner_full)
         RETURNING 1)
       SELECT EXISTS (SELECT 1 FROM ins) AS inserted, (SELECT reached FROM role_full) AS role_full, (SELECT reached FROM owner_full) AS owner_full`,
      [l.id, l.role, l.connection, l.plugin, l.account, l.owner, l.ownerIssuer, l.runId, l.expiresAt, l.maxExpiresAt, caps.role, caps.owner, issuerLock],
    );
    const r = rows[0];
    if (r.inserted) return undefined;
    return r.role_full ? 'role_limit' : 'owner_limit';
  }

  /** Transitions that carry their audit event in the same statement (see AuditLog.appendGuarded). */
  readonly guards = {
    activate: (id: string) => ({
      sql: `UPDATE leases SET state = 'active', activated_at = now(), updated_at = now() WHERE id = $1 AND state = 'pending' RETURNING id`,
      values: [id],
    }),
    /** Moves the expiry of a lease that is still active and unexpired. */
    extend: (id: string, expiresAt: Date) => ({
      sql: `UPDATE leases SET expires_at = $2, updated_at = now() WHERE id = $1 AND state = 'active' AND expires_at > now() RETURNING ${COLUMNS}`,
      values: [id, expiresAt],
    }),
    /** revoking → revoked (or failed, for a lease that never went live). */
    finish: (id: string) => ({
      sql: `UPDATE leases SET state = CASE WHEN activated_at IS NULL THEN 'failed' ELSE 'revoked' END,
              revoked_at = now(), updated_at = now(), last_error = CASE WHEN activated_at IS NULL THEN last_error END,
              last_error_code = CASE WHEN activated_at IS NULL THEN last_error_code END
            WHERE id = $1 AND state IN ('revoking','revoke_failed') RETURNING ${COLUMNS}`,
      values: [id],
    }),
  };

  /** A lease row as a guard returns it (JSON: timestamps as text). */
  static fromJson(row: Record<string, any>): LeaseRow {
    const date = (v: unknown) => (v == null ? null : new Date(v as string));
    return {
      ...(row as LeaseRow),
      created_at: date(row.created_at)!,
      updated_at: date(row.updated_at)!,
      expires_at: date(row.expires_at)!,
      max_expires_at: date(row.max_expires_at)!,
      activated_at: date(row.activated_at),
      revoked_at: date(row.revoked_at),
    };
  }

  async get(id: string, q: Queryable = this.db): Promise<LeaseRow | undefined> {
    const { rows } = await q.query<LeaseRow>(`SELECT ${COLUMNS} FROM leases WHERE id = $1`, [id]);
    return rows[0];
  }

  /** pending → revoking, after a failed create (whatever the plugin left is removed next). */
  async abandon(id: string, error: LeaseError): Promise<LeaseRow | undefined> {
    const { rows } = await this.db.query<LeaseRow>(
      `UPDATE leases SET state = 'revoking', last_error = $2, last_error_code = $3, updated_at = now()
       WHERE id = $1 AND state = 'pending' RETURNING ${COLUMNS}`,
      [id, error.detail, error.code],
    );
    return rows[0];
  }

  /**
   * pending → revoking for a lease whose issuer is gone: its issuer lock is held by nobody, or (for a
   * lease without one, or a process stuck that long) it is older than the pending timeout.
   */
  async claimAbandoned(id: string, pendingTimeoutSeconds: number): Promise<LeaseRow | undefined> {
    const { rows } = await this.db.query<LeaseRow>(
      `UPDATE leases SET state = 'revoking', last_error = 'abandoned while pending', last_error_code = 'abandoned', updated_at = now()
       WHERE id = $1 AND state = 'pending' AND (created_at <= now() - make_interval(secs => $2) OR ${ISSUER_GONE}) RETURNING ${COLUMNS}`,
      [id, pendingTimeoutSeconds],
    );
    return rows[0];
  }

  /** active → revoking once expires_at has passed (a renew that moved it wins). */
  async claimExpired(id: string): Promise<LeaseRow | undefined> {
    const { rows } = await this.db.query<LeaseRow>(
      `UPDATE leases SET state = 'revoking', updated_at = now()
       WHERE id = $1 AND state = 'active' AND expires_at <= now() RETURNING ${COLUMNS}`,
      [id],
    );
    return rows[0];
  }

  /** active/revoke_failed → revoking, for an explicit revoke. Returns the row as it now is. */
  async claimForRevocation(id: string): Promise<LeaseRow | undefined> {
    const { rows } = await this.db.query<LeaseRow>(
      `UPDATE leases SET state = 'revoking', updated_at = now()
       WHERE id = $1 AND state IN ${REVOCABLE} RETURNING ${COLUMNS}`,
      [id],
    );
    return rows[0];
  }

  /**
   * Moves every lease matching the filter that is live or being issued to revoking; returns their ids.
   * A pending lease claimed here ends failed: its issue finds it taken and removes the account. Leases
   * already revoking are left alone (their updated_at keeps them visible to the reconciler).
   */
  async claimMatching(filter: LeaseFilter): Promise<string[]> {
    const { where, values } = whereClause(filter);
    const { rows } = await this.db.query<{ id: string }>(
      `UPDATE leases SET state = 'revoking', updated_at = now()
       WHERE state IN ('pending','active','revoke_failed') ${where ? `AND ${where}` : ''} RETURNING id`,
      values,
    );
    return rows.map((r) => r.id);
  }

  async recordError(id: string, error: LeaseError): Promise<void> {
    await this.db.query(`UPDATE leases SET last_error = $2, last_error_code = $3 WHERE id = $1`, [id, error.detail, error.code]);
  }

  async markRevokeFailed(id: string, error: LeaseError, q: Queryable): Promise<boolean> {
    const { rowCount } = await q.query(
      `UPDATE leases SET state = 'revoke_failed', last_error = $2, last_error_code = $3, updated_at = now() WHERE id = $1 AND state = 'revoking'`,
      [id, error.detail, error.code],
    );
    return (rowCount ?? 0) > 0;
  }

  /** Keyset pagination, newest first. */
  async list(filter: LeaseFilter, limit: number, after?: { createdAt: Date; id: string }): Promise<LeaseRow[]> {
    const { where, values } = whereClause(filter);
    const conditions = where ? [where] : [];
    if (after) {
      values.push(after.createdAt, after.id);
      conditions.push(`(created_at, id) < ($${values.length - 1}, $${values.length})`);
    }
    values.push(limit);
    const { rows } = await this.db.query<LeaseRow>(
      `SELECT ${COLUMNS} FROM leases ${conditions.length ? `WHERE ${conditions.join(' AND ')}` : ''}
       ORDER BY created_at DESC, id DESC LIMIT $${values.length}`,
      values,
    );
    return rows;
  }

  /**
   * Leases the reconciler must hand to the workers: expired, stuck revoking, failed, or abandoned
   * (pending with their issuing process gone, or older than the pending timeout).
   */
  async findDue(opts: { graceSeconds: number; staleSeconds: number; pendingTimeoutSeconds: number; limit: number }): Promise<string[]> {
    const { rows } = await this.db.query<{ id: string }>(
      `(SELECT id FROM leases WHERE state = 'active' AND expires_at <= now() - make_interval(secs => $1) ORDER BY expires_at LIMIT $4)
       UNION ALL
       (SELECT id FROM leases WHERE state IN ('revoking','revoke_failed') AND updated_at <= now() - make_interval(secs => $2) LIMIT $4)
       UNION ALL
       (SELECT id FROM leases WHERE state = 'pending' AND (created_at <= now() - make_interval(secs => $3) OR ${ISSUER_GONE}) LIMIT $4)`,
      [opts.graceSeconds, opts.staleSeconds, opts.pendingTimeoutSeconds, opts.limit],
    );
    return rows.map((r) => r.id);
  }

  async countRevokeFailed(): Promise<number> {
    const { rows } = await this.db.query<{ n: string }>(
      `SELECT count(*) AS n FROM leases WHERE state = 'revoke_failed'`,
    );
    return Number(rows[0].n);
  }
}

function whereClause(filter: LeaseFilter): { where: string; values: unknown[] } {
  const values: unknown[] = [];
  const parts: string[] = [];
  const add = (column: string, value: unknown) => {
    if (value === undefined) return;
    values.push(value);
    parts.push(`${column} = $${values.length}`);
  };
  add('role', filter.role);
  add('connection', filter.connection);
  add('state', filter.state);
  add('run_id', filter.runId);
  add('owner', filter.owner);
  add('owner_issuer', filter.ownerIssuer);
  return { where: parts.join(' AND '), values };
}
