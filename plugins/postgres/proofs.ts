/**
 * What proves which password a PostgreSQL role accepts without logging in with it: what pg_authid
 * stores, read with the facts SetVerifiers weighs (the server, its pg_hba rules, its configuration
 * load), and logins observed (checked by SCRAM, where and when their session started).
 */
import { Client, DatabaseError, PoolClient } from 'pg';
import { GroupCommit } from '../contract';
import { AUTH_FAILED, micros } from './postgres-server';

/** The server, as its sessions report it: postmaster start time, address and port (µs, text). */
const SERVER = `${micros('pg_catalog.pg_postmaster_start_time()')}::text || '@' || coalesce(pg_catalog.host(pg_catalog.inet_server_addr()), 'local') || ':' || coalesce(pg_catalog.inet_server_port(), 0)::text`;
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
              ${micros('pg_catalog.pg_conf_load_time()')}::text AS conf, ${SERVER} AS server, ${knownHba === undefined ? HBA_DIGEST : 'NULL'} AS hba
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

/** A digest of the pg_hba rules, and the server (SERVER) whose rules they are. */
export interface HbaDigest {
  digest: string;
  server: string;
}

/** The digest of the pg_hba rules the server reads now; `refused` when the admin may not read them (only superusers may). */
export async function hbaDigestOf(client: PoolClient): Promise<HbaDigest | 'refused'> {
  try {
    const { rows } = await client.query<{ hba: string; server: string }>(`SELECT ${HBA_DIGEST} AS hba, ${SERVER} AS server`);
    return { digest: rows[0].hba, server: rows[0].server };
  } catch (err) {
    if (err instanceof DatabaseError && err.code === INSUFFICIENT_PRIVILEGE) return 'refused';
    throw err;
  }
}

const INSUFFICIENT_PRIVILEGE = '42501';

/** The pg_hba digests verify logins are read between (hbaDigestReader). */
export interface HbaDigests {
  /** A digest whose read starts after this call. */
  fresh(): Promise<HbaDigest | undefined>;
  /** A digest read less than HBA_DIGEST_REUSE_MS ago, if there is one. */
  cached(): HbaDigest | undefined;
  /** cached(), or else a fresh one. */
  recent(): Promise<HbaDigest | undefined>;
  /** Whether to read the rules along with something else: one read of them went through since the last refusal. */
  readable(): boolean;
  /** A digest read with something else (session facts, pg_authid), whose read started at `at` (performance.now()). */
  seen(digest: HbaDigest, at: number): void;
}

/**
 * Reads the pg_hba digest as the admin. After a refusal (an admin that is not superuser may not read
 * pg_hba_file_rules) it does not try again for ten minutes, so the server's log does not get the same
 * refusal at every login. Callers asking together share one read, which starts after each of them
 * asked (a group commit, one read at a time): a read asked for once a login is over is made after it.
 * A digest read before a login may be one read up to HBA_DIGEST_REUSE_MS earlier (parsing pg_hba.conf
 * for every login cost about a sixth of the login rate); the pg_authid checks reuse them too. Ages
 * are measured on a monotonic clock: a wall clock stepped back must not keep an old read fresh.
 */
