import { Inject, Injectable, Logger, OnApplicationBootstrap, OnApplicationShutdown } from '@nestjs/common';
import { Job, Worker } from 'bullmq';
import { CONFIG } from '../config/config.module';
import { TesseraConfig } from '../config/config.loader';
import { LeaseJobs } from '../leases/lease.jobs';
import { RotationSweeper } from '../statics/rotation.sweeper';
import { JobName, QueueName } from './jobs';
import { RedisConnections } from './redis';

type Handler = (job: Job, token?: string) => Promise<unknown>;

/**
 * Runs the processors (only in processes with the worker role). Handlers are collected from the
 * services that own the work; boot fails if a job name has none.
 */
@Injectable()
export class JobWorkers implements OnApplicationBootstrap, OnApplicationShutdown {
  private readonly log = new Logger(JobWorkers.name);
  private readonly workers: Worker[] = [];

  constructor(
    @Inject(CONFIG) private readonly config: TesseraConfig,
    private readonly redis: RedisConnections,
    private readonly leaseJobs: LeaseJobs,
    private readonly rotationJobs: RotationSweeper,
  ) {}

  onApplicationBootstrap(): void {
    const handlers: Partial<Record<JobName, Handler>> = {
      ...(this.leaseJobs.handlers as Record<string, Handler>),
      ...(this.rotationJobs.handlers as Record<string, Handler>),
    };
    const missing = Object.values(JobName).filter((name) => !handlers[name]);
    if (missing.length) throw new Error(`no handler for job(s): ${missing.join(', ')}`);
    const processor = async (job: Job, token?: string) => {
      const handler = handlers[job.name as JobName];
      if (!handler) throw new Error(`no handler for job ${job.name}`);
      return handler(job, token);
    };
    // Emergency rotations have their own queue and more workers than routine ones.
    for (const [queue, concurrency] of [
      [QueueName.Leases, 32],
      [QueueName.Rotations, 4],
      [QueueName.Emergency, 16],
    ] as const) {
      const worker = new Worker(queue, processor, { connection: this.redis.open('worker'), prefix: this.config.queue.prefix, concurrency, autorun: true });
      worker.on('error', (err) => this.log.warn(`queue worker (${queue}): ${err.message}`));
      worker.on('failed', (job, err) => {
        if (job && err.name !== 'DelayedError') this.log.warn(`job ${job.id} failed (attempt ${job.attemptsMade}): ${err.message}`);
      });
      this.workers.push(worker);
    }
  }

  async onApplicationShutdown(): Promise<void> {
    await Promise.all(this.workers.map((w) => w.close()));
  }
}
