/** What the Redis plugin knows of the server: its error replies, password hashes, and where to connect. */
import { createHash } from 'node:crypto';
import { PluginError } from '../contract';

/** Replies after which trying again can help: a loading, busy, failing-over or read-only server. */
const RETRYABLE_REPLIES = /^(LOADING|BUSY|TRYAGAIN|MASTERDOWN|READONLY|CLUSTERDOWN|NOREPLICAS)\b/;
/** The reply to AUTH with a wrong password, an unknown user or a disabled one. */
export const WRONGPASS = /^WRONGPASS\b/;
/** CLIENT KILL USER for a user Redis does not know (deleted already): nothing left to end. */
export const NO_SUCH_USER = /^ERR No such user\b/;

/** An error Redis answered with (as opposed to a lost, refused or timed-out connection). */
export function isReply(err: unknown): err is Error {
  return (err as Error)?.name === 'ReplyError';
}

export function isRetryable(err: unknown): boolean {
  return !isReply(err) || RETRYABLE_REPLIES.test(err.message);
}

/** The `#<hash>` form of ACL SETUSER: Redis stores and compares SHA-256 hex, so it never sees the password. */
export function passwordHash(password: string): string {
  return createHash('sha256').update(password, 'utf8').digest('hex');
}

/**
 * A PluginError from whatever ioredis threw: the server's reply or the connection failure, with every
 * secret given (passwords and their hashes) cut out. Commands are never quoted (they carry hashes).
 */
export function translateRedisError(connection: string, step: string, err: unknown, secrets: readonly string[]): PluginError {
  if (err instanceof PluginError) return err;
  const message = String((err as Error)?.message ?? err);
  let text = isReply(err) ? message : `cannot reach the server (${(err as NodeJS.ErrnoException)?.code ?? message})`;
  for (const secret of secrets) if (secret) text = text.split(secret).join('[redacted]');
  return new PluginError(`redis ${connection}: ${step} failed: ${text}`, isRetryable(err));
}

/** Host, port and TLS of a redis:// or rediss:// URL. */
export function targetOf(url: string): { host: string; port: number; tls: boolean } {
  const u = new URL(url);
  return {
    host: decodeURIComponent(u.hostname).replace(/^\[(.*)\]$/, '$1') || '127.0.0.1',
    port: Number(u.port || 6379),
    tls: u.protocol === 'rediss:',
  };
}

/** Names every client on this machine reaches the same server by. */
const LOOPBACK = /^(localhost|127(\.\d{1,3}){3}|::1)$/i;

/**
 * Whether two redis:// URLs name one server (host and port; loopback names count as one host).
 * It cannot see through DNS: two names for one machine are two servers here.
 */
export function sameServer(a: string, b: string): boolean {
  try {
    const [x, y] = [targetOf(a), targetOf(b)];
    const host = (h: string) => (LOOPBACK.test(h) ? 'loopback' : h.toLowerCase());
    return x.port === y.port && host(x.host) === host(y.host);
  } catch {
    return false;
  }
}
