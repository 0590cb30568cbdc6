import { z } from 'zod';
import { parseDuration } from '../../plugins/contract';

/** Vault's increments: a number, a numeric string or a duration string; 0 means the default. */
const increment = z.union([z.string(), z.number()]).transform((value, ctx) => {
  const seconds = parseDuration(value);
  if (seconds === undefined || seconds < 0) {
    ctx.addIssue({ code: 'custom', message: 'must be a duration such as "90s", "15m", "1h" or whole seconds' });
    return z.NEVER;
  }
  return seconds;
});
const leaseId = z.string().min(1).max(512);

// Not strict: Vault clients send fields Tessera has no use for (the CLI's `sync`, ESO's extra parameters).
export const loginBody = z.object({ jwt: z.string().min(1).max(16384), role: z.string().max(256).optional() });
export const tokenRenewBody = z.object({ increment: increment.optional() });
export const leaseRenewBody = z.object({ lease_id: leaseId, increment: increment.optional() });
export const leaseIdBody = z.object({ lease_id: leaseId });
/** For the routes that also take the lease id in the path: then the body may omit it. */
export const optionalLeaseRenewBody = z.object({ lease_id: leaseId.optional(), increment: increment.optional() });
