import { Client } from 'pg';
import { withPgAdmin } from '../../devkit/admin';
import { PG_ADMIN_URL, TARGET_DB } from './services';

export interface PgCredentials {
  username: string;
  password: string;
  host?: string;
  port?: number;
  database?: string;
}

const adminUrl = new URL(PG_ADMIN_URL);

/** Logs in with a credential and reads the test table; resolves to the error when the login fails. */
export async function pgLogin(creds: PgCredentials): Promise<{ ok: true; user: string; widgets: number } | { ok: false; code: string }> {
  const client = new Client({
    host: creds.host ?? adminUrl.hostname,
    port: creds.port ?? Number(adminUrl.port || 5432),
    database: creds.database ?? TARGET_DB,
    user: creds.username,
    password: creds.password,
    connectionTimeoutMillis: 5000,
  });
  client.on('error', () => undefined);
  try {
    await client.connect();
    const { rows } = await client.query('SELECT current_user AS user, count(*)::int AS widgets FROM widgets');
    return { ok: true, user: rows[0].user, widgets: rows[0].widgets };
  } catch (err) {
    return { ok: false, code: (err as { code?: string }).code ?? String(err) };
  } finally {
    await client.end().catch(() => undefined);
  }
}

export const withAdmin = <T>(database: string, fn: (c: Client) => Promise<T>): Promise<T> => withPgAdmin(PG_ADMIN_URL, database, fn);

export async function rolesLike(prefix: string): Promise<string[]> {
  const { rows } = await withAdmin('postgres', (c) =>
    c.query<{ rolname: string }>(`SELECT rolname FROM pg_roles WHERE rolname LIKE $1 ORDER BY rolname`, [`${prefix}%`]),
  );
  return rows.map((r) => r.rolname);
}

export async function dropRolesLike(prefix: string): Promise<void> {
  for (const role of await rolesLike(prefix)) {
    await withAdmin(TARGET_DB, (c) => c.query(`DROP OWNED BY "${role}"; DROP ROLE IF EXISTS "${role}"`)).catch(() => undefined);
  }
}

/** Makes PostgreSQL load its configuration again and waits until new sessions see the new load time. */
export async function reloadPgConf(): Promise<void> {
  const loaded = () => withAdmin('postgres', (c) => c.query<{ t: string }>('SELECT pg_conf_load_time()::text AS t')).then((r) => r.rows[0].t);
  const before = await loaded();
  await withAdmin('postgres', (c) => c.query('SELECT pg_reload_conf()'));
  for (let i = 0; (await loaded()) === before; i++) {
    if (i > 100) throw new Error('the configuration reload was not seen');
    await new Promise((r) => setTimeout(r, 20));
  }
}
