/**
 * The lease table's SQL that is longer than a line: the columns, the statements the repository shares
 * between methods, and the builders of its filters. The repository (lease.repository.ts) runs them.
 */
import { pickHeadSql } from '../audit/audit.repository';
import { ISSUER_LOCK_NAMESPACE } from './issuer-session';
import { LEASE_ID } from './names';
import { LeaseFilter } from './lease.model';
import { TRANSITIONS, Transition } from './lease-state';

export const COLUMNS =
  'id, role, connection, plugin, account, owner, owner_issuer, run_id, state, created_at, updated_at, expires_at, max_expires_at, activated_at, revoked_at, last_error, last_error_code, issuer_lock, revoke_reason, revocable';

/**
 * A pending lease whose issuing process is gone: the session lock its issuer_lock names is held by
 * nobody in this database (see IssuerSession). Leases written before issuer locks have none.
 */
export const ISSUER_GONE = `(issuer_lock IS NOT NULL AND NOT EXISTS (
  SELECT 1 FROM pg_locks k
  WHERE k.locktype = 'advisory' AND k.granted AND k.objsubid = 2
    AND k.database = (SELECT oid FROM pg_database WHERE datname = current_database())
    AND k.classid = ${ISSUER_LOCK_NAMESPACE}::oid AND k.objid = leases.issuer_lock::oid))`;

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
  /** False when revoking cannot withdraw the credential (the role's lease terms). */
  revocable: boolean;
}

/** A lease to write pending, with the caps its role and owner may not reach. */
export interface PendingInsert {
  lease: NewLease;
  caps: { role: number; owner: number };
}

/**
 * pending → active for several leases, their rows locked in id order (as bulk revoke locks them), so
 * two such statements cannot deadlock; then, only once every row is locked and only when any lease
 * was activated, the pick of an audit head for their events (pickHeadSql, from shard `shard` on).
 * One row out: `activated` (the ids moved) and the head's columns, null when none was picked. Sent with
 * the simple protocol in its transaction's first round trip, so the values are literals: lease ids,
 * checked against LEASE_ID, and a shard number.
 */
export function activateManySql(ids: string[], shard: number): string {
  for (const id of ids) if (!LEASE_ID.test(id)) throw new Error(`not a lease id: ${JSON.stringify(id)}`);
  const list = ids.map((id) => `'${id}'`).join(', ');
  return `WITH act AS (
      UPDATE leases SET state = 'active', activated_at = now(), updated_at = now()
      FROM (SELECT id FROM leases WHERE id = ANY(ARRAY[${list}]::text[]) AND state IN ${from('activate')} ORDER BY id FOR UPDATE) due
      WHERE leases.id = due.id RETURNING leases.id),
    done AS (SELECT coalesce(array_agg(id), '{}') AS activated FROM act)
  SELECT done.activated, h.* FROM done
  LEFT JOIN LATERAL (${pickHeadSql(shard, 'cardinality(done.activated) > 0')}) h ON true`;
}

/**
 * Pending leases, in order ($1..$12 and $14 are arrays, one element per lease; $13 the issuer lock):
 * each is written unless its role's or owner's live leases, plus those before it in this statement,
 * reach the cap. Each distinct role and owner is counted once (with the largest cap asked for it), by
 * a statement of its own whose values are parameters (from $15 on), so PostgreSQL plans each count for that value on its partial index: a count
 * correlated with the input would be planned for any role at all, and on a table where one role holds
 * most rows that plan is a full scan. Each count stops at its cap. One row out per lease, in order.
 */
