import { Inject, Injectable } from '@nestjs/common';
import { DelayedError, Job, UnrecoverableError } from 'bullmq';
import { PluginError } from '../../plugins/contract';
import { CONFIG } from '../config/config.module';
import { TesseraConfig } from '../config/config.loader';
import { JobName, JobPayloads } from '../jobs/jobs';
import { leaseError } from './lease-errors';
import { LeaseRow } from './lease.model';
import { LeaseRepository } from './lease.repository';
import { LeaseRevoker, RevokeReason } from './lease-revoker';
import { LeaseService } from './lease.service';

/** Lease jobs. Handlers throw to retry and never swallow an error. */
@Injectable()
export class LeaseJobs {
  constructor(
    @Inject(CONFIG) private readonly config: TesseraConfig,
    private readonly leases: LeaseRepository,
    private readonly revoker: LeaseRevoker,
    private readonly service: LeaseService,
  ) {}

  readonly handlers = {
    [JobName.EnforceLease]: (job: Job<JobPayloads[JobName.EnforceLease]>, token?: string) => this.enforce(job, token),
    [JobName.BulkRevoke]: (job: Job<JobPayloads[JobName.BulkRevoke]>) => this.bulk(job),
  };

  /**
   * Brings one lease to where it must be: an expired lease is revoked, a `revoking` one finished, an
   * abandoned `pending` one cleaned up. A lease renewed since the job was scheduled delays the job
   * again instead, so renew never has to remove and re-add a job.
   */
  async enforce(job: Job<{ leaseId: string }>, token?: string): Promise<void> {
    // The common case first, in one round trip: an active lease whose time is up.
    const expired = await this.leases.claimExpired(job.data.leaseId);
    if (expired) return this.revoke(job, expired, 'expired');
    const lease = await this.leases.get(job.data.leaseId);
    if (!lease) return;
    let claimed: LeaseRow | undefined;
    let reason: RevokeReason;
    switch (lease.state) {
      case 'active':
        // Not expired by the database's clock (renewed since the job was scheduled): wait again.
        return this.delayUntil(job, token, lease.expires_at.getTime());
      case 'pending':
        // Abandoned when its issuing process is gone (its issuer lock is free) or it is older than
        // pending_timeout. Otherwise its issue is still under way: done here, and the reconciler
        // enqueues it again if that changes (a delayed job would hold the job id until the timeout).
        claimed = await this.leases.claimAbandoned(lease.id, this.config.pending_timeout);
        if (!claimed) return;
        reason = 'abandoned';
        break;
      case 'revoking':
      case 'revoke_failed':
        claimed = lease;
        reason = !lease.activated_at ? 'abandoned' : lease.expires_at.getTime() <= lease.updated_at.getTime() ? 'expired' : 'revoked';
        break;
      default:
        return; // revoked or failed: nothing left to do
    }
    return this.revoke(job, claimed, reason);
  }

  private async revoke(job: Job, claimed: LeaseRow, reason: RevokeReason): Promise<void> {
    try {
      await this.revoker.revoke(claimed, reason, null);
    } catch (err) {
      const error = leaseError(err);
      const permanent = err instanceof PluginError && !err.retryable;
      if (permanent || job.attemptsMade + 1 >= (job.opts.attempts ?? 1)) {
        await this.revoker.giveUp(claimed, error);
        throw new UnrecoverableError(error.detail);
      }
      await this.leases.recordError(claimed.id, error);
      throw err;
    }
  }

  async bulk(job: Job<{ leaseIds: string[] }>): Promise<void> {
    await this.service.revokeMany(job.data.leaseIds, 'bulk', null);
  }

  private async delayUntil(job: Job, token: string | undefined, timestamp: number): Promise<never> {
    // Never less than a moment ahead: if this host's clock runs ahead of the database's, a lease the
    // database does not yet consider expired must not make the job spin.
    await job.moveToDelayed(Math.max(timestamp, Date.now() + 250), token);
    throw new DelayedError();
  }
}
