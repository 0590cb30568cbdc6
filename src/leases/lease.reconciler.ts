import { Inject, Injectable, Logger, OnApplicationBootstrap, OnApplicationShutdown } from '@nestjs/common';
import { SchedulerRegistry } from '@nestjs/schedule';
import { CONFIG } from '../config/config.module';
import { TesseraConfig } from '../config/config.loader';
import { JobProducer } from '../jobs/job.producer';
import { JobName } from '../jobs/jobs';
import { Ticker } from '../jobs/ticker';
import { Metrics } from '../metrics/metrics';
import { LeaseRepository } from './lease.repository';

const BATCH = 5000;
/** Enqueues in flight at once (they share one pipelined Redis connection). */
const ENQUEUE_CHUNK = 500;
/** An expiry job normally fires on time; the reconciler steps in only for leases this late. */
const GRACE_SECONDS = 1;

/**
 * Sweeps PostgreSQL every `reconcile_every` and enqueues, with deterministic job ids, whatever Redis
 * lost or a crash left behind: expired leases, revocations stuck or failed, abandoned pending leases.
 * A pending lease counts as abandoned as soon as the process issuing it is gone (its issuer lock is
 * free), so recovery after a crash takes at most two ticks (DESIGN §9, invariant 1); `pending_timeout`
 * is only the backstop for leases without a lock and for an issuing process that hangs.
 * Every replica ticks; the job ids make the enqueues idempotent, so each piece of work runs once.
 */
@Injectable()
export class LeaseReconciler implements OnApplicationBootstrap, OnApplicationShutdown {
  private readonly ticker: Ticker;

  constructor(
    @Inject(CONFIG) private readonly config: TesseraConfig,
    scheduler: SchedulerRegistry,
    private readonly leases: LeaseRepository,
    private readonly jobs: JobProducer,
    private readonly metrics: Metrics,
  ) {
    this.ticker = new Ticker(scheduler, 'reconciler', new Logger(LeaseReconciler.name));
  }

  onApplicationBootstrap(): void {
    this.ticker.start(this.config.reconcile_every, () => this.tick());
  }

  onApplicationShutdown(): void {
    this.ticker.stop();
  }

  /** Returns how many leases it enqueued. */
  async tick(): Promise<number> {
    const ids = await this.leases.findDue({
      graceSeconds: GRACE_SECONDS,
      staleSeconds: this.config.reconcile_every,
      pendingTimeoutSeconds: this.config.pending_timeout,
      limit: BATCH,
    });
    for (let i = 0; i < ids.length; i += ENQUEUE_CHUNK) {
      await Promise.all(ids.slice(i, i + ENQUEUE_CHUNK).map((leaseId) => this.jobs.enqueue(JobName.EnforceLease, { leaseId })));
    }
    this.metrics.revokeFailedLeases.set(await this.leases.countRevokeFailed());
    return ids.length;
  }
}
