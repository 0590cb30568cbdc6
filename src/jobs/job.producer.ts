import { BeforeApplicationShutdown, Inject, Injectable, Logger, OnApplicationShutdown } from '@nestjs/common';
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
  /**
   * Held back and added together with the others asked for within DEFER_MS (one addBulk, one wake-up
   * of the workers, instead of one each). Pass it only when JobProducer.defers() said yes in the same
   * turn. The promise settles once the job is in Redis; a caller whose work PostgreSQL holds need not
   * wait for it (the reconcilers enqueue whatever never reached Redis).
   */
  deferrable?: boolean;
}

/** How long a deferrable job may wait for others to be added with (ms). */
export const DEFER_MS = 25;
/** Jobs due sooner than this are added at once, deferrable or not (ms). */
export const DEFER_MIN_MS = 10_000;
/** The most jobs one deferred addBulk carries. */
const DEFER_BATCH = 500;
/**
 * The most jobs held back at once: past it (Redis slow or not answering), jobs are added at once and
 * their callers wait for them, which slows issue down to what Redis takes instead of growing memory.
 */
const DEFER_MAX = 10_000;
/** How long shutdown waits for the held-back jobs to reach Redis (ms). */
const DEFER_SHUTDOWN_MS = 10_000;

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
export class JobProducer implements BeforeApplicationShutdown, OnApplicationShutdown {
  private readonly connection: Redis;
  private readonly queues: ReadonlyMap<QueueName, Queue>;
  /** Adds arriving together go to Redis as one addBulk (one round trip), per queue. */
  private readonly adds: ReadonlyMap<QueueName, GroupCommit<PlannedJob, void>>;

