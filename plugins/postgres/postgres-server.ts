/** What the PostgreSQL plugin knows of the server: its admin pool, SQLSTATEs, error translation, dropping roles, ending their sessions (alone, in batches, or late ones), reading stored passwords and logging in. */
import { Client, DatabaseError, Pool, PoolClient, escapeIdentifier } from 'pg';
import { GroupCommit, ItemFailed, LateLogins, PluginError } from '../contract';
import type { PostgresConnectionConfig } from './postgres.config';

/** The admin pool of a connection. */
export function openPool(name: string, config: PostgresConnectionConfig): Pool {
  const pool = new Pool({
    connectionString: config.url,
    max: config.pool_size,
    connectionTimeoutMillis: config.connect_timeout * 1000,
    statement_timeout: config.statement_timeout * 1000,
    // A connection gone half-open must not hold a batch of issues until TCP gives up: the client gives
    // up a little after the server would have, and keepalives notice a dead peer.
    query_timeout: config.statement_timeout * 1000 + 5000,
    keepAlive: true,
    application_name: `tessera:${name}`,
  });
  // An idle client losing its connection must not crash the process; the next checkout reconnects.
  pool.on('error', () => undefined);
  return pool;
}

/** Where the credentials handed out connect to, from the connection's URL. */
export function targetOf(connectionUrl: string): { host: string; port: number; database: string } {
  const url = new URL(connectionUrl);
  return {
    host: decodeURIComponent(url.hostname) || '127.0.0.1',
    port: Number(url.port || 5432),
    database: decodeURIComponent(url.pathname.slice(1)) || 'postgres',
  };
}

/** SQLSTATE classes and codes after which trying again can help. */
export const RETRYABLE_SQLSTATE = /^(08|53|57|58)|^(40001|40P01|55P03|55006|XX000)$/;
export const AUTH_FAILED = new Set(['28P01', '28000']);
export const UNDEFINED_OBJECT = '42704';
export const DEPENDENT_OBJECTS = '2BP01';

/**
 * Ends every session of these roles, one query for all, and waits until they are gone:
 * pg_terminate_backend only signals, and a caller that reports "sessions ended" must be able to rely
 * on it. Each round asks again only for the roles that still had sessions in the last one, so a role
 * whose sessions are gone is not touched again (its workloads may be reconnecting with a new
 * password) and is never reported for another's. Returns the roles whose sessions would not end.
 */
export async function endSessionsOf(client: PoolClient, plugin: string, usernames: string[]): Promise<Map<string, PluginError>> {
  let left = usernames;
  for (let attempt = 0; ; attempt++) {
    const { rows } = await client.query<{ usename: string }>(
      'SELECT usename, pg_terminate_backend(pid) FROM pg_stat_activity WHERE usename = ANY($1::text[]) AND pid <> pg_backend_pid()',
      [left],
    );
    if (!rows.length) return new Map();
    left = [...new Set(rows.map((r) => r.usename))];
    if (attempt >= 50) return new Map(left.map((u) => [u, new PluginError(`postgres ${plugin}: session(s) of ${u} did not end`, true)]));
    await new Promise((r) => setTimeout(r, 20 * Math.min(attempt + 1, 5)));
  }
}

