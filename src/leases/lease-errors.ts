import { PluginError } from '../../plugins/contract';

/**
 * What went wrong with a lease, recorded on it. `code` is stable and safe for the lease's owner (a plugin
 * error's code such as `target_unavailable`, or the broker's own: `abandoned`, `internal_error`); `detail`
 * is the target's own text, which can name hosts, users and internals, so only operators see it.
 */
export interface LeaseError {
  code: string;
  detail: string;
}

const CODE = /^[a-z][a-z0-9_]{0,63}$/;

export function leaseError(err: unknown): LeaseError {
  if (err instanceof PluginError) return { code: CODE.test(err.code) ? err.code : 'target_error', detail: err.message };
  return { code: 'internal_error', detail: err instanceof Error ? err.message : String(err) };
}
