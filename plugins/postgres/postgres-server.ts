/** What the PostgreSQL plugin knows of the server: SQLSTATEs, error translation, dropping roles, ending their sessions (alone or in batches), reading stored passwords and logging in. */
import { Client, DatabaseError, PoolClient, escapeIdentifier } from 'pg';
import { GroupCommit, PluginError } from '../contract';

/** SQLSTATE classes and codes after which trying again can help. */
export const RETRYABLE_SQLSTATE = /^(08|53|57|58)|^(40001|40P01|55P03|55006|XX000)$/;
export const AUTH_FAILED = new Set(['28P01', '28000']);
export const UNDEFINED_OBJECT = '42704';
export const DEPENDENT_OBJECTS = '2BP01';
export const INSUFFICIENT_PRIVILEGE = '42501';

/**
 * Ends every session of these roles, one query for all, and waits until they are gone:
 * pg_terminate_backend only signals, and a caller that reports "sessions ended" must be able to rely
 * on it. Returns the roles whose sessions would not end.
 */
export async function endSessionsOf(client: PoolClient, plugin: string, usernames: string[]): Promise<Map<string, PluginError>> {
  for (let attempt = 0; ; attempt++) {
    const { rows } = await client.query<{ usename: string }>(
      'SELECT usename, pg_terminate_backend(pid) FROM pg_stat_activity WHERE usename = ANY($1::text[]) AND pid <> pg_backend_pid()',
      [usernames],
    );
    if (!rows.length) return new Map();
    if (attempt >= 50) {
      const stuck = new Set(rows.map((r) => r.usename));
      return new Map([...stuck].map((u) => [u, new PluginError(`postgres ${plugin}: session(s) of ${u} did not end`, true)]));
    }
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

/**
 * What pg_authid stores for these roles, and whether each can log in now (LOGIN, not past VALID UNTIL),
 * one query for all, with when this session last loaded the server's configuration (µs since the epoch;
 * see SetVerifiers). No roles when the admin may not read pg_authid (only superusers may).
 */
export async function storedPasswordsOf(
  client: PoolClient,
  roles: string[],
): Promise<{ roles: Map<string, { rolpassword: string | null; can_login: boolean }>; confLoadedAt?: string }> {
  try {
    const { rows } = await client.query<{ rolname: string; rolpassword: string | null; can_login: boolean; conf: string }>(
      `SELECT rolname, rolpassword, rolcanlogin AND (rolvaliduntil IS NULL OR rolvaliduntil > now()) AS can_login, (extract(epoch FROM pg_conf_load_time()) * 1000000)::bigint::text AS conf
       FROM pg_authid WHERE rolname = ANY($1::text[])`,
      [roles],
    );
    return { roles: new Map(rows.map((r) => [r.rolname, r])), confLoadedAt: rows[0]?.conf };
  } catch (err) {
    if (err instanceof DatabaseError && err.code === INSUFFICIENT_PRIVILEGE) return { roles: new Map() };
    throw err;
  }
}

/**
 * Logs in as a role with a password over a new connection (the URL's TLS and options apply). `scram`:
 * the server sent its final SCRAM message, so the login was checked against the stored verifier;
 * `startedAt`: when the server started the session (µs since the epoch, the server's clock). Throws
 * what is not a refused login.
 */
export async function loginAs(
  connectionUrl: string,
  login: { username: string; password: string },
  timeoutMs: number,
): Promise<{ ok: boolean; scram: boolean; startedAt?: string }> {
  const url = new URL(connectionUrl);
  url.username = encodeURIComponent(login.username);
  url.password = encodeURIComponent(login.password);
  const client = new Client({ connectionString: url.toString(), connectionTimeoutMillis: timeoutMs });
  client.on('error', () => undefined);
  let scram = false;
  (client as unknown as { connection: NodeJS.EventEmitter }).connection.once('authenticationSASLFinal', () => (scram = true));
  try {
    await client.connect();
    const { rows } = await client.query<{ started: string }>(
      'SELECT (extract(epoch FROM backend_start) * 1000000)::bigint::text AS started FROM pg_stat_activity WHERE pid = pg_backend_pid()',
    );
    return { ok: true, scram, startedAt: rows[0]?.started };
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

type StoredPasswords = Awaited<ReturnType<typeof storedPasswordsOf>>;

/** pg_authid read once for the checks of callers arriving together (each looks up its own roles). */
export function storedPasswordReads(run: <T>(fn: (client: PoolClient) => Promise<T>) => Promise<T>): GroupCommit<string[], StoredPasswords> {
  return new GroupCommit<string[], StoredPasswords>(
    async (asks) => {
      const stored = await run((client) => storedPasswordsOf(client, [...new Set(asks.flat())]));
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
export function sessionEndBatches(end: (accounts: string[]) => Promise<Map<string, PluginError>>): GroupCommit<string, PluginError | undefined> {
  return new GroupCommit<string, PluginError | undefined>(
    async (accounts) => {
      const stuck = await end([...new Set(accounts)]);
      return accounts.map((a) => stuck.get(a));
    },
    { maxBatch: 64, inFlight: 2 },
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