/** Plugin errors carry the SQLSTATE and the server's message, never a statement or a value. */
export function translatePgError(plugin: string, step: string, err: unknown): PluginError {
  if (err instanceof PluginError) return err;
  if (err instanceof DatabaseError) {
    const retryable = RETRYABLE_SQLSTATE.test(err.code ?? '');
    // Server messages can quote a statement's text (a syntax error "at or near" a literal): the
    // verifiers this plugin writes are cut out.
    const message = err.message.replace(/SCRAM-SHA-256\$[^'"\s]*/g, '[verifier]');
    return new PluginError(`postgres ${plugin}: ${step} failed: ${err.code} ${message}`, retryable);
  }
  const code = (err as NodeJS.ErrnoException)?.code ?? 'error';
  return new PluginError(`postgres ${plugin}: ${step} failed: cannot reach the server (${code})`, true);
}

/** The server, as its sessions report it: postmaster start time, address and port (µs, text). */
const SERVER = `(extract(epoch FROM pg_postmaster_start_time()) * 1000000)::bigint::text || '@' || coalesce(host(inet_server_addr()), 'local') || ':' || coalesce(inet_server_port(), 0)`;
/** A digest of the pg_hba rules as the server reads them now (superusers only). */
const HBA_DIGEST = `(SELECT md5(coalesce(string_agg(r::text, E'\\n' ORDER BY r.line_number, r::text), '')) FROM pg_hba_file_rules r)`;

export interface StoredPasswords {
  roles: Map<string, { rolpassword: string | null; can_login: boolean; role_oid: string }>;
  /** The server, its pg_hba rules, and when the reading session last loaded the configuration (µs). */
  facts?: { server: string; hba: string; confLoadedAt: string };
}

/**
 * What pg_authid stores for these roles, whether each can log in now (LOGIN, not past VALID UNTIL) and
 * its oid, one query for all, with the facts SetVerifiers weighs. No roles when the admin may not read
 * pg_authid or pg_hba_file_rules (only superusers may).
 */
export async function storedPasswordsOf(client: PoolClient, roles: string[], knownHba?: string): Promise<StoredPasswords> {
  try {
    const { rows } = await client.query<{ rolname: string; rolpassword: string | null; can_login: boolean; role_oid: string; conf: string; server: string; hba: string | null }>(
      `SELECT rolname, rolpassword, oid::text AS role_oid, rolcanlogin AND (rolvaliduntil IS NULL OR rolvaliduntil > now()) AS can_login,
              (extract(epoch FROM pg_conf_load_time()) * 1000000)::bigint::text AS conf, ${SERVER} AS server, ${knownHba === undefined ? HBA_DIGEST : 'NULL'} AS hba
       FROM pg_authid WHERE rolname = ANY($1::text[])`,
      [roles],
    );
    const facts = rows[0] && { server: rows[0].server, hba: rows[0].hba ?? knownHba!, confLoadedAt: rows[0].conf };
    return { roles: new Map(rows.map((r) => [r.rolname, r])), facts };
  } catch (err) {
    // Not allowed to read pg_authid or pg_hba_file_rules (only superusers may), pg_hba.conf unreadable,
    // a timeout: nothing is vouched for, and the caller logs in instead.
    if (err instanceof DatabaseError) return { roles: new Map() };
    throw err;
  }
}

/** The digest of the pg_hba rules the server reads now; undefined when the admin may not read them. */
export async function hbaDigestOf(client: PoolClient): Promise<string | undefined> {
  try {
    const { rows } = await client.query<{ hba: string }>(`SELECT ${HBA_DIGEST} AS hba`);
    return rows[0]?.hba;
  } catch (err) {
    if (err instanceof DatabaseError) return undefined;
    throw err;
  }
}

/**
 * Reads the pg_hba digest as the admin. After a failure (an admin that is not superuser may not read
 * pg_hba_file_rules) it does not try again for ten minutes, so the server's log does not get the same
 * refusal at every login. Callers asking together share one read, which starts after each of them
 * asked (a group commit, one read at a time): a read asked for once a login is over is made after it.
 */
export function hbaDigestReader(run: <T>(fn: (client: PoolClient) => Promise<T>) => Promise<T>): () => Promise<string | undefined> {
  let failedAt = -Infinity;
  const reads = new GroupCommit<void, string | undefined>(
    async (callers) => {
      const digest = await run(hbaDigestOf).catch(() => undefined);
      return callers.map(() => digest);
    },
    { maxBatch: 10_000, inFlight: 1 },
  );
  return async () => {
    if (Date.now() - failedAt < 600_000) return undefined;
    const digest = await reads.submit();
    if (digest === undefined) failedAt = Date.now();
    return digest;
  };
}

/**
 * A login (loginAs) between two reads of the pg_hba digest. `seen`: what SetVerifiers records of it,
 * when the server checked it by SCRAM and the rules read the same before and after (so they are the
 * rules that checked it). Throws what loginAs throws.
 */
export async function observedLogin(
  connectionUrl: string,
  login: { username: string; password: string },
  timeoutMs: number,
  hba: () => Promise<string | undefined>,
): Promise<{ ok: boolean; scram: boolean; seen?: { startedAt: bigint; roleOid: string; server: string; hba: string } }> {
  const before = await hba();
  const result = await loginAs(connectionUrl, login, timeoutMs);
  if (!result.ok) return { ok: false, scram: false };
  const after = result.scram && result.session && before !== undefined ? await hba() : undefined;
  return { ok: true, scram: result.scram, seen: after !== undefined && after === before && result.session ? { ...result.session, hba: after } : undefined };
}

/**
 * Logs in as a role with a password over a new connection (the URL's TLS and options apply). `scram`:
 * the server sent its final SCRAM message, so the login was checked against the stored verifier;
 * `session`: when the server started the session (µs since the epoch, its clock), the role's oid and
 * the server. Throws what is not a refused login.
 */
export async function loginAs(
  connectionUrl: string,
  login: { username: string; password: string },
  timeoutMs: number,
): Promise<{ ok: boolean; scram: boolean; session?: { startedAt: bigint; roleOid: string; server: string } }> {
  const url = new URL(connectionUrl);
  url.username = encodeURIComponent(login.username);
  url.password = encodeURIComponent(login.password);
  // The role logged in as may have set its own search_path (ALTER ROLE … SET search_path) to shadow
  // the functions and operators of the query below and fake its answer; a client option outranks it.
  const options = url.searchParams.get('options');
  url.searchParams.set('options', `${options ? `${options} ` : ''}-c search_path=pg_catalog`);
  const client = new Client({ connectionString: url.toString(), connectionTimeoutMillis: timeoutMs });
  client.on('error', () => undefined);
  let scram = false;
  (client as unknown as { connection: NodeJS.EventEmitter }).connection.once('authenticationSASLFinal', () => (scram = true));
  try {
    await client.connect();
    const { rows } = await client.query<{ started: string | null; role_oid: string; server: string }>(
      // pg_stat_get_activity itself, not the pg_stat_activity view: in a backend this new every catalog
      // entry a query names is looked up first, and the view (joined to pg_database and pg_authid) cost
      // ~2 ms of server CPU per login here, this ~0.8 ms. usesysid is the session's role (logged in as).
      `SELECT (extract(epoch FROM a.backend_start) * 1000000)::bigint::text AS started, a.usesysid::text AS role_oid, ${SERVER} AS server
       FROM pg_stat_get_activity(pg_backend_pid()) a`,
    );
    // Where the session's role is not the one logged in as (ALTER ROLE … SET role), the row hides its
    // start: no facts then, so no verdict from pg_authid either (callers log in instead).
    const r = rows[0];
    return { ok: true, scram, session: r && r.started !== null ? { startedAt: BigInt(r.started), roleOid: r.role_oid, server: r.server } : undefined };
  } catch (err) {
    if (err instanceof DatabaseError && AUTH_FAILED.has(err.code ?? '')) return { ok: false, scram: false };
    throw err;
  } finally {
    await client.end().catch(() => undefined);
  }
}

/**
 * Statements group-committed: those arriving together go in one simple query (one round trip, one
 * implicit transaction, one commit). A failing batch is rolled back whole by PostgreSQL, and then each
 * of its statements is run alone, so one lease's failure never fails its neighbours. Two batches at a
 * time (one stuck connection does not hold every issue) leave the rest of the pool to revokes,
 * renewals and rotations, and let the statements arriving meanwhile gather.
 */
export function statementBatches(run: (sql: string) => Promise<unknown>): GroupCommit<string, void> {
  return new GroupCommit<string, void>(
    async (statements) => {
      await run(statements.join(';\n'));
      return statements.map(() => undefined);
    },
    { maxBatch: 32, inFlight: 2, alone: async (statement) => void (await run(statement)) },
  );
}

/** How long a digest of the pg_hba rules is reused by the reads that follow (ms). */
const HBA_DIGEST_REUSE_MS = 1000;

/**
 * pg_authid read once for the checks of callers arriving together (each looks up its own roles). The
 * pg_hba digest is read again at most every HBA_DIGEST_REUSE_MS: parsing pg_hba.conf on every read
 * costs the server more than the rest of the read.
 */
export function storedPasswordReads(run: <T>(fn: (client: PoolClient) => Promise<T>) => Promise<T>): GroupCommit<string[], StoredPasswords> {
  let hba: { digest: string; server: string; at: number } | undefined;
  return new GroupCommit<string[], StoredPasswords>(
    async (asks) => {
      const roles = [...new Set(asks.flat())];
      const stored = await run((client) => {
        // Decided once a connection is in hand, so waiting for one does not stretch the reuse.
        const known = hba && Date.now() - hba.at < HBA_DIGEST_REUSE_MS ? hba : undefined;
        const started = Date.now();
        return storedPasswordsOf(client, roles, known?.digest).then((r) => {
          // A digest is reused only on the server it was read from.
          if (known && r.facts && r.facts.server !== known.server) return storedPasswordsOf(client, roles);
          if (!known && r.facts) hba = { digest: r.facts.hba, server: r.facts.server, at: started };
          return r;
        });
      });
      return asks.map(() => stored);
    },
    { maxBatch: 64, inFlight: 2 },
  );
}

/**
 * The sessions of roles asked for together ended in one query (see endSessionsOf); each caller gets
 * its role's error, if its sessions would not end. A role whose sessions will not end holds its batch
 * until endSessionsOf gives up on it (seconds), and its neighbours' answers wait as long.
 */
export function sessionEndBatches(
  plugin: string,
  run: <T>(fn: (client: PoolClient) => Promise<T>) => Promise<T>,
): GroupCommit<string, { error?: PluginError; late: LateLogins }> {
  return new GroupCommit<string, { error?: PluginError; late: LateLogins }>(
    async (accounts) => {
      const { stuck, late } = await run(async (client) => {
        const late = await lateLoginsNow(client);
        return { stuck: await endSessionsOf(client, plugin, [...new Set(accounts)]), late };
      });
      return accounts.map((a) => ({ error: stuck.get(a), late }));
    },
    { maxBatch: 64, inFlight: 2 },
  );
}

/**
 * Read just before a password change's sessions are ended (after the ALTER ROLE): the server's clock,
 * and how long a login begun earlier can still take. PostgreSQL reads the role's verifier when the
 * SCRAM exchange begins and gives the client `authentication_timeout` from then to finish it, and a
 * backend in its exchange is not listed in pg_stat_activity (PostgreSQL 15), so the sessions of such
 * logins open after the sweep. Each began (backend_start) before the ALTER, so before this clock
 * reading; the margin covers the session's start after its exchange.
 */
export async function lateLoginsNow(client: PoolClient): Promise<LateLogins> {
  const { rows } = await client.query<{ before: string; within_ms: number }>(
    `SELECT (extract(epoch FROM clock_timestamp()) * 1000000)::bigint::text AS before,
            (SELECT setting::int * 1000 FROM pg_settings WHERE name = 'authentication_timeout') + ${LATE_LOGIN_MARGIN_MS} AS within_ms`,
  );
  return { before: rows[0].before, withinMs: rows[0].within_ms };
}

const LATE_LOGIN_MARGIN_MS = 2000;

/**
 * Ends each role's sessions that started before its `before` (µs on the server's clock), for many
 * sweeps in one scan of pg_stat_activity; answers how many each ended. An admin that is neither
 * superuser nor in pg_read_all_stats sees no backend_start for other roles' sessions: those cannot be
 * judged, and that sweep fails (after ending the ones it could) rather than report a sweep it did not
 * make.
 */
export async function endSessionsStartedBefore(client: PoolClient, plugin: string, sweeps: readonly { account: string; before: string }[]): Promise<(number | ItemFailed)[]> {
  const { rows } = await client.query<{ i: string; ended: number; hidden: number }>(
    `WITH s AS (
       SELECT usename, pid, backend_start, backend_start IS NULL AS hidden
       FROM pg_stat_activity WHERE usename = ANY($1::text[]) AND pid <> pg_backend_pid()
     )
     SELECT t.i::text AS i,
            count(*) FILTER (WHERE CASE WHEN (extract(epoch FROM s.backend_start) * 1000000)::bigint < t.before THEN pg_terminate_backend(s.pid) ELSE false END)::int AS ended,
            count(*) FILTER (WHERE s.hidden)::int AS hidden
     FROM unnest($1::text[], $2::bigint[]) WITH ORDINALITY AS t(account, before, i)
     LEFT JOIN s ON s.usename = t.account
     GROUP BY t.i`,
    [sweeps.map((s) => s.account), sweeps.map((s) => s.before)],
  );
  const byItem = new Map(rows.map((r) => [Number(r.i) - 1, r]));
  return sweeps.map(({ account }, i) => {
    const { ended = 0, hidden = 0 } = byItem.get(i) ?? {};
    if (hidden > 0) return new ItemFailed(new PluginError(`postgres ${plugin}: cannot see when ${hidden} session(s) of ${account} started (grant pg_read_all_stats to the admin role)`, true));
    return ended;
  });
}

/** The late-login sweeps asked for together, in one query (see endSessionsStartedBefore). */
export function lateSessionSweeps(
  plugin: string,
  run: <T>(fn: (client: PoolClient) => Promise<T>) => Promise<T>,
): GroupCommit<{ account: string; before: string }, number> {
  return new GroupCommit((sweeps) => run((client) => endSessionsStartedBefore(client, plugin, sweeps)), { maxBatch: 500, inFlight: 1 });
}

/** DROP ROLE, with DROP OWNED first when the role owns objects or holds privileges here; gone is success. */
export async function dropRole(client: PoolClient, username: string): Promise<void> {
  const name = escapeIdentifier(username);
  try {
    await client.query(`DROP ROLE IF EXISTS ${name}`);
  } catch (err) {
    if (!(err instanceof DatabaseError) || err.code !== DEPENDENT_OBJECTS) throw err;
    // Ownership is never reassigned: objects a workload created must not end up owned, and
    // runnable, by the broker's admin role.
    try {
      await client.query(`DROP OWNED BY ${name}; DROP ROLE IF EXISTS ${name}`);
    } catch (e) {
      if (e instanceof DatabaseError && e.code === UNDEFINED_OBJECT) return;
      throw e;
    }
  }
}
