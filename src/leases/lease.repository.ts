/**
 * All SQL about leases: every state change is one method here, beside the transition table it is built
 * from (lease-state.ts), so one file shows what can happen to a row; the longer shared statements and
 * the filter builders are in lease.sql.ts.
 */
import { Inject, Injectable, OnApplicationShutdown } from '@nestjs/common';
import { QueryResultRow } from 'pg';
import { AuditEvent, AuditLog } from '../audit/audit.log';
import type { ShardHead } from '../audit/audit.repository';
import { CONFIG } from '../config/config.module';
import { TesseraConfig } from '../config/config.loader';
import { GroupCommit } from '../../plugins/contract';
import { Database, Queryable } from '../storage/database';
import { IssuerSession } from './issuer-session';
import { LeaseError } from './lease-errors';
import { LeaseFilter, LeaseRow, LeaseState } from './lease.model';
import { TRANSITIONS } from './lease-state';
import { activateManySql, CLAIM_EXPIRED, COLUMNS, COUNT_ACTIVE_BY_ROLE, COUNT_LIVE, COUNT_REVOKE_FAILED, EXPIRY_STATUS, FIND_DUE, ISSUER_GONE, MatchChanged, NewLease, PendingInsert, from, insertPendingSql, revokeMatching, whereClause } from './lease.sql';

export type { NewLease };

/** Why a lease-wide limit refused a new lease. */
export type InsertRefusal = 'role_limit' | 'owner_limit';

/** Each transition is one method, conditional on the states lease-state.ts lets it start from; an audited one appends its event in the same transaction. */
@Injectable()
export class LeaseRepository implements OnApplicationShutdown {
  private readonly issuerSession: IssuerSession;
  /**
   * Issue's two writes, group-committed one batch at a time; a batch that fails is redone lease by
   * lease (GroupCommit's `alone`), so one lease's failure never fails its neighbours. One pending
   * insert at a time also means each counts the leases the one before it wrote: the caps overshoot
   * only across replicas.
   */
  private readonly activations: GroupCommit<{ id: string; event: AuditEvent }, boolean>;
  private readonly pendings: GroupCommit<PendingInsert, InsertRefusal | undefined>;

  constructor(
    @Inject(Database) private readonly db: Database,
    @Inject(CONFIG) config: TesseraConfig,
    @Inject(AuditLog) private readonly audit: Pick<AuditLog, 'append' | 'appendMany' | 'firstShard'>,
  ) {
    this.issuerSession = new IssuerSession(config.storage.postgres_url);
    this.activations = new GroupCommit((batch) => this.activateMany(batch), { maxBatch: 64, inFlight: 1, alone: (b) => this.activateOne(b) });
    this.pendings = new GroupCommit((batch) => this.insertPendingStatement(batch), {
      maxBatch: 64,
      inFlight: 1,
      alone: async (b) => (await this.insertPendingStatement([b]))[0],
    });
  }

  async onApplicationShutdown(): Promise<void> {
    await this.issuerSession.close();
  }

  /**
   * issue: writes the pending lease, naming this process's issuer lock, unless the role already has
   * `caps.role` live leases or the owner (subject and issuer) `caps.owner`: then nothing is written and
   * the refusal is returned. Inserts arriving together share one statement (group commit; see
   * insertPendingSql), and each count is made once per role or owner in it.
   */
  insertPending(l: NewLease, caps: { role: number; owner: number }): Promise<InsertRefusal | undefined> {
    return this.pendings.submit({ lease: l, caps });
  }

  private async insertPendingStatement(batch: PendingInsert[]): Promise<(InsertRefusal | undefined)[]> {
    const { sql, params } = insertPendingSql(batch, await this.issuerSession.key());
    const { rows } = await this.db.query<{ inserted: boolean; role_full: boolean; owner_full: boolean }>(sql, params);
    return rows.map((r) => (r.inserted ? undefined : r.role_full ? 'role_limit' : 'owner_limit'));
  }

  /**
   * pending → active, with its `lease.issued` event. False when the lease was taken meanwhile.
   * Activations arriving together share one transaction (group commit): one UPDATE, one audit insert.
   */
  activate(id: string, event: AuditEvent): Promise<boolean> {
    return this.activations.submit({ id, event });
  }

