import mysql from 'mysql2/promise';
import { MYSQL_ADMIN_URL } from './services';

export async function withMysqlAdmin<T>(fn: (c: mysql.Connection) => Promise<T>): Promise<T> {
  const conn = await mysql.createConnection(MYSQL_ADMIN_URL);
  try {
    return await fn(conn);
  } finally {
    await conn.end();
  }
}

export async function mysqlUsersLike(prefix: string): Promise<string[]> {
  return withMysqlAdmin(async (c) => {
    const [rows] = await c.query('SELECT User AS user FROM mysql.user WHERE User LIKE ? ORDER BY User', [`${prefix}%`]);
    return (rows as { user: string }[]).map((r) => r.user);
  });
}

/** Logs in as the account and reads the test table; the MySQL error code when it cannot. */
export async function mysqlLogin(username: string, password: string): Promise<{ ok: true; rows: number } | { ok: false; code: string }> {
  const url = new URL(MYSQL_ADMIN_URL);
  let conn: mysql.Connection | undefined;
  try {
    conn = await mysql.createConnection({ host: url.hostname, port: Number(url.port || 3306), user: username, password, database: 'test' });
    const [rows] = await conn.query('SELECT count(*) AS n FROM tessera_widgets');
    return { ok: true, rows: Number((rows as { n: number }[])[0].n) };
  } catch (err) {
    return { ok: false, code: (err as { code?: string }).code ?? String(err) };
  } finally {
    await conn?.end().catch(() => undefined);
  }
}

export async function prepareMysqlTarget(): Promise<void> {
  await withMysqlAdmin(async (c) => {
    await c.query('CREATE TABLE IF NOT EXISTS tessera_widgets (id int PRIMARY KEY, name varchar(64) NOT NULL)');
    await c.query(`INSERT IGNORE INTO tessera_widgets VALUES (1, 'sprocket'), (2, 'gear'), (3, 'cog')`);
  });
}