export function insertPendingSql(batch: PendingInsert[], issuerLock: number): { sql: string; params: unknown[] } {
  const roleCaps = new Map<string, number>();
  const ownerCaps = new Map<string, { owner: string; issuer: string; cap: number }>();
  for (const { lease, caps } of batch) {
    roleCaps.set(lease.role, Math.max(caps.role, roleCaps.get(lease.role) ?? 0));
    const key = JSON.stringify([lease.owner, lease.ownerIssuer]);
    ownerCaps.set(key, { owner: lease.owner, issuer: lease.ownerIssuer, cap: Math.max(caps.owner, ownerCaps.get(key)?.cap ?? 0) });
  }
  const col = <K extends keyof NewLease>(k: K) => batch.map((b) => b.lease[k]);
  const params: unknown[] = [
    col('id'), col('role'), col('connection'), col('plugin'), col('account'), col('owner'), col('ownerIssuer'), col('runId'),
    col('expiresAt'), col('maxExpiresAt'), batch.map((b) => b.caps.role), batch.map((b) => b.caps.owner), issuerLock, col('revocable'),
  ];
  const p = (v: unknown) => {
    params.push(v);
    return `$${params.length}`;
  };
  const roles = [...roleCaps].map(([role, cap]) => {
    const r = p(role);
    return `(${r}::text, (SELECT count(*) FROM (SELECT 1 FROM leases WHERE role = ${r} AND state IN ('pending','active') LIMIT ${p(cap)}::int) x))`;
  });
  const owners = [...ownerCaps.values()].map(({ owner, issuer, cap }) => {
    const o = p(owner);
    const i = p(issuer);
    return `(${o}::text, ${i}::text, (SELECT count(*) FROM (SELECT 1 FROM leases WHERE owner = ${o} AND owner_issuer = ${i} AND state IN ('pending','active') LIMIT ${p(cap)}::int) x))`;
  });
  const sql = `
  WITH input AS (
    SELECT * FROM unnest($1::text[], $2::text[], $3::text[], $4::text[], $5::text[], $6::text[], $7::text[], $8::text[],
                         $9::timestamptz[], $10::timestamptz[], $11::int[], $12::int[], $14::boolean[])
      WITH ORDINALITY AS i(id, role, connection, plugin, account, owner, owner_issuer, run_id, expires_at, max_expires_at, role_cap, owner_cap, revocable, n)),
  role_live(role, live) AS (VALUES ${roles.join(', ')}),
  owner_live(owner, owner_issuer, live) AS (VALUES ${owners.join(', ')}),
  judged AS (
    SELECT i.*,
           rl.live + row_number() OVER (PARTITION BY i.role ORDER BY i.n) > i.role_cap AS role_full,
           ol.live + row_number() OVER (PARTITION BY i.owner, i.owner_issuer ORDER BY i.n) > i.owner_cap AS owner_full
    FROM input i JOIN role_live rl USING (role) JOIN owner_live ol USING (owner, owner_issuer)),
  ins AS (
    INSERT INTO leases (id, role, connection, plugin, account, owner, owner_issuer, run_id, state, expires_at, max_expires_at, issuer_lock, revocable)
    SELECT id, role, connection, plugin, account, owner, owner_issuer, run_id, 'pending', expires_at, max_expires_at, $13, revocable
    FROM judged WHERE NOT role_full AND NOT owner_full ORDER BY n
    RETURNING id)
  SELECT j.id IN (SELECT id FROM ins) AS inserted, j.role_full, j.owner_full FROM judged j ORDER BY j.n`;
  return { sql, params };
}

/** See LeaseRepository.claimExpired: $1 the lease, $2 the batch size, $3 the expire reason. */
export const CLAIM_EXPIRED = `WITH own AS (
     SELECT id, connection FROM leases WHERE id = $1),
   this_one AS (
     SELECT l.id FROM leases l WHERE l.id = $1 AND l.state IN ${from('expire')} AND l.expires_at <= now()
     FOR UPDATE SKIP LOCKED),
   neighbours AS (
     SELECT l.id FROM leases l
     WHERE l.connection = (SELECT connection FROM own) AND l.id <> $1 AND l.state IN ${from('expire')} AND l.expires_at <= now()
     ORDER BY l.expires_at LIMIT $2::int - 1
     FOR UPDATE OF l SKIP LOCKED),
   claimed AS (SELECT id FROM this_one UNION ALL SELECT id FROM neighbours)
   UPDATE leases SET state = 'revoking', revoke_reason = COALESCE(revoke_reason, $3), updated_at = now()
   FROM claimed WHERE leases.id = claimed.id AND leases.state IN ${from('expire')} AND leases.expires_at <= now()
   RETURNING ${COLUMNS.split(', ').map((c) => `leases.${c}`).join(', ')}`;

