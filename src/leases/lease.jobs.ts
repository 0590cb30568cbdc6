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
/** The most due leases of one connection an expiry job claims and revokes together. */
export const EXPIRY_BATCH = 200;
/** How many batches one job revokes back to back while more leases of its connection come due. */
export const EXPIRY_DRAIN_ROUNDS = 50;
/**
 * How long a lease an expiry claim took is left to that claim: a job that finds it revoking for
 * expiry, with no error recorded, claimed less than this ago, does nothing (the claim finishes it or
 * records its error). A claimer that died holds its leases no longer than this; then the reconciler's
 * revoke jobs finish them.
 */
export const EXPIRY_CLAIM_SECONDS = 60;

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
   *
   * Expiry is batched: the job first claims every due lease of its lease's connection (up to
   * EXPIRY_BATCH, its own first) and revokes them together. The jobs of leases a claim took find them
   * held and do nothing; each lease's outcome stays its own (see LeaseRevoker.revokeClaimed).
   */
  @OnJob(JobName.EnforceLease)
  async enforce({ leaseId }: JobPayloads[JobName.EnforceLease], ctx: JobContext): Promise<JobOutcome> {
    // At a mass expiry most jobs find their lease already claimed by a neighbour's job (which finishes
    // it) or revoked: one round trip, and done.
    const status = await this.leases.expiryStatus(leaseId, EXPIRY_CLAIM_SECONDS);
    if (!status || status.held || enforcementStep(status.state) === 'none') return;
    // This lease's time is up, and its neighbours' too: claim them together.
    const claimed = await this.leases.claimExpired(leaseId, EXPIRY_BATCH);
    // At a mass expiry, keep draining the connection's leases as they come due, batch after batch:
    // the jobs of the leases taken find them held and finish at once, instead of each claiming a few.
    for (let batch = claimed, rounds = 1; batch.length; rounds++) {
      await this.revoker.revokeClaimed(batch, { leaseId, ctx });
      if (rounds >= EXPIRY_DRAIN_ROUNDS) break;
      batch = await this.leases.claimExpired(leaseId, EXPIRY_BATCH);
    }
    if (claimed.some((l) => l.id === leaseId)) return;
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
        // Taken by another job's expiry claim, still at work: that claim finishes it.
        if (await this.leases.heldByExpiryClaim(lease.id, EXPIRY_CLAIM_SECONDS)) return;
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
