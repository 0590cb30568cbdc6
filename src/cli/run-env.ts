import { IssuedLease } from '../client';

/**
 * Environment variables for leased credentials, by plugin (DESIGN.md §8). Each lease's variables are
 * also set with the prefix `TESSERA_<ROLE>_` (role upper-cased, other characters as `_`), so a program
 * using several roles can tell them apart; the unprefixed variables belong to the first role of each
 * plugin given on the command line.
 */
export function credentialVars(plugin: string, creds: Record<string, string | number>): Record<string, string> {
  const str = (key: string) => (creds[key] === undefined || creds[key] === null ? undefined : String(creds[key]));
  const vars: Record<string, string | undefined> = {};
  switch (plugin) {
    case 'postgres':
      vars.PGUSER = str('username');
      vars.PGPASSWORD = str('password');
      vars.PGHOST = str('host');
      vars.PGPORT = str('port');
      vars.PGDATABASE = str('database');
      vars.DATABASE_URL = postgresUrl(creds);
      break;
    case 'mysql':
      vars.MYSQL_USER = str('username');
      vars.MYSQL_PASSWORD = str('password');
      vars.MYSQL_HOST = str('host');
      vars.MYSQL_TCP_PORT = str('port');
      vars.MYSQL_DATABASE = str('database');
      break;
    case 'redis':
      vars.REDIS_USERNAME = str('username');
      vars.REDIS_PASSWORD = str('password');
      vars.REDIS_URL = redisUrl(creds);
      break;
    case 'aws-iam':
      vars.AWS_ACCESS_KEY_ID = str('access_key_id');
      vars.AWS_SECRET_ACCESS_KEY = str('secret_access_key');
      vars.AWS_SESSION_TOKEN = str('session_token'); // STS credentials (assumed_role, federation_token)
      break;
    default:
      // A plugin this CLI does not know yet: every field, under TESSERA_<FIELD>.
      for (const key of Object.keys(creds)) vars[`TESSERA_${envName(key)}`] = str(key);
  }
  return Object.fromEntries(Object.entries(vars).filter((e): e is [string, string] => e[1] !== undefined));
}

/**
 * Variables from the parent that would override or corrupt injected AWS keys: a session token from other
 * credentials would be sent with the leased key, and the JS SDK skips env keys when AWS_PROFILE is set.
 */
const CLEARED_BY_PLUGIN: Record<string, readonly string[]> = {
  'aws-iam': ['AWS_SESSION_TOKEN', 'AWS_SECURITY_TOKEN', 'AWS_PROFILE'],
};

export function childEnv(base: NodeJS.ProcessEnv, leases: readonly IssuedLease[], runId: string, extra: Record<string, string> = {}): NodeJS.ProcessEnv {
  const env: NodeJS.ProcessEnv = { ...base };
  // The workload gets its credentials, not the identity that leased them.
  delete env.TESSERA_TOKEN;
  delete env.TESSERA_TOKEN_FILE;
  const seen = new Set<string>();
  const fromLeases = new Set<string>();
  for (const lease of leases) {
    const vars = credentialVars(lease.plugin, lease.credentials);
    if (!seen.has(lease.plugin)) {
      // Cleared once, by the first lease of the plugin: a later one must not remove what it set.
      for (const name of CLEARED_BY_PLUGIN[lease.plugin] ?? []) delete env[name];
      Object.assign(env, vars);
      for (const name of Object.keys(vars)) fromLeases.add(name);
    }
    seen.add(lease.plugin);
    const prefix = `TESSERA_${envName(lease.role)}_`;
    for (const [name, value] of Object.entries(vars)) env[prefix + name] = value;
  }
  // A static secret's plain variables (PGUSER, ...) never replace a lease's.
  for (const [name, value] of Object.entries(extra)) if (!fromLeases.has(name)) env[name] = value;
  env.TESSERA_RUN_ID = runId;
  return env;
}

export function envName(name: string): string {
  return name.toUpperCase().replace(/[^A-Z0-9]/g, '_');
}

/** postgres://user:pass@host:port/db with every part URL-encoded; only when the host is known. */
function postgresUrl(creds: Record<string, string | number>): string | undefined {
  if (creds.host === undefined || creds.username === undefined) return undefined;
  const host = String(creds.host);
  const auth = `${encodeURIComponent(String(creds.username))}:${encodeURIComponent(String(creds.password ?? ''))}`;
  const db = creds.database === undefined ? '' : `/${encodeURIComponent(String(creds.database))}`;
  if (host.startsWith('/')) return `postgres://${auth}@${db || '/'}?host=${encodeURIComponent(host)}${creds.port === undefined ? '' : `&port=${creds.port}`}`;
  const hostPart = host.includes(':') ? `[${host}]` : host;
  const port = creds.port === undefined ? '' : `:${creds.port}`;
  return `postgres://${auth}@${hostPart}${port}${db}`;
}

/** redis://user:pass@host:port (rediss:// over TLS) with user and password URL-encoded; only when the host is known. */
function redisUrl(creds: Record<string, string | number>): string | undefined {
  if (creds.host === undefined || creds.username === undefined) return undefined;
  const host = String(creds.host);
  const auth = `${encodeURIComponent(String(creds.username))}:${encodeURIComponent(String(creds.password ?? ''))}`;
  return `${creds.tls === 'true' ? 'rediss' : 'redis'}://${auth}@${host.includes(':') ? `[${host}]` : host}${creds.port === undefined ? '' : `:${creds.port}`}`;
}

/**
 * Variables for a static secret: always TESSERA_<NAME>_<FIELD> (USERNAME, PASSWORD, HOST, ...), and,
 * since the answer names its plugin, the same variables as for a lease (PGUSER, MYSQL_USER, AWS_...),
 * plain and prefixed. The caller lets a lease's plain variables win over a static secret's.
 */
export function staticVars(name: string, secret: Record<string, unknown>): Record<string, string> {
  const fields: Record<string, string | number> = {};
  for (const key of ['username', 'password', 'host', 'port', 'database', 'access_key_id', 'secret_access_key']) {
    const value = secret[key];
    if (typeof value === 'string' || typeof value === 'number') fields[key] = value;
  }
  // Over TLS (rediss://) the answer says so; passed on as for a lease, so REDIS_URL keeps the scheme.
  const tls: Record<string, string> = secret.tls === 'true' || secret.tls === true ? { tls: 'true' } : {};
  const prefix = `TESSERA_${envName(name)}_`;
  const plugin = typeof secret.plugin === 'string' ? secret.plugin : fields.access_key_id !== undefined ? 'aws-iam' : undefined;
  const generic = Object.fromEntries(Object.entries(fields).map(([k, v]) => [prefix + envName(k), String(v)]));
  if (!plugin) return generic;
  const vars = credentialVars(plugin, { ...fields, ...tls });
  return { ...vars, ...Object.fromEntries(Object.entries(vars).map(([k, v]) => [prefix + k, v])), ...generic };
}
