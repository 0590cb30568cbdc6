import { Inject, Injectable, Logger, OnApplicationBootstrap, OnApplicationShutdown } from '@nestjs/common';
import { DelayedError, Job, UnrecoverableError, Worker } from 'bullmq';
import { CONFIG } from '../config/config.module';
import { TesseraConfig } from '../config/config.loader';
import { PermanentJobError, RunAgain, jobContext } from './job-handler';
import { JobHandlers, JobRegistry } from './job-registry';
import { QUEUE_CONCURRENCY, QueueName, belongsOn } from './jobs';
import { RedisConnections } from './redis';

/**
 * Runs the processors (only in processes with the worker role), one BullMQ worker per queue. Handlers
 * are the @OnJob methods found at boot; boot fails if a job name has none or two.
 */
@Injectable()
export class JobWorkers implements OnApplicationBootstrap, OnApplicationShutdown {
  private readonly log = new Logger(JobWorkers.name);
  private readonly workers: Worker[] = [];

  constructor(
    @Inject(CONFIG) private readonly config: TesseraConfig,
    private readonly redis: RedisConnections,
    private readonly registry: JobRegistry,
  ) {}

  onApplicationBootstrap(): void {
    const handlers = this.registry.discover();
    for (const queue of Object.values(QueueName)) {
      const worker = new Worker(queue, (job, token) => processJob(handlers, queue, job, token), {
        connection: this.redis.open('worker'),
        prefix: this.config.queue.prefix,
        concurrency: QUEUE_CONCURRENCY[queue],
        autorun: true,
      });
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

/**
 * The one processor: gives the handler its payload and a JobContext, and translates its answer into
 * the queue's terms (a permanent error ends the job, a request to run again delays it).
 */
export async function processJob(handlers: JobHandlers, queue: QueueName, job: Job, token?: string): Promise<void> {
  if (!belongsOn(job.name, queue)) throw new UnrecoverableError(`job ${job.name} does not run on queue ${queue}`);
  const attempt = job.attemptsMade + 1;
  let outcome;
  try {
    outcome = await handlers.run(job.name, job.data, jobContext(attempt, job.opts.attempts ?? 1));
  } catch (err) {
    if (err instanceof PermanentJobError) throw new UnrecoverableError(err.message);
    throw err;
  }
  if (outcome instanceof RunAgain) {
    await job.moveToDelayed(outcome.at.getTime(), token);
    throw new DelayedError();
  }
}
