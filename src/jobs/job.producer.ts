import { Inject, Injectable, OnApplicationShutdown } from '@nestjs/common';
import { JobsOptions, Queue } from 'bullmq';
import { GroupCommit } from '../../plugins/contract';
import { Redis } from 'ioredis';
import { CONFIG } from '../config/config.module';
import { TesseraConfig } from '../config/config.loader';
import { JOBS, JobConfig, JobName, JobPayloads, JobQueues, QueueName } from './jobs';
import { RedisConnections } from './redis';

export interface EnqueueOptions<N extends JobName> {
  /** One of the job's queues (see JOBS); its first by default. */
  queue?: JobQueues[N];
  /** Run no earlier than this: a delayed job, with the job's delayed id. Now by default. */
  runAt?: Date;
  /**
   * With runAt: if the job is already waiting, move it to runAt in place (atomic: there is no moment
   * without a job, as removing and adding again would leave); if it is gone, enqueue it.
   */
  reschedule?: boolean;
}

export interface PlannedJob {
  queue: QueueName;
  name: JobName;
  data: unknown;
  opts: JobsOptions & { jobId: string; delay: number };
}

/**
 * Where a job goes and how: its queue, deterministic id and retry policy all come from JOBS. Failed
 * jobs are removed: a failure is recorded in PostgreSQL, and removing the job frees its id so the
 * reconcilers can enqueue the same work again.
 */
export function planJob<N extends JobName>(config: JobConfig, name: N, payload: JobPayloads[N], opts: EnqueueOptions<N>, now: number): PlannedJob {
  const spec = JOBS[name];
  const queue = opts.queue ?? spec.queues[0];
  if (!(spec.queues as readonly QueueName[]).includes(queue)) throw new Error(`job ${name} does not go to queue ${queue}`);
  const retry = spec.retry(config);
  return {
    queue,
    name,
    data: payload,
    opts: {
      jobId: spec.id(payload, { queue, delayed: opts.runAt !== undefined }),
      delay: opts.runAt ? Math.max(0, opts.runAt.getTime() - now) : 0,
      attempts: retry.attempts,
      backoff: { type: 'exponential', delay: retry.backoffMs },
      removeOnComplete: true,
      removeOnFail: true,
    },
  };
}

/** The only code that enqueues jobs. Every job goes through `enqueue`. */
@Injectable()
export class JobProducer implements OnApplicationShutdown {
  private readonly connection: Redis;
  private readonly queues: ReadonlyMap<QueueName, Queue>;
  /** Adds arriving together go to Redis as one addBulk (one round trip), per queue. */
  private readonly adds: ReadonlyMap<QueueName, GroupCommit<PlannedJob, void>>;

  constructor(
    @Inject(CONFIG) private readonly config: TesseraConfig,
    redis: RedisConnections,
  ) {
    this.connection = redis.open('producer');
    this.queues = new Map(
      Object.values(QueueName).map((name) => {
        const queue = new Queue(name, { connection: this.connection, prefix: config.queue.prefix });
        queue.on('error', () => undefined);
        return [name, queue];
      }),
    );
    this.adds = new Map(
      [...this.queues].map(([name, queue]) => [
        name,
        new GroupCommit<PlannedJob, void>(
          async (jobs) => {
            if (jobs.length === 1) await queue.add(jobs[0].name, jobs[0].data, jobs[0].opts);
            else await queue.addBulk(jobs.map((j) => ({ name: j.name, data: j.data, opts: j.opts })));
            return jobs.map(() => undefined);
          },
          { maxBatch: 100, inFlight: 2 },
        ),
      ]),
    );
  }

  /** Enqueues one job; returns its id. Enqueuing work that is already queued changes nothing. */
  async enqueue<N extends JobName>(name: N, payload: JobPayloads[N], opts: EnqueueOptions<N> = {}): Promise<string> {
    const job = planJob(this.config, name, payload, opts, Date.now());
    const queue = this.queues.get(job.queue)!;
    if (opts.reschedule && opts.runAt) {
      const waiting = await queue.getJob(job.opts.jobId);
      if (waiting) {
        // A job no longer delayed (waiting or running) cannot move, and need not: its handler reads
        // the work from PostgreSQL when it runs and, finding it not due yet, asks to run again.
        await waiting.changeDelay(job.opts.delay).catch(() => undefined);
        return job.opts.jobId;
      }
    }
    await this.adds.get(job.queue)!.submit(job);
    return job.opts.jobId;
  }

  /** Jobs per queue by state (waiting, delayed, active, failed): the tessera_queue_jobs gauge. */
  async counts(): Promise<{ queue: QueueName; counts: Record<string, number> }[]> {
    return Promise.all([...this.queues].map(async ([queue, q]) => ({ queue, counts: await q.getJobCounts('waiting', 'delayed', 'active', 'failed') })));
  }

  async ping(): Promise<void> {
    await this.connection.ping();
  }

  async onApplicationShutdown(): Promise<void> {
    await Promise.all([...this.queues.values()].map((q) => q.close().catch(() => undefined)));
  }
}
