/** What the PostgreSQL plugin knows of the server: its admin pool, SQLSTATEs, error translation, dropping roles, ending their sessions (alone, in batches, or late ones). Proofs from pg_authid and logins: proofs.ts. */
import { DatabaseError, Pool, PoolClient, escapeIdentifier } from 'pg';
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

/**
 * `expr` (a timestamptz) as µs since the epoch, a bigint. The admin's queries run on its own
 * search_path, where a role that may create objects in a schema on it (`public`, on many servers)
 * could plant an operator matching `numeric * integer` exactly, which PostgreSQL would pick over the
 * built-in one it reaches by a cast: so the operator is named with its schema.
 */
export const micros = (expr: string): string => `(extract(epoch FROM ${expr}) OPERATOR(pg_catalog.*) 1000000)::bigint`;

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
    `SELECT ${micros('clock_timestamp()')}::text AS before,
            (SELECT setting::int * 1000 FROM pg_settings WHERE name = 'authentication_timeout') + ${LATE_LOGIN_MARGIN_MS} AS within_ms`,
  );
  return { before: rows[0].before, withinMs: rows[0].within_ms };
}

const LATE_LOGIN_MARGIN_MS = 2000;

/**
 * Ends each role's sessions that started before its `before` (µs on the server's clock), for many
 * sweeps in one scan of pg_stat_activity; answers how many each ended. A sweep fails (after ending the
 * sessions it could) rather than report a sweep it did not make when the admin cannot see when some of
 * the role's sessions started (neither superuser nor in pg_read_all_stats) or may not end some of the
 * late ones (a superuser's; not a member of the role nor of pg_signal_backend): those are left alone,
 * so pg_terminate_backend never raises for them and fails no other sweep.
 */
export async function endSessionsStartedBefore(client: PoolClient, plugin: string, sweeps: readonly { account: string; before: string }[]): Promise<(number | ItemFailed)[]> {
  // Sweeps of one role (from two rotations) are made once, with the latest cutoff: the sessions it
  // ends include every one the earlier would. What it ended is credited to the first of them.
  const { rows } = await client.query<{ first: string; ended: number; hidden: number; unsignalled: number }>(
    `WITH t AS (SELECT account, max(before) AS before, min(i) AS first FROM unnest($1::text[], $2::bigint[]) WITH ORDINALITY AS u(account, before, i) GROUP BY account),
     s AS (
       SELECT a.usename, a.pid, a.backend_start IS NULL AS hidden, ${micros('a.backend_start')} AS started,
              (SELECT rolsuper FROM pg_catalog.pg_roles WHERE rolname = current_user)
                OR (NOT r.rolsuper AND (pg_catalog.pg_has_role(a.usesysid, 'USAGE') OR pg_catalog.pg_has_role('pg_signal_backend'::name, 'USAGE'))) AS may_signal
       FROM pg_catalog.pg_stat_activity a JOIN pg_catalog.pg_roles r ON r.oid = a.usesysid
       WHERE a.usename = ANY($1::text[]) AND a.pid <> pg_catalog.pg_backend_pid()
     )
     SELECT t.first::text AS first,
            count(*) FILTER (WHERE CASE WHEN s.started < t.before AND s.may_signal THEN pg_catalog.pg_terminate_backend(s.pid) ELSE false END)::int AS ended,
            count(*) FILTER (WHERE s.hidden)::int AS hidden,
            count(*) FILTER (WHERE s.started < t.before AND NOT s.may_signal)::int AS unsignalled
     FROM t LEFT JOIN s ON s.usename = t.account
     GROUP BY t.first`,
    [sweeps.map((s) => s.account), sweeps.map((s) => s.before)],
  );
  const first = new Map(sweeps.map((s, i) => [s.account, i]).reverse() as [string, number][]);
  const byFirst = new Map(rows.map((r) => [Number(r.first) - 1, r]));
  return sweeps.map(({ account }, i) => {
    const row = byFirst.get(first.get(account)!);
    if (!row) return new ItemFailed(new PluginError(`postgres ${plugin}: no answer for the sweep of ${account}`, true));
    const { ended, hidden, unsignalled } = row;
    if (hidden > 0) return new ItemFailed(new PluginError(`postgres ${plugin}: cannot see when ${hidden} session(s) of ${account} started (grant pg_read_all_stats to the admin role)`, true));
    if (unsignalled > 0) return new ItemFailed(new PluginError(`postgres ${plugin}: may not end ${unsignalled} late session(s) of ${account} (grant pg_signal_backend to the admin role; a superuser's sessions only a superuser may end)`, true));
    return i === first.get(account) ? ended : 0;
  });
}

/**
 * The late-login sweeps asked for together, in one query (see endSessionsStartedBefore). When that
 * statement fails, each sweep is made on its own, so one account's trouble never leaves another's late
 * sessions alive; when the server cannot be reached, all fail at once (tried again in a minute)
 * instead of each waiting out its own timeout.
 */
export function lateSessionSweeps(
  plugin: string,
  run: <T>(fn: (client: PoolClient) => Promise<T>) => Promise<T>,
): GroupCommit<{ account: string; before: string }, number> {
  type Sweep = { account: string; before: string };
  const sweep = (sweeps: Sweep[]) =>
    run((client) =>
      endSessionsStartedBefore(client, plugin, sweeps).catch((err: unknown) => {
        if (err instanceof DatabaseError) return err; // the statement failed; the connection is fine
        throw err;
      }),
    );
  return new GroupCommit<Sweep, number>(
    async (sweeps) => {
      const answers = await sweep(sweeps);
      if (!(answers instanceof DatabaseError)) return answers;
      if (sweeps.length === 1) return [new ItemFailed(translatePgError(plugin, 'end late sessions', answers))];
      const each: (number | ItemFailed)[] = [];
      for (const one of sweeps) {
        let answer: Awaited<ReturnType<typeof sweep>>;
        try {
          answer = await sweep([one]);
        } catch (err) {
          // The server is gone meanwhile: the rest fail with it.
          while (each.length < sweeps.length) each.push(new ItemFailed(err));
          break;
        }
        each.push(answer instanceof DatabaseError ? new ItemFailed(translatePgError(plugin, 'end late sessions', answer)) : answer[0]);
      }
      return each;
    },
    { maxBatch: 500, inFlight: 1 },
  );
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
