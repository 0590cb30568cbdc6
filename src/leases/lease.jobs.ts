import { Inject, Injectable } from '@nestjs/common';
import { CONFIG } from '../config/config.module';
import { TesseraConfig } from '../config/config.loader';
import { JobContext, JobOutcome, OnJob } from '../jobs/job-handler';
import { JobName, JobPayloads } from '../jobs/jobs';
import { Clock } from '../common/clock';
import { LeaseRepository } from './lease.repository';
import { LeaseRevoker } from './lease-revoker';
import { LeaseService } from './lease.service';
import { enforcementStep } from './lease-state';

/**
 * Never wait less than this: if this host's clock runs ahead of the database's, a lease the database
 * does not yet consider expired must not make the job spin.
 */
const MIN_WAIT_MS = 250;

/** The lease jobs' handlers. They throw to retry and never swallow an error. */
@Injectable()
export class LeaseJobs {
  constructor(
    @Inject(CONFIG) private readonly config: TesseraConfig,
    @Inject(Clock) private readonly clock: Clock,
    private readonly leases: LeaseRepository,
    private readonly revoker: LeaseRevoker,
    private readonly service: LeaseService,
  ) {}

  /**
   * Brings one lease to where it must be: an expired lease is revoked, a `revoking` one finished, an
   * abandoned `pending` one cleaned up. A lease renewed since the job was scheduled runs the job again
   * at its new expiry instead, so renew never has to remove and re-add a job.
   */
  @OnJob(JobName.EnforceLease)
  async enforce({ leaseId }: JobPayloads[JobName.EnforceLease], ctx: JobContext): Promise<JobOutcome> {
    // The common case first, in one round trip: an active lease whose time is up.
    const expired = await this.leases.expire(leaseId);
    if (expired) return void (await this.revoker.revokeOrDefer(expired, null, ctx));
    const lease = await this.leases.get(leaseId);
    if (!lease) return;
    switch (enforcementStep(lease.state)) {
      case 'wait':
        // Not expired by the database's clock: renewed since the job was scheduled.
        return ctx.runAgainAt(new Date(Math.max(lease.expires_at.getTime(), this.clock.now().getTime() + MIN_WAIT_MS)));
      case 'abandon': {
        // Abandoned when its issuing process is gone (its issuer lock is free) or it is older than
        // pending_timeout. Otherwise its issue is still under way: done here, and the reconciler
        // enqueues it again if that changes (a delayed job would hold the job id until the timeout).
        const abandoned = await this.leases.abandon(lease.id, this.config.pending_timeout);
        if (abandoned) await this.revoker.revokeOrDefer(abandoned, null, ctx);
        return;
      }
      case 'finish':
        await this.revoker.revokeOrDefer(lease, null, ctx);
        return;
      case 'none':
        return; // revoked or failed: nothing left to do
    }
  }

  @OnJob(JobName.BulkRevoke)
  async bulk({ leaseIds }: JobPayloads[JobName.BulkRevoke]): Promise<void> {
    await this.service.revokeMany(leaseIds, null);
  }
}
