/** What the PostgreSQL plugin knows of the server: SQLSTATEs, error translation, and ending roles' sessions. */
import { DatabaseError, PoolClient } from 'pg';
import { PluginError } from '../contract';

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
