import { Inject, Injectable } from '@nestjs/common';
import { AuditLog, AuditType } from '../audit/audit.log';
import { Metrics } from '../metrics/metrics';
import { PluginHost } from '../plugin-host/plugin-host';
import { RoleSettingsResolver } from '../plugin-host/role-settings';
import { Database } from '../storage/database';
import { LeaseError } from './lease-errors';
import { LeaseRow } from './lease.model';
import { LeaseRepository } from './lease.repository';

export type RevokeReason = 'expired' | 'revoked' | 'bulk' | 'owner' | 'abandoned' | 'issue_failed';

const AUDIT_TYPE: Record<RevokeReason, AuditType> = {
  expired: 'lease.expired',
  revoked: 'lease.revoked',
  bulk: 'lease.revoked',
  owner: 'lease.revoked',
  abandoned: 'lease.abandoned',
  issue_failed: 'lease.issue_failed',
};

/**
 * Removes a lease's account from its target and records the outcome. Used by the API, the expiry
 * jobs and the reconciler alike. The lease must already be `revoking`; the plugin call is idempotent,
 * so two revokers racing on one lease are harmless, and only one of them writes the final state.
 */
@Injectable()
export class LeaseRevoker {
  constructor(
    @Inject(Database) private readonly db: Database,
    private readonly leases: LeaseRepository,
    private readonly plugins: PluginHost,
    private readonly roleSettings: RoleSettingsResolver,
    private readonly audit: AuditLog,
    private readonly metrics: Metrics,
  ) {}

  async revoke(lease: LeaseRow, reason: RevokeReason, actor: string | null): Promise<LeaseRow> {
    const role = this.roleSettings.forLease(lease);
    await this.plugins.for(lease.connection).revokeUser({ username: lease.account, role, issuedAt: lease.activated_at ?? undefined });
    const lateness = reason === 'expired' ? Math.max(0, Date.now() - lease.expires_at.getTime()) / 1000 : undefined;
    const finished = await this.audit.appendGuarded(this.leases.guards.finish(lease.id), {
      type: AUDIT_TYPE[reason],
      actor,
      leaseId: lease.id,
      detail: { role: lease.role, account: lease.account, reason, ...(lateness !== undefined && { lateness_seconds: lateness }) },
    });
    // Nothing finished: another revoker got there first and wrote the event.
    const done = finished && { row: LeaseRepository.fromJson(finished), lateness };
    if (!done) return (await this.leases.get(lease.id)) ?? lease;
    this.metrics.revocations.inc({ reason });
    if (done.lateness !== undefined) this.metrics.expiryLateness.observe(done.lateness);
    return done.row;
  }

  /** After the last attempt: the lease is listed for operators, counted, audited, and retried by the reconciler. */
  async giveUp(lease: LeaseRow, error: LeaseError): Promise<void> {
    const marked = await this.db.tx(async (tx) => {
      if (!(await this.leases.markRevokeFailed(lease.id, error, tx))) return false;
      await this.audit.append(
        { type: 'lease.revoke_failed', actor: null, leaseId: lease.id, detail: { role: lease.role, account: lease.account, error: error.detail, code: error.code } },
        tx,
      );
      return true;
    });
    if (marked) this.metrics.revokeFailures.inc();
  }
}
