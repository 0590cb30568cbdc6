import { BrokerUnreachableError, LeaseLostError, TesseraApiError } from './errors';
import { LeaseKeeper } from './lease-keeper';
import { TesseraClient } from './tessera-client';
import { Duration, IssuedLease, LeaseState } from './types';

export interface WithLeaseOptions {
  ttl?: Duration;
  runId?: string;
  /** Seconds each renewal asks for; default the issued lease's ttl_seconds. */
  increment?: number;
  /** Renewal trouble, max TTL reached, a failed revoke after fn threw. Default: process.emitWarning. */
  onWarning?: (message: string) => void;
}

export interface LeaseContext {
  /** Aborted (with a LeaseLostError) when the lease can no longer be kept alive. */
  signal: AbortSignal;
}

/**
 * Leases a credential for `role`, keeps it renewed while `fn` runs, and revokes it when `fn` settles.
 * Resolves with fn's result, or rejects with fn's own error. If fn succeeded but the revoke failed, the
 * revoke's error is thrown (the lease still ends at its TTL), so a leak is never silent.
 */
export async function withLease<T>(
  client: TesseraClient,
  role: string,
  fn: (lease: IssuedLease, ctx: LeaseContext) => Promise<T> | T,
  opts: WithLeaseOptions = {},
): Promise<T> {
  const warn = opts.onWarning ?? ((message: string) => process.emitWarning(message, 'TesseraLeaseWarning'));
  const lease = await client.issue(role, { ttl: opts.ttl, runId: opts.runId });
  const lost = new AbortController();
  const keeper = new LeaseKeeper(client, lease, {
    increment: opts.increment,
    onWarning: warn,
    onLost: (reason) => {
      warn(reason);
      lost.abort(new LeaseLostError(reason));
    },
  });
  keeper.start();
  let result: T;
  try {
    result = await fn(lease, { signal: lost.signal });
  } catch (err) {
    keeper.stop();
    await revokeWithRetry(client, lease.lease_id).catch((revokeErr: Error) => warn(`could not revoke lease ${lease.lease_id}: ${revokeErr.message}`));
    throw err;
  }
  keeper.stop();
  await revokeWithRetry(client, lease.lease_id);
  return result;
}

const RETRYABLE_STATUS = new Set([429, 502, 503, 504]);

/** Whether a failed call may succeed if repeated: the broker was unreachable or briefly overloaded. */
export function isRetryable(err: unknown): boolean {
  return err instanceof BrokerUnreachableError || (err instanceof TesseraApiError && RETRYABLE_STATUS.has(err.status));
}

/** Calls `fn` up to `attempts` times, with jittered backoff between tries, while failures are retryable. */
export async function retrying<T>(fn: () => Promise<T>, attempts = 3, baseMs = 300): Promise<T> {
  for (let attempt = 1; ; attempt++) {
    try {
      return await fn();
    } catch (err) {
      if (attempt >= attempts || !isRetryable(err)) throw err;
      await new Promise((r) => setTimeout(r, baseMs * 2 ** (attempt - 1) * (0.5 + Math.random())));
    }
  }
}

/** Revokes one lease, retrying transient failures; revoking an already revoked lease is success. */
export function revokeWithRetry(client: Pick<TesseraClient, 'revoke'>, id: string): Promise<{ state: LeaseState }> {
  return retrying(() => client.revoke(id));
}