  /** Three round trips: BEGIN with the activation and the head's lock, the events, COMMIT. */
  private async activateMany(batch: { id: string; event: AuditEvent }[]): Promise<boolean[]> {
    const from = this.audit.firstShard();
    return this.db.txStartingWith<boolean[], ShardHead & { activated: string[] }>(activateManySql(batch.map((b) => b.id), from), async (tx, [row]) => {
      const done = new Set(row.activated);
      const head = row.shard === null ? undefined : { shard: row.shard, hash: row.hash, key_id: row.key_id, seal: row.seal };
      await this.audit.appendMany(batch.filter((b) => done.has(b.id)).map((b) => b.event), tx, { from, head });
      return batch.map((b) => done.has(b.id));
    });
  }

  private async activateOne({ id, event }: { id: string; event: AuditEvent }): Promise<boolean> {
    const row = await this.withEvent<{ id: string }>(
      `UPDATE leases SET state = 'active', activated_at = now(), updated_at = now() WHERE id = $1 AND state IN ${from('activate')} RETURNING id`,
      [id],
      event,
    );
    return row !== undefined;
  }

  /** A new expiry for a lease still active and unexpired, with its `lease.renewed` event. */
  async renew(id: string, expiresAt: Date, event: AuditEvent): Promise<LeaseRow | undefined> {
    return this.withEvent<LeaseRow>(
      `UPDATE leases SET expires_at = $2, updated_at = now() WHERE id = $1 AND state IN ${from('renew')} AND expires_at > now() RETURNING ${COLUMNS}`,
      [id, expiresAt],
      event,
    );
  }

  /**
   * Mass expiry: claims, in one statement, up to `limit` leases of this lease's connection that are
   * active and due (this one first when it is due), moving them to revoking for reason expired. Rows
   * another claim holds are skipped, not waited for, so concurrent claims take disjoint batches.
   * Returns the rows claimed (none when nothing of that connection is due).
   */
  async claimExpired(id: string, limit: number): Promise<LeaseRow[]> {
    const { rows } = await this.db.query<LeaseRow>(
      CLAIM_EXPIRED,
      [id, limit, TRANSITIONS.expire.reason],
    );
    return rows;
  }

  /**
   * Whether a lease is held by an expiry claim still at work: revoking for expiry, no error recorded
   * yet (a batch records its failures), and claimed less than `seconds` ago (a claimer that died is
   * not waited for longer than that).
   */
  /** A lease's state, and whether an expiry claim holds it (see heldByExpiryClaim), in one round trip. */
  async expiryStatus(id: string, seconds: number): Promise<{ state: LeaseState; held: boolean } | undefined> {
    const { rows } = await this.db.query<{ state: LeaseState; held: boolean }>(EXPIRY_STATUS, [id, TRANSITIONS.expire.reason, seconds]);
    return rows[0];
  }

  /** Whether an expiry claim holds the lease: revoking for expiry, no error recorded, claimed less than `seconds` ago. */
  async heldByExpiryClaim(id: string, seconds: number): Promise<boolean> {
    return (await this.expiryStatus(id, seconds))?.held ?? false;
  }

  /** An explicit revoke: → revoking. Returns the row as it now is. */
  async beginRevoke(id: string): Promise<LeaseRow | undefined> {
    return this.toRevoking('beginRevoke', id);
  }

  /**
   * Moves every lease matching the filter that is live or being issued to revoking; returns their ids.
   * A pending lease claimed here ends failed: its issue finds it taken and removes the account. Leases
   * already revoking are left alone (their updated_at keeps them visible to the reconciler).
   */
  async beginRevokeMatching(filter: LeaseFilter, reason: 'owner' | 'bulk'): Promise<string[]> {
    const { sql, values } = revokeMatching(filter, reason);
    const { rows } = await this.db.query<{ id: string }>(sql, values);
    return rows.map((r) => r.id);
  }

