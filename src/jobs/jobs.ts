/**
 * Queues, job names and payloads. Payloads carry ids, never secrets. Job ids are deterministic so that
 * enqueuing the same work twice (two replicas ticking, a retry after a crash) is harmless.
 */
export enum QueueName {
  Leases = 'leases',
  /** Rotations on cadence, by event, on demand. */
  Rotations = 'rotations',
  /** Emergency rotations: their own queue and workers, so a backlog of routine work never delays them. */
  Emergency = 'rotations-emergency',
}

export enum JobName {
  /** Enforce a lease's expiry (delayed until expires_at) or finish its revocation. */
  EnforceLease = 'enforce-lease',
  /** Revoke every lease a bulk request moved to `revoking`. */
  BulkRevoke = 'bulk-revoke',
  /** Rotate a static secret to a given version (resuming a rotation a crash interrupted). */
  RotateStatic = 'rotate-static',
}

export interface JobPayloads {
  [JobName.EnforceLease]: { leaseId: string };
  [JobName.BulkRevoke]: { requestId: string; leaseIds: string[] };
  [JobName.RotateStatic]: { name: string; targetVersion: number };
}

export const jobIds = {
  /** The lease's one delayed expiry job; renew moves it. */
  expiry: (leaseId: string) => `expiry-${leaseId}`,
  /** Revoke now (operator revoke that could not finish inline, reconciler catch-up). */
  revokeNow: (leaseId: string) => `revoke-${leaseId}`,
  bulk: (requestId: string) => `bulk-${requestId}`,
  /** One job per secret and version: replicas ticking together, or retries, never rotate twice. */
  rotation: (name: string, targetVersion: number, emergency: boolean) => `${emergency ? 'emergency' : 'rotate'}-${name}-v${targetVersion}`,
};
