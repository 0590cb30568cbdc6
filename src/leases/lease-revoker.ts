import { Inject, Injectable, Logger } from '@nestjs/common';
import { PluginError, RevokeUserOutcome } from '../../plugins/contract';
import { AuditEvent, AuditType } from '../audit/audit.log';
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
      this.metrics.revocations.inc({ plugin: lease.plugin, result: 'failed' });
      if (job) await this.failInJob(lease, err, job); // throws
      await this.leases.recordError(lease.id, leaseError(err));
      await this.defer(lease.id);
      return 'revoking';
    }
  }

  /**
   * Mass expiry: revokes the leases one expiry claim took (LeaseRepository.claimExpired), with one
   * batch call per connection (`revokeUsers`), then one state update with every finished lease's
   * event. Each lease's outcome is its own: the ones whose account is gone finish; the others are left
   * `revoking` with their error recorded and follow the one retry policy (revokeOrDefer): the job's own
   * lease (`job.leaseId`) as that job's failure (thrown, after everything else is recorded), each of
   * the others in a revoke job of its own.
   */
  async revokeClaimed(claimed: readonly LeaseRow[], job: { leaseId: string; ctx: JobContext }): Promise<void> {
    const failures: { lease: LeaseRow; err: unknown }[] = [];
    const done: { lease: LeaseRow; event: AuditEvent; lateness: number }[] = [];
    for (const [connection, leases] of groupBy(claimed, (l) => l.connection)) {
      let results: RevokeUserOutcome[];
      const withdrawn = leases.filter((l) => l.revocable !== false);
      try {
        const users = withdrawn.map((l) => ({ username: l.account, role: this.roleSettings.forLease(l), issuedAt: l.activated_at ?? undefined }));
        const outcomes = users.length ? (await this.plugins.for(connection).revokeUsers({ users })).results : [];
        // Leases the target cannot withdraw (STS) have nothing to remove: they end as they are.
        const byLease = new Map(withdrawn.map((l, i) => [l, outcomes[i]]));
        results = leases.map((l) => (l.revocable === false ? { username: l.account, ok: true as const } : byLease.get(l)!));
      } catch (err) {
        results = leases.map((l) => (l.revocable === false ? { username: l.account, ok: true as const } : { username: l.account, ok: false as const, error: err as PluginError }));
      }
      const now = this.clock.now().getTime();
      leases.forEach((lease, i) => {
        const outcome = results[i];
        if (!outcome?.ok) return void failures.push({ lease, err: outcome?.error ?? new PluginError(`no outcome for ${lease.account}`, true) });
        const reason = revokeReasonOf(lease);
        const lateness = Math.max(0, now - lease.expires_at.getTime()) / 1000;
        done.push({ lease, lateness, event: this.finishEvent(lease, null, reason, reason === 'expired' ? lateness : undefined) });
      });
    }
    const finished = new Set((await this.leases.finishMany(done.map((d) => ({ id: d.lease.id, event: d.event })))).map((r) => r.id));
    for (const d of done) {
      if (!finished.has(d.lease.id)) continue; // another revoker finished it and wrote its event
      const reason = revokeReasonOf(d.lease);
      this.metrics.revoked(d.lease.plugin, reason, reason === 'expired' ? d.lateness : undefined);
    }
    if (!failures.length) return;
    for (const f of failures) this.metrics.revocations.inc({ plugin: f.lease.plugin, result: 'failed' });
    await this.leases.recordErrors(failures.map((f) => ({ id: f.lease.id, error: leaseError(f.err) })));
    const own = failures.find((f) => f.lease.id === job.leaseId);
    for (const f of failures) if (f !== own) await this.defer(f.lease.id);
    if (own) await this.failInJob(own.lease, own.err, job.ctx);
  }

  /**
   * The retry policy in a job: a permanent error or the last attempt gives up — the lease becomes
   * `revoke_failed` (listed, counted, audited, retried by the reconciler) and the job stops with a
   * PermanentJobError; any other error is recorded and thrown so the queue retries it with backoff.
   */
  private async failInJob(lease: LeaseRow, err: unknown, job: JobContext): Promise<never> {
    const error = leaseError(err);
    if (job.lastAttempt || (err instanceof PluginError && !err.retryable)) {
      await this.giveUp(lease, error);
      throw new PermanentJobError(error.detail, { cause: err });
    }
    await this.leases.recordError(lease.id, error);
    throw err;
  }

  /** Hands a lease left `revoking` to a revoke job (whose attempts apply the retry policy). */
  private async defer(leaseId: string): Promise<void> {
    await this.jobs
      .enqueue(JobName.EnforceLease, { leaseId })
      .catch(() => this.log.warn(`queue unavailable; the reconciler will revoke ${leaseId}`));
  }

  private async revoke(lease: LeaseRow, actor: string | null): Promise<LeaseRow> {
    const reason = revokeReasonOf(lease);
    // A credential the target cannot withdraw (STS) has nothing to remove: the record ends, whatever the config says now.
    if (lease.revocable !== false) {
      const role = this.roleSettings.forLease(lease);
      await this.plugins.for(lease.connection).revokeUser({ username: lease.account, role, issuedAt: lease.activated_at ?? undefined });
    }
    const lateness = reason === 'expired' ? Math.max(0, this.clock.now().getTime() - lease.expires_at.getTime()) / 1000 : undefined;
    const finished = await this.leases.finish(lease.id, this.finishEvent(lease, actor, reason, lateness));
    // Nothing finished: another revoker got there first and wrote the event.
    if (!finished) return (await this.leases.get(lease.id)) ?? lease;
    this.metrics.revoked(lease.plugin, reason, lateness);
    return finished;
  }

  private finishEvent(lease: LeaseRow, actor: string | null, reason: RevokeReason, lateness: number | undefined): AuditEvent {
    // Credentials the target cannot withdraw one by one (STS) keep working until they expire: say so.
    const lives = (lease.revocable === false || !this.roleSettings.termsForLease(lease).revocable) && lease.activated_at !== null;
    return {
      type: AUDIT_TYPE[reason],
      actor,
      leaseId: lease.id,
      detail: {
        role: lease.role,
        account: lease.account,
        reason,
        ...(lateness !== undefined && { lateness_seconds: lateness }),
        ...(lives && { credential_revoked: false, credential_expires_at: lease.expires_at.toISOString() }),
      },
    };
  }

  /** After the last attempt: the lease is listed for operators, counted, audited, and retried by the reconciler. */
  private async giveUp(lease: LeaseRow, error: LeaseError): Promise<void> {
    const marked = await this.leases.markRevokeFailed(lease.id, error, {
      type: 'lease.revoke_failed',
      actor: null,
      leaseId: lease.id,
      detail: { role: lease.role, account: lease.account, error: error.detail, code: error.code },
    });
    if (marked) this.metrics.revocations.inc({ plugin: lease.plugin, result: 'revoke_failed' });
  }
}

function groupBy<T>(items: readonly T[], key: (item: T) => string): Map<string, T[]> {
  const groups = new Map<string, T[]>();
  for (const item of items) {
    const k = key(item);
    const group = groups.get(k);
    if (group) group.push(item);
    else groups.set(k, [item]);
  }
  return groups;
}
