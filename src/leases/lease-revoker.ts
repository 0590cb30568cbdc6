import { Inject, Injectable, Logger } from '@nestjs/common';
import { PluginError } from '../../plugins/contract';
import { AuditType } from '../audit/audit.log';
import { JobContext, PermanentJobError } from '../jobs/job-handler';
import { JobProducer } from '../jobs/job.producer';
import { JobName } from '../jobs/jobs';
import { Metrics } from '../metrics/metrics';
import { PluginHost } from '../plugin-host/plugin-host';
import { RoleSettingsResolver } from '../plugin-host/role-settings';
import { Clock } from '../common/clock';
import { LeaseError, leaseError } from './lease-errors';
import { LeaseRow, LeaseState, RevokeReason } from './lease.model';
import { LeaseRepository } from './lease.repository';
import { revokeReasonOf } from './lease-state';

const AUDIT_TYPE: Record<RevokeReason, AuditType> = {
  expired: 'lease.expired',
  revoked: 'lease.revoked',
  bulk: 'lease.revoked',
  owner: 'lease.revoked',
  abandoned: 'lease.abandoned',
  issue_failed: 'lease.issue_failed',
};

/**
 * Removes a lease's account from its target and records the outcome. Used by the API, the lease jobs
 * and (through them) the reconciler alike. The lease must already be `revoking` (or `revoke_failed`);
 * the plugin call is idempotent, so two revokers racing on one lease are harmless, and only one of them
 * writes the final state.
 */
@Injectable()
export class LeaseRevoker {
  private readonly log = new Logger(LeaseRevoker.name);

  constructor(
    private readonly leases: LeaseRepository,
    private readonly plugins: PluginHost,
    private readonly roleSettings: RoleSettingsResolver,
    private readonly jobs: JobProducer,
    private readonly metrics: Metrics,
    @Inject(Clock) private readonly clock: Clock,
  ) {}

  /**
   * One attempt at revoking, and the one retry policy for what follows a failure, wherever the attempt
   * is made. The failure is recorded on the lease; then:
   * - in a job (`job` given): a permanent error or the last attempt gives up — the lease becomes
   *   `revoke_failed` (listed, counted, audited, retried by the reconciler) and the job stops with a
   *   PermanentJobError; any other error is thrown so the queue retries it with backoff (JOBS);
   * - inline (the API, bulk and owner revokes): the queue takes over with a revoke job, whose attempts
   *   apply the rule above; the lease stays `revoking` meanwhile.
   * Returns the state the lease is left in.
   */
  async revokeOrDefer(lease: LeaseRow, actor: string | null, job?: JobContext): Promise<LeaseState> {
    try {
      return (await this.revoke(lease, actor)).state;
    } catch (err) {
      const error = leaseError(err);
      if (job && (job.lastAttempt || (err instanceof PluginError && !err.retryable))) {
        await this.giveUp(lease, error);
        throw new PermanentJobError(error.detail, { cause: err });
      }
      await this.leases.recordError(lease.id, error);
      if (job) throw err;
      await this.jobs
        .enqueue(JobName.EnforceLease, { leaseId: lease.id })
        .catch(() => this.log.warn(`queue unavailable; the reconciler will revoke ${lease.id}`));
      return 'revoking';
    }
  }

  private async revoke(lease: LeaseRow, actor: string | null): Promise<LeaseRow> {
    const reason = revokeReasonOf(lease);
    const role = this.roleSettings.forLease(lease);
    await this.plugins.for(lease.connection).revokeUser({ username: lease.account, role, issuedAt: lease.activated_at ?? undefined });
    const lateness = reason === 'expired' ? Math.max(0, this.clock.now().getTime() - lease.expires_at.getTime()) / 1000 : undefined;
    const finished = await this.leases.finish(lease.id, {
      type: AUDIT_TYPE[reason],
      actor,
      leaseId: lease.id,
      detail: { role: lease.role, account: lease.account, reason, ...(lateness !== undefined && { lateness_seconds: lateness }) },
    });
    // Nothing finished: another revoker got there first and wrote the event.
    if (!finished) return (await this.leases.get(lease.id)) ?? lease;
    this.metrics.revocations.inc({ reason });
    if (lateness !== undefined) this.metrics.expiryLateness.observe(lateness);
    return finished;
  }

  /** After the last attempt: the lease is listed for operators, counted, audited, and retried by the reconciler. */
  private async giveUp(lease: LeaseRow, error: LeaseError): Promise<void> {
    const marked = await this.leases.markRevokeFailed(lease.id, error, {
      type: 'lease.revoke_failed',
      actor: null,
      leaseId: lease.id,
      detail: { role: lease.role, account: lease.account, error: error.detail, code: error.code },
    });
    if (marked) this.metrics.revokeFailures.inc();
  }
}
