import { Inject, Injectable, Logger, OnApplicationShutdown } from '@nestjs/common';
import { JobsOptions, Queue } from 'bullmq';
import { Redis } from 'ioredis';
import { CONFIG } from '../config/config.module';
import { TesseraConfig } from '../config/config.loader';
import { JobName, JobPayloads, QueueName, jobIds } from './jobs';
import { RedisConnections } from './redis';

/** The only code that enqueues jobs. */
@Injectable()
export class JobProducer implements OnApplicationShutdown {
  private readonly log = new Logger(JobProducer.name);
  readonly connection: Redis;
  private readonly leases: Queue;
  private readonly rotations: Queue;
  private readonly emergency: Queue;
  private readonly defaults: JobsOptions;
  private readonly rotationAttempts: number;

  constructor(@Inject(CONFIG) config: TesseraConfig, redis: RedisConnections) {
    this.connection = redis.open('producer');
    this.leases = new Queue(QueueName.Leases, { connection: this.connection, prefix: config.queue.prefix });
    this.rotations = new Queue(QueueName.Rotations, { connection: this.connection, prefix: config.queue.prefix });
    this.emergency = new Queue(QueueName.Emergency, { connection: this.connection, prefix: config.queue.prefix });
    for (const q of [this.leases, this.rotations, this.emergency]) q.on('error', () => undefined);
    // Failed jobs are removed: the failure is recorded on the lease in PostgreSQL, and removing the job
    // frees its id so the reconciler can enqueue the same work again.
    this.rotationAttempts = config.rotation_attempts;
    this.defaults = {
      attempts: config.revoke_attempts,
      backoff: { type: 'exponential', delay: 1000 },
      removeOnComplete: true,
      removeOnFail: true,
    };
  }

  async scheduleExpiry(leaseId: string, expiresAt: Date): Promise<void> {
    await this.add(JobName.EnforceLease, { leaseId }, jobIds.expiry(leaseId), Math.max(0, expiresAt.getTime() - Date.now()));
  }

  /** Moves the delayed expiry job atomically (no remove-and-add window); recreates it when it is gone. */
  async moveExpiry(leaseId: string, expiresAt: Date): Promise<void> {
    const job = await this.leases.getJob(jobIds.expiry(leaseId));
    const delay = Math.max(0, expiresAt.getTime() - Date.now());
    if (!job) return this.scheduleExpiry(leaseId, expiresAt);
    try {
      await job.changeDelay(delay);
    } catch {
      // Not delayed any more (it is running or waiting): the job re-reads expires_at from PostgreSQL
      // and delays itself again, so nothing is lost.
    }
  }

  async revokeNow(leaseIds: readonly string[]): Promise<void> {
    if (!leaseIds.length) return;
    await this.leases.addBulk(
      leaseIds.map((leaseId) => ({
        name: JobName.EnforceLease,
        data: { leaseId },
        opts: { ...this.defaults, jobId: jobIds.revokeNow(leaseId) },
      })),
    );
  }

  async bulkRevoke(requestId: string, leaseIds: string[]): Promise<string> {
    const jobId = jobIds.bulk(requestId);
    await this.add(JobName.BulkRevoke, { requestId, leaseIds }, jobId, 0);
    return jobId;
  }

  /** Rotation jobs carry the secret's name and target version only, never a secret. */
  async rotate(name: string, targetVersion: number, emergency: boolean): Promise<void> {
    const queue = emergency ? this.emergency : this.rotations;
    await queue.add(
      JobName.RotateStatic,
      { name, targetVersion },
      { jobId: jobIds.rotation(name, targetVersion, emergency), attempts: this.rotationAttempts, backoff: { type: 'exponential', delay: 1000 }, removeOnComplete: true, removeOnFail: true },
    );
  }

  /** Enqueues without throwing: a lost enqueue is repaired by the reconciler from PostgreSQL. */
  async tryScheduleExpiry(leaseId: string, expiresAt: Date, move = false): Promise<void> {
    try {
      await (move ? this.moveExpiry(leaseId, expiresAt) : this.scheduleExpiry(leaseId, expiresAt));
    } catch (err) {
      this.log.warn(`could not schedule the expiry of ${leaseId} (the reconciler will): ${(err as Error).message}`);
    }
  }

  async ping(): Promise<void> {
    await this.connection.ping();
  }

  async onApplicationShutdown(): Promise<void> {
    await Promise.all([this.leases, this.rotations, this.emergency].map((q) => q.close().catch(() => undefined)));
  }

  private async add<N extends JobName>(name: N, data: JobPayloads[N], jobId: string, delay: number): Promise<void> {
    await this.leases.add(name, data, { ...this.defaults, jobId, delay });
  }
}