  /**
   * beginRevokeMatching, but only when it matches exactly `expected` leases (the count the operator
   * confirmed); otherwise nothing changes and the answer is undefined.
   */
  async beginRevokeMatchingExactly(filter: LeaseFilter, reason: 'owner' | 'bulk', expected: number): Promise<string[] | undefined> {
    const { sql, values } = revokeMatching(filter, reason);
    return this.db.tx(async (tx) => {
      const { rows } = await tx.query<{ id: string }>(sql, values);
      // Throwing rolls the transaction back: the leases stay as they were.
      if (rows.length !== expected) throw new MatchChanged();
      return rows.map((r) => r.id);
    }).catch((err) => {
      if (err instanceof MatchChanged) return undefined;
      throw err;
    });
  }

  /** How many leases beginRevokeMatching would move now: the same states, the same filter. */
  async countMatching(filter: LeaseFilter): Promise<number> {
    const { where, values } = whereClause(filter);
    const { rows } = await this.db.query<{ n: string }>(
      `SELECT count(*) AS n FROM leases WHERE state IN ${from('beginRevokeMatching')} ${where ? `AND ${where}` : ''}`,
      values,
    );
    return Number(rows[0].n);
  }

  /** Active leases counted by role and plugin. */
  async countActiveByRole(): Promise<Array<{ role: string; plugin: string; count: number }>> {
    const { rows } = await this.db.query<{ role: string; plugin: string; n: string }>(COUNT_ACTIVE_BY_ROLE);
    return rows.map((r) => ({ role: r.role, plugin: r.plugin, count: Number(r.n) }));
  }

  /** pending → revoking after a failed create (whatever the plugin left is removed next). */
  async failIssue(id: string, error: LeaseError): Promise<LeaseRow | undefined> {
    return this.toRevoking('failIssue', id, { error });
  }

  /**
   * pending → revoking for a lease whose issuer is gone: its issuer lock is held by nobody, or (for a
   * lease without one, or a process stuck that long) it is older than the pending timeout.
   */
  async abandon(id: string, pendingTimeoutSeconds: number): Promise<LeaseRow | undefined> {
    return this.toRevoking('abandon', id, {
      when: `(created_at <= now() - make_interval(secs => $5) OR ${ISSUER_GONE})`,
      params: [pendingTimeoutSeconds],
      error: { code: 'abandoned', detail: 'abandoned while pending' },
    });
  }

  /** revoking → revoked (or failed, for a lease that never went live), with its event. */
  async finish(id: string, event: AuditEvent): Promise<LeaseRow | undefined> {
    return this.withEvent<LeaseRow>(
      `UPDATE leases SET state = CASE WHEN activated_at IS NULL THEN 'failed' ELSE 'revoked' END,
         revoked_at = now(), updated_at = now(), last_error = CASE WHEN activated_at IS NULL THEN last_error END,
         last_error_code = CASE WHEN activated_at IS NULL THEN last_error_code END
       WHERE id = $1 AND state IN ${from('finish')} RETURNING ${COLUMNS}`,
      [id],
      event,
    );
  }

  /**
   * `finish` for many leases at once: one update, and each finished lease's event appended in the same
   * transaction, in the order given. Returns the rows that finished (a lease another revoker finished
   * first is left out, and its event is not written again).
   */
  async finishMany(items: readonly { id: string; event: AuditEvent }[]): Promise<LeaseRow[]> {
    if (!items.length) return [];
    return this.db.tx(async (tx) => {
      const { rows } = await tx.query<LeaseRow>(
        `UPDATE leases SET state = CASE WHEN activated_at IS NULL THEN 'failed' ELSE 'revoked' END,
           revoked_at = now(), updated_at = now(), last_error = CASE WHEN activated_at IS NULL THEN last_error END,
           last_error_code = CASE WHEN activated_at IS NULL THEN last_error_code END
         WHERE id = ANY($1::text[]) AND state IN ${from('finish')} RETURNING ${COLUMNS}`,
        [items.map((i) => i.id)],
      );
      const finished = new Map(rows.map((r) => [r.id, r]));
      const done = items.filter((item) => finished.has(item.id));
      await this.audit.appendMany(done.map((item) => item.event), tx);
      return done.map((item) => finished.get(item.id)!);
    });
  }