  constructor(
    @Inject(CONFIG) private readonly config: TesseraConfig,
    redis: RedisConnections,
  ) {
    this.connection = redis.open('producer', () => this.drained());
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

  /** Deferrable jobs waiting for the next deferred addBulk, and that addBulk's timer. */
  private deferred: { name: JobName; payload: unknown; opts: EnqueueOptions<JobName>; done: (err?: unknown) => void }[] = [];
  private deferTimer: NodeJS.Timeout | undefined;
  private flushing: Promise<void> = Promise.resolve();
  /** Jobs held back and not yet answered: waiting, or in a flush that has not finished. */
  private heldBack = 0;
  /** Set when shutdown begins: from then on nothing is held back. */
  private closing = false;
  private readonly log = new Logger(JobProducer.name);

  /**
   * Whether a job due at runAt would be held back for a shared addBulk now. A caller that answers
   * without waiting for its job asks this first and passes `deferrable` only when it says yes; any
   * other job (a short lease's expiry, one asked for during shutdown or while Redis is behind) it
   * waits for.
   */
  defers(opts: Pick<EnqueueOptions<JobName>, 'runAt' | 'reschedule'>): boolean {
    return this.canHoldBack() && !opts.reschedule && !!opts.runAt && opts.runAt.getTime() - Date.now() >= DEFER_MIN_MS;
  }

  private canHoldBack(): boolean {
    return !this.closing && this.heldBack < DEFER_MAX;
  }

  /** Enqueues one job; returns its id. Enqueuing work that is already queued changes nothing. */
  async enqueue<N extends JobName>(name: N, payload: JobPayloads[N], opts: EnqueueOptions<N> = {}): Promise<string> {
    // `deferrable` is the caller's defers() of this same turn: only shutdown or the cap can have
    // changed since, and neither can within a turn; the due time is not judged twice.
    if (opts.deferrable && opts.runAt && !opts.reschedule && this.canHoldBack()) {
      const jobId = JOBS[name].id(payload, { queue: opts.queue ?? JOBS[name].queues[0], delayed: true });
      this.heldBack++;
      await new Promise<void>((resolve, reject) => {
        let answered = false;
        const done = (err?: unknown) => {
          if (answered) return;
          answered = true;
          this.heldBack--;
          if (err) reject(err);
          else resolve();
        };
        this.deferred.push({ name, payload, opts: opts as EnqueueOptions<JobName>, done });
        this.deferTimer ??= setTimeout(() => void this.flushDeferred(), DEFER_MS);
      });
      return jobId;
    }
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
    await this.adds
      .get(job.queue)!
      .submit(job)
      .catch((err: Error) => {
        this.afterFailure(err);
        throw err;
      });
    return job.opts.jobId;
  }

  /** Jobs per queue by state (waiting, delayed, active, failed): the tessera_queue_jobs gauge. */
  async counts(): Promise<{ queue: QueueName; counts: Record<string, number> }[]> {
    return Promise.all([...this.queues].map(async ([queue, q]) => ({ queue, counts: await q.getJobCounts('waiting', 'delayed', 'active', 'failed') })));
  }

  async ping(): Promise<void> {
    await this.connection.ping();
  }

  /**
   * Takes the jobs held back so far and adds them after the flushes before (one flush at a time). A
   * flush that fails answers its own jobs with the error and leaves the flushes after it to run.
   */
  private flushDeferred(): Promise<void> {
    clearTimeout(this.deferTimer);
    this.deferTimer = undefined;
    const jobs = this.deferred;
    this.deferred = [];
    this.flushing = this.flushing
      .then(() => this.addHeldBack(jobs))
      .catch((err: unknown) => {
        const error = err instanceof Error ? err : new Error('addBulk failed');
        jobs.forEach((j) => j.done(error));
        this.afterFailure(error);
        this.log.warn(`${jobs.length} held-back jobs could not be added (the reconciler will): ${error.message}`);
      });
    return this.flushing;
  }

  /**
   * Per queue in addBulks of up to DEFER_BATCH, each job planned now (so its delay still ends at its
   * runAt). The first addBulk that fails fails the rest too: Redis is not taking them.
   */
  private async addHeldBack(jobs: typeof this.deferred): Promise<void> {
    const now = Date.now();
    const planned = jobs.flatMap((j) => {
      try {
        return [{ ...j, plan: planJob(this.config, j.name, j.payload as never, j.opts, now) }];
      } catch (err) {
        j.done(err);
        return [];
      }
    });
    for (let i = 0; i < planned.length; i += DEFER_BATCH) {
      const chunk = planned.slice(i, i + DEFER_BATCH);
      for (const queue of new Set(chunk.map((c) => c.plan.queue))) {
        const mine = chunk.filter((c) => c.plan.queue === queue);
        await this.queues.get(queue)!.addBulk(mine.map(({ plan }) => ({ name: plan.name, data: plan.data, opts: plan.opts })));
        mine.forEach((c) => c.done());
      }
    }
  }

  /**
   * ioredis's command timeout rejects the command but keeps the connection: one that stopped
   * answering without closing (half-open) would cost every later command its 5 s. Start a new one.
   */
  private afterFailure(err: Error): void {
    if (/timed out/i.test(err.message)) this.connection.disconnect(true);
  }

  /**
   * Shutdown begins: nothing is held back from now on (requests still in flight wait for their jobs
   * before they answer, so before the HTTP server has closed), and the jobs held back go to Redis,
   * for at most DEFER_SHUTDOWN_MS. The connection closes only after the last flush (see drained).
   */
  async beforeApplicationShutdown(): Promise<void> {
    this.closing = true;
    await this.drained();
  }

  async onApplicationShutdown(): Promise<void> {
    await this.drained();
    await Promise.all([...this.queues.values()].map((q) => q.close().catch(() => undefined)));
  }

  /** The last flush, within DEFER_SHUTDOWN_MS; RedisConnections waits for it before it quits. */
  private async drained(): Promise<void> {
    let timer: NodeJS.Timeout | undefined;
    const late = new Promise<void>((resolve) => (timer = setTimeout(resolve, DEFER_SHUTDOWN_MS)));
    await Promise.race([this.flushDeferred(), late]);
    clearTimeout(timer);
  }
}