export function hbaDigestReader(run: <T>(fn: (client: PoolClient) => Promise<T>) => Promise<T>): HbaDigests {
  let failedAt = -Infinity;
  let last: (HbaDigest & { at: number }) | undefined;
  const seen = (digest: HbaDigest, at: number) => {
    // A read begun before a refusal does not make the rules readable again.
    if (at > failedAt && (!last || at >= last.at)) last = { ...digest, at };
  };
  const reads = new GroupCommit<void, HbaDigest | undefined>(
    async (callers) => {
      const at = performance.now();
      // Only a refusal pauses the reads; a read that failed otherwise (a timeout, a lost connection)
      // gives no digest this time.
      const digest = await run(hbaDigestOf).catch(() => undefined);
      if (digest === 'refused') {
        failedAt = performance.now();
        last = undefined;
      } else if (digest !== undefined) seen(digest, at);
      return callers.map(() => (digest === 'refused' ? undefined : digest));
    },
    { maxBatch: 10_000, inFlight: 1 },
  );
  const backedOff = () => performance.now() - failedAt < 600_000;
  const fresh = async () => (backedOff() ? undefined : reads.submit());
  const cached = () => (!backedOff() && last && performance.now() - last.at < HBA_DIGEST_REUSE_MS ? { digest: last.digest, server: last.server } : undefined);
  return {
    fresh,
    cached,
    recent: async () => cached() ?? fresh(),
    readable: () => !backedOff() && last !== undefined,
    seen,
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
  hba: HbaDigests,
  facts?: (peer: LoginPeer) => Promise<FactsRead | undefined>,
): Promise<{ ok: boolean; scram: boolean; seen?: SessionFacts & { hba: string } }> {
  const before = await hba.recent();
  const result = await loginAs(connectionUrl, login, timeoutMs, facts);
  if (!result.ok) return { ok: false, scram: false };
  if (!result.scram || !result.session || before === undefined) return { ok: true, scram: result.scram };
  // The admin's read of the session facts, made while the login is connected (so after it was
  // checked), reads the digest too where it may; otherwise a read of its own.
  const { hba: readWithFacts, ...session } = result.session;
  const after = readWithFacts !== undefined ? { digest: readWithFacts, server: session.server } : await hba.fresh();
  // Both digests are of the rules of the server the login reached.
  const same = after !== undefined && after.digest === before.digest && after.server === session.server && before.server === session.server;
  return { ok: true, scram: true, seen: same ? { ...session, hba: after.digest } : undefined };
}

/** When a login's session started (µs since the epoch, the server's clock), its role's oid, and the server (SERVER). */
export interface SessionFacts {
  startedAt: bigint;
  roleOid: string;
  server: string;
}

/** SessionFacts as the admin reads them, with the pg_hba digest where it was read along. */
export type FactsRead = SessionFacts & { hba?: string };

/**
 * A login's connection: the pid of its backend, the address and port it comes from (as the server
 * sees them, where nothing translates addresses), and the address and port it went to.
 */
export interface LoginPeer {
  pid: number;
  address: string;
  port: number;
  server: string;
}

type Socket = { localAddress?: string; localPort?: number; remoteAddress?: string; remotePort?: number };
const socketOf = (client: Client | PoolClient): Socket => (client as unknown as { connection: { stream: Socket } }).connection.stream;
const serverEnd = (socket: Socket): string | undefined => (socket.remoteAddress && socket.remotePort ? `${socket.remoteAddress}:${socket.remotePort}` : undefined);

function peerOf(client: Client): LoginPeer | undefined {
  const pid = (client as unknown as { processID: unknown }).processID;
  const socket = socketOf(client);
  const server = serverEnd(socket);
  if (typeof pid !== 'number' || !socket.localAddress || !socket.localPort || !server) return undefined; // a Unix socket: no port to match
  return { pid, address: socket.localAddress, port: socket.localPort, server };
}

/**
 * The session facts of logins still connected, read by the admin, for many logins in one query: a new
 * backend's first query costs the server about 1.5 ms of CPU (a quarter of a whole login here), while
 * the admin's read costs a fraction of that per login. A row counts only if it is that very connection:
 * the pid the server gave the login, with the client address and port the login connects from (one
 * TCP connection's, while it is open), and the login went to the address and port the admin's
 * connection goes to. Anything else (a client seen through NAT or a proxy, a name that resolves to
 * several servers, an admin that may not see other roles' sessions) gives no facts, and the login
 * asks its own session.
 */
export function sessionFactsReads(
  run: <T>(fn: (client: PoolClient) => Promise<T>) => Promise<T>,
  hba?: HbaDigests,
): GroupCommit<LoginPeer, FactsRead | undefined> {
  return new GroupCommit<LoginPeer, FactsRead | undefined>(
    async (peers) => {
      // The pg_hba digest comes along (one parse of pg_hba.conf for the logins read together), unless
      // the admin was refused it lately.
      const withHba = hba?.readable() ?? false;
      const at = performance.now();
      const { rows, admin } = await run(async (client) => ({
        admin: serverEnd(socketOf(client)),
        rows: await client
          .query<{ pid: number; started: string | null; role_oid: string; address: string | null; port: number | null; server: string; hba: string | null }>(
            `SELECT a.pid, ${micros('a.backend_start')}::text AS started, a.usesysid::text AS role_oid,
                    pg_catalog.host(a.client_addr) AS address, a.client_port AS port, ${SERVER} AS server, ${withHba ? HBA_DIGEST : 'NULL'} AS hba
             FROM pg_catalog.pg_stat_get_activity(NULL) a WHERE a.pid = ANY($1::int[])`,
            [peers.map((p) => p.pid)],
          )
          .then((r) => r.rows),
      }));
      if (rows[0]?.hba) hba?.seen({ digest: rows[0].hba, server: rows[0].server }, at);
      return peers.map((p) => {
        // The login went where the admin's connection goes (the same address and port from here).
        if (p.server !== admin) return undefined;
        const r = rows.find((row) => row.pid === p.pid && row.port === p.port && row.address === p.address);
        return r && r.started !== null ? { startedAt: BigInt(r.started), roleOid: r.role_oid, server: r.server, ...(r.hba !== null && { hba: r.hba }) } : undefined;
      });
    },
    { maxBatch: 256, inFlight: 1 },
  );
}

/**
 * Logs in as a role with a password over a new connection (the URL's TLS and options apply). `scram`:
 * the server sent its final SCRAM message, so the login was checked against the stored verifier;
 * `session`: its SessionFacts, from `facts` (sessionFactsReads) while the connection is open, or else
 * from the session itself. Throws what is not a refused login.
 */
export async function loginAs(
  connectionUrl: string,
  login: { username: string; password: string },
  timeoutMs: number,
  facts?: (peer: LoginPeer) => Promise<FactsRead | undefined>,
): Promise<{ ok: boolean; scram: boolean; session?: FactsRead }> {
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
    // Read by the admin while this connection is open where it can be (see sessionFactsReads); else
    // asked of the session itself.
    const peer = peerOf(client);
    const read = facts && peer ? await facts(peer).catch(() => undefined) : undefined;
    if (read) return { ok: true, scram, session: read };
    const { rows } = await client.query<{ started: string | null; role_oid: string; server: string }>(
      // pg_stat_get_activity itself, not the pg_stat_activity view: in a backend this new every catalog
      // entry a query names is looked up first, and the view (joined to pg_database and pg_authid) cost
      // ~2 ms of server CPU per login here, this ~0.8 ms. usesysid is the session's role (logged in as).
      `SELECT ${micros('a.backend_start')}::text AS started, a.usesysid::text AS role_oid, ${SERVER} AS server
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

/** How long a digest of the pg_hba rules is reused by the reads that follow (ms). */
const HBA_DIGEST_REUSE_MS = 1000;

/**
 * pg_authid read once for the checks of callers arriving together (each looks up its own roles). The
 * pg_hba digest is read along only when `hba` holds none from the last HBA_DIGEST_REUSE_MS (one the
 * verify logins read, or an earlier check): parsing pg_hba.conf on every read costs the server more
 * than the rest of the read.
 */
export function storedPasswordReads(run: <T>(fn: (client: PoolClient) => Promise<T>) => Promise<T>, hba: HbaDigests): GroupCommit<string[], StoredPasswords> {
  return new GroupCommit<string[], StoredPasswords>(
    async (asks) => {
      const roles = [...new Set(asks.flat())];
      const stored = await run((client) => {
        // Decided once a connection is in hand, so waiting for one does not stretch the reuse.
        const known = hba.cached();
        const started = performance.now();
        return storedPasswordsOf(client, roles, known?.digest).then((r) => {
          // A digest is reused only on the server it was read from.
          if (known && r.facts && r.facts.server !== known.server) return storedPasswordsOf(client, roles);
          if (!known && r.facts) hba.seen({ digest: r.facts.hba, server: r.facts.server }, started);
          return r;
        });
      });
      return asks.map(() => stored);
    },
    { maxBatch: 64, inFlight: 2 },
  );
}