  /** `recordError` for many leases at once, each with its own error. */
  async recordErrors(errors: readonly { id: string; error: LeaseError }[]): Promise<void> {
    if (!errors.length) return;
    await this.db.query(
      `UPDATE leases SET last_error = e.detail, last_error_code = e.code
       FROM unnest($1::text[], $2::text[], $3::text[]) AS e(id, detail, code) WHERE leases.id = e.id`,
      [errors.map((e) => e.id), errors.map((e) => e.error.detail), errors.map((e) => e.error.code)],
    );
  }

  /** revoking → revoke_failed with its event; false when the lease was not revoking (already marked, or done). */
  async markRevokeFailed(id: string, error: LeaseError, event: AuditEvent): Promise<boolean> {
    const row = await this.withEvent<{ id: string }>(
      `UPDATE leases SET state = 'revoke_failed', last_error = $2, last_error_code = $3, updated_at = now()
       WHERE id = $1 AND state IN ${from('markRevokeFailed')} RETURNING id`,
      [id, error.detail, error.code],
      event,
    );
    return row !== undefined;
  }

  async get(id: string, q: Queryable = this.db): Promise<LeaseRow | undefined> {
    const { rows } = await q.query<LeaseRow>(`SELECT ${COLUMNS} FROM leases WHERE id = $1`, [id]);
    return rows[0];
  }

  async recordError(id: string, error: LeaseError): Promise<void> {
    await this.db.query(`UPDATE leases SET last_error = $2, last_error_code = $3 WHERE id = $1`, [id, error.detail, error.code]);
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
      FIND_DUE,
      [opts.graceSeconds, opts.staleSeconds, opts.pendingTimeoutSeconds, opts.limit],
    );
    return rows.map((r) => r.id);
  }

  /**
   * Live leases (pending, active, revoking, revoke_failed) counted by role, plugin and state: the
   * tessera_leases gauge, read at scrape time. Finished leases are never deleted, so the table only
   * grows: the query walks leases_by_role_state instead of the table — the distinct roles by skipping
   * through the index, then an index-only count per role and live state — so its cost follows the live
   * leases, not all of them (about 20 ms for 100,000 live among 1,000,000, against 150 ms for a scan).
   * JIT is off: the planner's estimates would compile it for longer than it runs.
   */
  async countLive(): Promise<{ role: string; plugin: string; state: string; count: number }[]> {
    return this.db.tx(async (tx) => {
      await tx.query('SET LOCAL jit = off');
      const { rows } = await tx.query<{ role: string; plugin: string; state: string; count: number }>(COUNT_LIVE);
      return rows;
    });
  }

  async countRevokeFailed(): Promise<number> {
    const { rows } = await this.db.query<{ n: string }>(COUNT_REVOKE_FAILED);
    return Number(rows[0].n);
  }

  /**
   * A move to revoking that records the transition's reason (the first reason given stands) and, when
   * given, the error that caused it. `when` is an extra condition; its parameters start at $5.
   */
  private async toRevoking(
    transition: 'beginRevoke' | 'failIssue' | 'abandon',
    id: string,
    opts: { when?: string; params?: unknown[]; error?: LeaseError } = {},
  ): Promise<LeaseRow | undefined> {
    const { rows } = await this.db.query<LeaseRow>(
      `UPDATE leases SET state = 'revoking', revoke_reason = COALESCE(revoke_reason, $2), updated_at = now(),
         last_error = COALESCE($3::text, last_error), last_error_code = COALESCE($4::text, last_error_code)
       WHERE id = $1 AND state IN ${from(transition)}${opts.when ? ` AND ${opts.when}` : ''} RETURNING ${COLUMNS}`,
      [id, TRANSITIONS[transition].reason, opts.error?.detail ?? null, opts.error?.code ?? null, ...(opts.params ?? [])],
    );
    return rows[0];
  }

  /**
   * A transition and its audit event, atomically: the event is appended in the transition's
   * transaction, and only when the transition happened.
   */
  private withEvent<R extends QueryResultRow>(sql: string, values: unknown[], event: AuditEvent): Promise<R | undefined> {
    return this.db.tx(async (tx) => {
      const { rows } = await tx.query<R>(sql, values);
      if (rows[0]) await this.audit.append(event, tx);
      return rows[0];
    });
  }
}
