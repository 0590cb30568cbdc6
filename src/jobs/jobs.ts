import type { TesseraConfig } from '../config/config.loader';

/**
 * Queues, job names and payloads, which queues each job may go to, its deterministic id and its retry
 * policy: everything the producer and the workers need to know about a job, in one map. Payloads carry
 * ids, never secrets. Job ids are deterministic so that enqueuing the same work twice (two replicas
 * ticking, a retry after a crash) is harmless.
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
  /** Rotate many static secrets of a connection together (an emergency); what the batch cannot finish goes to RotateStatic. */
  RotateStaticBatch = 'rotate-static-batch',
}

export interface JobPayloads {
  [JobName.EnforceLease]: { leaseId: string };
  [JobName.BulkRevoke]: { requestId: string; leaseIds: string[] };
  [JobName.RotateStatic]: { name: string; targetVersion: number };
  [JobName.RotateStaticBatch]: { batchId: string; rotations: { name: string; targetVersion: number }[] };
}

/** The queues each job may go to; the first one listed in JOBS is its default. */
export interface JobQueues {
  [JobName.EnforceLease]: QueueName.Leases;
  [JobName.BulkRevoke]: QueueName.Leases;
  [JobName.RotateStatic]: QueueName.Rotations | QueueName.Emergency;
  [JobName.RotateStaticBatch]: QueueName.Emergency;
}

/** The jobs a queue carries. */
export type JobsOn<Q extends QueueName> = { [N in JobName]: Q extends JobQueues[N] ? N : never }[JobName];

/** How often a job runs before it fails for good, and how long it waits between runs. */
export interface RetryPolicy {
  /** Runs in all, the first one included. */
  attempts: number;
  /** Exponential backoff: the n-th retry waits backoffMs × 2^(n-1). */
  backoffMs: number;
}

export type JobConfig = Pick<TesseraConfig, 'revoke_attempts' | 'rotation_attempts'>;

export interface JobSpec<N extends JobName> {
  queues: readonly [JobQueues[N], ...JobQueues[N][]];
  retry(config: JobConfig): RetryPolicy;
  /** The job's id, from its payload and where and when it runs. */
  id(payload: JobPayloads[N], where: { queue: JobQueues[N]; delayed: boolean }): string;
}

export const JOBS: { readonly [N in JobName]: JobSpec<N> } = {
  [JobName.EnforceLease]: {
    queues: [QueueName.Leases],
    retry: (config) => ({ attempts: config.revoke_attempts, backoffMs: 1000 }),
    // The lease's one delayed expiry job (renew moves it), and apart from it the one job that revokes
    // it now (an operator revoke that could not finish inline, the reconciler catching up).
    id: ({ leaseId }, { delayed }) => (delayed ? `expiry-${leaseId}` : `revoke-${leaseId}`),
  },
  [JobName.BulkRevoke]: {
    queues: [QueueName.Leases],
    retry: (config) => ({ attempts: config.revoke_attempts, backoffMs: 1000 }),
    id: ({ requestId }) => `bulk-${requestId}`,
  },
  [JobName.RotateStatic]: {
    queues: [QueueName.Rotations, QueueName.Emergency],
    retry: (config) => ({ attempts: config.rotation_attempts, backoffMs: 1000 }),
    // One job per secret and version: replicas ticking together, or retries, never rotate twice.
    id: ({ name, targetVersion }, { queue }) => `${queue === QueueName.Emergency ? 'emergency' : 'rotate'}-${name}-v${targetVersion}`,
  },
  [JobName.RotateStaticBatch]: {
    queues: [QueueName.Emergency],
    retry: (config) => ({ attempts: config.rotation_attempts, backoffMs: 1000 }),
    // The batch is named after its first rotation request, which belongs to no other batch.
    id: ({ batchId }) => `emergency-batch-${batchId}`,
  },
};

/** Workers per queue and process: emergency rotations get more than routine ones. */
export const QUEUE_CONCURRENCY: Readonly<Record<QueueName, number>> = {
  [QueueName.Leases]: 32,
  [QueueName.Rotations]: 4,
  [QueueName.Emergency]: 16,
};

/** Whether a job of this name may run on this queue (a job found elsewhere is refused, not run). */
export function belongsOn<Q extends QueueName>(name: string, queue: Q): name is JobsOn<Q> {
  const spec = (JOBS as Partial<Record<string, JobSpec<JobName>>>)[name];
  return spec !== undefined && (spec.queues as readonly QueueName[]).includes(queue);
}
