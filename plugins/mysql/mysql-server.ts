/** What the MySQL/MariaDB plugin knows of the server: its error codes, and ending an account's sessions. */
import { PoolConnection } from 'mysql2/promise';

/** Server errors after which trying again can help: lock waits, deadlocks, lost or refused connections. */
const RETRYABLE_ERRNO = new Set([1040, 1053, 1205, 1213, 2002, 2003, 2006, 2013]);
const NETWORK_CODES = new Set(['ECONNREFUSED', 'ECONNRESET', 'ETIMEDOUT', 'EPIPE', 'EHOSTUNREACH', 'PROTOCOL_CONNECTION_LOST', 'PROTOCOL_SEQUENCE_TIMEOUT']);
/** Access denied (1045; MariaDB also 1698), account locked (MySQL 3118, MariaDB 4151), database access denied. */
export const LOGIN_REFUSED_ERRNO = new Set([1044, 1045, 1698, 3118, 4151]);
export const OPERATION_FAILED_FOR_USER = 1396; // ER_CANNOT_USER: the account does not exist
export const NO_SUCH_THREAD = 1094;
export const PARSE_ERROR = 1064;

export interface MysqlError {
  code?: string;
  errno?: number;
  sqlMessage?: string;
}

/**
 * KILL CONNECTION for every session of these users but our own, one process-list query for all;
 * returns the users that had sessions.
 */
export async function killSessionsOf(conn: PoolConnection, users: string[]): Promise<Set<string>> {
  const [sessions] = await conn.query('SELECT ID AS id, USER AS user FROM information_schema.PROCESSLIST WHERE USER IN (?) AND ID <> CONNECTION_ID()', [users]);
  for (const { id } of sessions as { id: number }[]) {
    await conn.query(`KILL CONNECTION ${Number(id)}`).catch((err: MysqlError) => {
      if (err.errno !== NO_SUCH_THREAD) throw err;
    });
  }
  return new Set((sessions as { user: string }[]).map((s) => String(s.user)));
}

/** An error the server answered with (as opposed to a lost or refused connection). */
export function isServerError(err: unknown): boolean {
  return (err as MysqlError)?.sqlMessage !== undefined && !isRetryable(err);
}

export function isRetryable(err: unknown): boolean {
  const e = err as MysqlError;
  return (e.errno !== undefined && RETRYABLE_ERRNO.has(e.errno)) || (e.code !== undefined && NETWORK_CODES.has(e.code)) || !e.sqlMessage;
}