/** See LeaseRepository.expiryStatus: $1 the lease, $2 expiry's revoke reason, $3 how long a claim holds (seconds). */
export const EXPIRY_STATUS = `SELECT state, (state = 'revoking' AND revoke_reason = $2 AND last_error IS NULL AND updated_at > now() - make_interval(secs => $3)) AS held
   FROM leases WHERE id = $1`;

/** See LeaseRepository.findDue: $1 grace, $2 staleness, $3 pending timeout (seconds), $4 the limit per kind. */
export const FIND_DUE = `(SELECT id FROM leases WHERE state = 'active' AND expires_at <= now() - make_interval(secs => $1) ORDER BY expires_at LIMIT $4)
   UNION ALL
   (SELECT id FROM leases WHERE state IN ('revoking','revoke_failed') AND updated_at <= now() - make_interval(secs => $2) LIMIT $4)
   UNION ALL
   (SELECT id FROM leases WHERE state = 'pending' AND (created_at <= now() - make_interval(secs => $3) OR ${ISSUER_GONE}) LIMIT $4)`;

/** Active leases by role and plugin (the lease summary). */
export const COUNT_ACTIVE_BY_ROLE = `SELECT role, plugin, count(*) AS n FROM leases WHERE state = 'active' GROUP BY role, plugin ORDER BY role, plugin`;

/** Leases whose revocation gave up (the tessera_leases_revoke_failed gauge). */
export const COUNT_REVOKE_FAILED = `SELECT count(*) AS n FROM leases WHERE state = 'revoke_failed'`;

/** See LeaseRepository.countLive. A lease's plugin comes from one of its role's leases in that state. */
export const COUNT_LIVE = `WITH RECURSIVE roles(role) AS (
    (SELECT role FROM leases ORDER BY role LIMIT 1)
    UNION ALL
    SELECT (SELECT l.role FROM leases l WHERE l.role > roles.role ORDER BY l.role LIMIT 1) FROM roles WHERE roles.role IS NOT NULL
  ), counts AS (
    SELECT r.role, s.state, (SELECT count(*) FROM leases c WHERE c.role = r.role AND c.state = s.state)::int AS count
    FROM roles r CROSS JOIN unnest(ARRAY['pending','active','revoking','revoke_failed']::text[]) s(state)
    WHERE r.role IS NOT NULL
  )
  SELECT role, (SELECT p.plugin FROM leases p WHERE p.role = counts.role AND p.state = counts.state LIMIT 1) AS plugin, state, count
  FROM counts WHERE count > 0`;

/** A conditional bulk revoke found a different number of leases: its transaction is rolled back. */
export class MatchChanged extends Error {}

/** The SQL list of the states a transition may start from. */
export function from(transition: Transition): string {
  return `(${TRANSITIONS[transition].from.map((s) => `'${s}'`).join(',')})`;
}

/** The bulk move to revoking (beginRevokeMatching); countMatching counts with the same states and filter. */
export function revokeMatching(filter: LeaseFilter, reason: 'owner' | 'bulk'): { sql: string; values: unknown[] } {
  const { where, values } = whereClause(filter);
  values.push(reason);
  return {
    // Rows locked in id order, as activateBatch locks them, so the two cannot deadlock.
    sql: `UPDATE leases SET state = 'revoking', revoke_reason = COALESCE(revoke_reason, $${values.length}), updated_at = now()
          FROM (SELECT id FROM leases WHERE state IN ${from('beginRevokeMatching')} ${where ? `AND ${where}` : ''} ORDER BY id FOR UPDATE) matched
          WHERE leases.id = matched.id AND leases.state IN ${from('beginRevokeMatching')} RETURNING leases.id`,
    values,
  };
}

export function whereClause(filter: LeaseFilter): { where: string; values: unknown[] } {
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
