import { Inject, Injectable, Logger } from '@nestjs/common';
import { DEFAULT_LEASE_TERMS, PluginError } from '../../plugins/contract';
import { AuditDenials } from '../audit/audit-denials';
import { AuditLog } from '../audit/audit.log';
import { DomainError } from '../common/errors';
import { CONFIG } from '../config/config.module';
import { TesseraConfig } from '../config/config.loader';
import { Identity } from '../identity/identity';
import { JobProducer } from '../jobs/job.producer';
import { JobName } from '../jobs/jobs';
import { Metrics } from '../metrics/metrics';
import { PluginHost } from '../plugin-host/plugin-host';
import { roleForLease } from '../plugin-host/role-settings';
import { PolicyService } from '../policy/policy.service';
import { Clock } from '../common/clock';
import { IssuedLease, LeaseFilter, LeasePage, LeaseRow, LeaseState, LeaseView, leaseView } from './lease.model';
import { LeaseRepository } from './lease.repository';
import { leaseError } from './lease-errors';
import { ownerIssuers } from './owner-issuers';
import { LeaseRevoker } from './lease-revoker';
import { TRANSITIONS, checkRenewable, renewedExpiry, revokeStep } from './lease-state';
import { LEASE_ID, newAccountName, newLeaseId, newPassword } from './names';
import { decodeCursor, encodeCursor } from './lease-cursor';

/** What an operator's bulk revoke matches by. */
type BulkFilter = Pick<LeaseFilter, 'role' | 'connection' | 'owner' | 'ownerIssuer' | 'runId'>;

const notFound = () => new DomainError('not_found', 'lease_not_found', 'no such lease');
const INLINE_REVOKE_CONCURRENCY = 8;

@Injectable()
export class LeaseService {
  private readonly log = new Logger(LeaseService.name);

  constructor(
    @Inject(CONFIG) private readonly config: TesseraConfig,
    private readonly leases: LeaseRepository,
    private readonly revoker: LeaseRevoker,
    private readonly plugins: PluginHost,
    private readonly policy: PolicyService,
    private readonly audit: AuditLog,
    private readonly jobs: JobProducer,
    private readonly metrics: Metrics,
    @Inject(Clock) private readonly clock: Clock,
    private readonly denials: AuditDenials,
  ) {}

  /**
   * Issues a credential. The lease row is written `pending` before the account exists, so a crash at
   * any later point leaves a record the reconciler cleans up.
   */
  async issue(identity: Identity, roleName: string, input: { ttl?: number; runId?: string }): Promise<IssuedLease> {
    // Policy first: a workload learns nothing about which roles exist beyond those it may lease.
    // (Policies can name only configured roles, so an allowed role always exists.)
    const decision = this.policy.canIssue(identity, roleName);
    const role = this.config.roles.get(roleName);
    if (!decision.allowed) {
      if (identity.operator && !role) throw new DomainError('not_found', 'role_not_found', `no role named ${JSON.stringify(roleName)}`);
      await this.deny(identity, 403, 'creds', roleName);
      throw new DomainError('forbidden', 'policy_denied', `policy does not allow ${identity.subject} to lease ${JSON.stringify(roleName)}`);
    }
    if (!role) throw new DomainError('not_found', 'role_not_found', `no role named ${JSON.stringify(roleName)}`);
    const issueTimer = this.metrics.issueSeconds.startTimer({ plugin: role.plugin });
    const cap = Math.min(role.maxTtl, decision.maxTtl ?? Infinity);
    const ttl = Math.min(input.ttl ?? role.defaultTtl, cap);
    const terms = role.terms ?? DEFAULT_LEASE_TERMS;
    if (terms.minTtl !== undefined && ttl < terms.minTtl) {
      const why = cap < terms.minTtl ? `the policy allows at most ${cap}s` : `ask for a ttl of ${terms.minTtl}s or more`;
      throw new DomainError('invalid', 'ttl_too_short', `role ${role.name} issues credentials that live at least ${terms.minTtl}s; ${why}`);
    }
    const now = this.clock.now().getTime();
    const expiresAt = new Date(now + ttl * 1000);
    // A credential that cannot be renewed ends at its expiry: that is its max too.
    const maxExpiresAt = terms.renewable ? new Date(now + cap * 1000) : expiresAt;
    const id = newLeaseId();
    const account = newAccountName(role.name, this.plugins.for(role.connection).maxUsernameLength);
    const password = newPassword();

    const { max_active_leases_per_role: roleCap, max_active_leases_per_owner: ownerCap } = this.config.limits;
    const refused = await this.leases.insertPending({
      id,
      role: role.name,
      connection: role.connection,
      plugin: role.plugin,
      account,
      owner: identity.subject,
      ownerIssuer: identity.issuer,
      runId: input.runId ?? null,
      expiresAt,
      maxExpiresAt,
      revocable: terms.revocable,
    }, { role: roleCap, owner: ownerCap });
    if (refused === 'role_limit') {
      throw new DomainError('rate_limited', 'role_lease_limit', `role ${role.name} has ${roleCap} live leases, its limit; revoke some or raise limits.max_active_leases_per_role`);
    }
    if (refused === 'owner_limit') {
      throw new DomainError('rate_limited', 'owner_lease_limit', `you hold ${ownerCap} live leases, the limit per workload; revoke some or raise limits.max_active_leases_per_owner`);
    }

    let credentials: Record<string, string | number>;
    try {
      ({ credentials } = await this.plugins.for(role.connection).createUser({ username: account, password, expiresAt, role: role.settings, leaseId: id, subject: identity.subject, issuer: identity.issuer }));
    } catch (err) {
      this.metrics.issueFailures.inc({ role: role.name });
      await this.cleanUpFailedIssue(id, identity, err);
      throw this.targetError(err, 'issue', id);
    }

    const activated = await this.leases.activate(id, {
      type: 'lease.issued',
      actor: identity.subject,
      leaseId: id,
      detail: { role: role.name, account, ttl_seconds: ttl, expires_at: expiresAt.toISOString(), policy: decision.policy, run_id: input.runId ?? null },
    });
    if (!activated) {
      // The lease was taken from us while the target worked: the reconciler judged it abandoned
      // (older than pending_timeout), or a bulk revoke matched it. Their clean-up may have run before
      // our CREATE committed, so remove the account once more; the caller gets no credential.
      // Only where revoking withdraws anything: an STS credential has no account to remove.
      if (terms.revocable) {
        await this.plugins
          .for(role.connection)
          .revokeUser({ username: account, role: role.settings })
          .catch(() => this.log.warn(`could not remove ${account} after its lease was revoked during issue; the lease is ${id}`));
      }
      throw new DomainError('unavailable', 'issue_interrupted', 'the lease was revoked or timed out while it was being issued; try again');
    }
    // A far-off expiry's job is added with those of the issues around this one, and the answer does not
    // wait for it: the lease row is the record, and the reconciler enqueues any job that never reached
    // Redis. Any other (a short lease, shutdown begun, Redis behind) is in Redis before the answer.
    const deferred = this.jobs.defers({ runAt: expiresAt });
    const scheduled = this.scheduleExpiry(id, expiresAt, false, deferred);
    if (!deferred) await scheduled;
    this.metrics.leasesIssued.inc({ role: role.name });
    issueTimer();
    return {
      lease_id: id,
      role: role.name,
      plugin: role.plugin,
      credentials,
      ttl_seconds: ttl,
      expires_at: expiresAt.toISOString(),
      max_expires_at: maxExpiresAt.toISOString(),
      renewable: expiresAt < maxExpiresAt,
    };
  }

  async get(identity: Identity, id: string): Promise<LeaseView> {
    return leaseView(await this.visible(identity, id), identity.operator);
  }

  async list(identity: Identity, query: { role?: string; state?: LeaseState; runId?: string; owner?: string; limit: number; cursor?: string }): Promise<LeasePage> {
    const filter: LeaseFilter = { role: query.role, state: query.state, runId: query.runId, owner: query.owner };
    if (!identity.operator) {
      // A workload sees only its own leases, whatever it asks for.
      if (query.owner !== undefined && query.owner !== identity.subject) return { items: [], next_cursor: null };
      filter.owner = identity.subject;
      filter.ownerIssuer = identity.issuer;
    }
    const rows = await this.leases.list(filter, query.limit + 1, query.cursor ? decodeCursor(query.cursor) : undefined);
    const page = rows.slice(0, query.limit);
    const last = page[page.length - 1];
    return {
      items: page.map((row) => leaseView(row, identity.operator)),
      next_cursor: rows.length > query.limit && last ? encodeCursor(last) : null,
    };
  }

  async renew(identity: Identity, id: string, increment: number | undefined): Promise<LeaseView> {
    const lease = await this.visible(identity, id);
    const now = this.clock.now();
    checkRenewable(lease, now);
    const role = roleForLease(this.config, lease);
    if (!role) throw new DomainError('conflict', 'role_removed', `role ${lease.role} is no longer configured for this lease's connection`);
    if (role.terms?.renewable === false) {
      throw new DomainError('conflict', 'not_renewable', `leases of role ${role.name} cannot be renewed (the target cannot extend the credential); lease a new one before ${lease.expires_at.toISOString()}`);
    }
    const step = increment ?? role.defaultTtl;
    const expiresAt = renewedExpiry(lease, now, step);
    // The target learns the new expiry first; if it refuses, nothing changes. The lease row is then
    // moved only if it is still active and unexpired, so an expiry or revoke that won meanwhile stands
    // (the target's later VALID UNTIL is harmless: the account is being dropped).
    try {
      await this.plugins.for(lease.connection).renewUser({ username: lease.account, expiresAt, role: role.settings });
    } catch (err) {
      if (err instanceof PluginError && err.code === 'account_not_found') {
        const claimed = await this.leases.beginRevoke(id);
        if (claimed) await this.revoker.revokeOrDefer(claimed, null);
        throw new DomainError('conflict', 'account_missing', 'the account no longer exists on the target; the lease has been revoked');
      }
      throw this.targetError(err, 'renew', id);
    }
    const row = await this.leases.renew(id, expiresAt, {
      type: 'lease.renewed',
      actor: identity.subject,
      leaseId: id,
      detail: { role: lease.role, expires_at: expiresAt.toISOString(), increment_seconds: step },
    });
    if (!row) throw new DomainError('conflict', 'lease_not_active', 'the lease expired or was revoked while it was being renewed');
    await this.scheduleExpiry(id, row.expires_at, true);
    return leaseView(row, identity.operator);
  }

  /** Revokes one lease now. 'revoking' means the target was unreachable and workers keep retrying. */
  async revoke(identity: Identity, id: string): Promise<{ state: LeaseState }> {
    const lease = await this.visible(identity, id);
    if (revokeStep(lease.state) === 'done') return { state: lease.state };
    const claimed = (await this.leases.beginRevoke(id)) ?? (await this.leases.get(id));
    if (!claimed || claimed.state !== 'revoking') return { state: claimed?.state ?? lease.state };
    return { state: await this.revoker.revokeOrDefer(claimed, identity.subject) };
  }

  /** Workload completion: the caller's own leases, all or one run's. */
  async revokeOwned(identity: Identity, runId: string | undefined): Promise<{ revoked: number }> {
    const ids = await this.leases.beginRevokeMatching({ owner: identity.subject, ownerIssuer: identity.issuer, runId }, 'owner');
    await this.revokeMany(ids, identity.subject);
    return { revoked: ids.length };
  }

  /**
   * A signed workload.completed event: the subject's leases (all, or one run's) under its issuer only
   * (see ownerIssuers), so the same subject emitted by another issuer keeps its leases.
   */
  async completeWorkload(owner: { subject: string; issuer?: string }, runId: string | undefined, actor: string): Promise<{ revoked: number }> {
    const ids: string[] = [];
    for (const ownerIssuer of ownerIssuers(this.config, owner.subject, owner.issuer)) {
      ids.push(...(await this.leases.beginRevokeMatching({ owner: owner.subject, ownerIssuer, runId }, 'owner')));
    }
    await this.revokeMany(ids, actor);
    return { revoked: ids.length };
  }

  /** How many leases a bulk revoke with this filter would revoke now (what the console shows before the operator confirms). */
  async countBulkRevoke(filter: BulkFilter): Promise<{ matched: number }> {
    return { matched: await this.leases.countMatching(filter) };
  }

  /**
   * What a bulk revoke with this filter would revoke now: the count, and the newest `limit` of those
   * leases (the same filter, the same states) for the operator to look at before confirming.
   */
  async previewBulkRevoke(filter: BulkFilter, limit: number): Promise<{ matched: number; items: LeaseView[] }> {
    const states = TRANSITIONS.beginRevokeMatching.from as readonly LeaseState[];
    const [matched, pages] = await Promise.all([this.leases.countMatching(filter), Promise.all(states.map((state) => this.leases.list({ ...filter, state }, limit)))]);
    const rows = pages.flat().sort((a, b) => b.created_at.getTime() - a.created_at.getTime() || (a.id < b.id ? 1 : a.id > b.id ? -1 : 0));
    return { matched, items: rows.slice(0, limit).map((row) => leaseView(row, true)) };
  }

  /** Active leases by role and plugin, and how many leases are revoke_failed: an operator's overview. */
  async summary(): Promise<{ active: Array<{ role: string; plugin: string; count: number }>; revoke_failed: number }> {
    const [active, revokeFailed] = await Promise.all([this.leases.countActiveByRole(), this.leases.countRevokeFailed()]);
    return { active, revoke_failed: revokeFailed };
  }

  /**
   * Operator bulk revoke: leases move to `revoking` now; a job removes the accounts. With `expected`
   * (the count the operator confirmed), nothing is revoked unless the filter matches exactly that many.
   */
  async bulkRevoke(
    identity: Identity,
    filter: BulkFilter,
    opts: { expected?: number } = {},
  ): Promise<{ job_id: string; matched: number }> {
    let ids: string[];
    if (opts.expected === undefined) ids = await this.leases.beginRevokeMatching(filter, 'bulk');
    else {
      const exactly = await this.leases.beginRevokeMatchingExactly(filter, 'bulk', opts.expected);
      if (!exactly) {
        const { matched } = await this.countBulkRevoke(filter);
        throw new DomainError('conflict', 'bulk_revoke_changed', `${matched} leases match now, not the ${opts.expected} confirmed; nothing was revoked`);
      }
      ids = exactly;
    }
    const requestId = newLeaseId().slice(4);
    await this.audit.append({
      type: 'lease.bulk_revoke',
      actor: identity.subject,
      detail: { request_id: requestId, matched: ids.length, filter: { role: filter.role ?? null, connection: filter.connection ?? null, owner: filter.owner ?? null, owner_issuer: filter.ownerIssuer ?? null, run_id: filter.runId ?? null } },
    });
    try {
      return { job_id: await this.jobs.enqueue(JobName.BulkRevoke, { requestId, leaseIds: ids }), matched: ids.length };
    } catch {
      throw new DomainError('unavailable', 'queue_unavailable', `queue unavailable: ${ids.length} leases are marked revoking and the reconciler will revoke them`);
    }
  }

  /** Revokes leases already moved to `revoking`, a few at a time; what fails is left to the workers. */
  async revokeMany(ids: readonly string[], actor: string | null): Promise<void> {
    let next = 0;
    const worker = async () => {
      while (next < ids.length) {
        const row = await this.leases.get(ids[next++]);
        if (row?.state === 'revoking') await this.revoker.revokeOrDefer(row, actor);
      }
    };
    await Promise.all(Array.from({ length: Math.min(INLINE_REVOKE_CONCURRENCY, ids.length) }, worker));
  }

  /**
   * The lease's one delayed expiry job, enqueued or (`move`) moved in place. A lost enqueue is not an
   * error: the reconciler finds the lease from PostgreSQL.
   */
  private async scheduleExpiry(leaseId: string, expiresAt: Date, move = false, deferrable = false): Promise<void> {
    await this.jobs
      .enqueue(JobName.EnforceLease, { leaseId }, { runAt: expiresAt, reschedule: move, ...(deferrable && { deferrable }) })
      .catch((err: Error) => this.log.warn(`could not schedule the expiry of ${leaseId} (the reconciler will): ${err.message}`));
  }

  /**
   * Callers learn that the target failed and whether retrying may help; the target's own message (which
   * can name internals) goes to the log and to the lease's last_error_detail, which only operators see.
   */
  private targetError(err: unknown, step: string, leaseId: string): DomainError {
    if (err instanceof DomainError) return err;
    const detail = err instanceof Error ? err.message : String(err);
    this.log.warn(`${step} of lease ${leaseId} failed at the target: ${detail}`);
    if (err instanceof PluginError && !err.retryable) {
      return new DomainError('unavailable', 'target_rejected', `the target refused to ${step} the credential (lease ${leaseId}); an operator can see why`);
    }
    return new DomainError('unavailable', 'target_unavailable', `the target is unavailable; ${step} did not happen, try again`);
  }

  private async cleanUpFailedIssue(id: string, identity: Identity, err: unknown): Promise<void> {
    const row = await this.leases.failIssue(id, leaseError(err));
    // The plugin undid its own partial work; removing the account once more covers a connection lost
    // mid-create, where the plugin cannot know what the target did.
    if (row) await this.revoker.revokeOrDefer(row, identity.subject);
  }

  private async visible(identity: Identity, id: string): Promise<LeaseRow> {
    if (!LEASE_ID.test(id)) throw notFound();
    const lease = await this.leases.get(id);
    if (!lease) throw notFound();
    if (!identity.operator && (lease.owner !== identity.subject || lease.owner_issuer !== identity.issuer)) {
      // Someone else's lease is indistinguishable from one that does not exist, but it is audited.
      await this.deny(identity, 404, 'lease', id);
      throw notFound();
    }
    return lease;
  }

  private deny(identity: Identity, status: number, action: string, target: string): Promise<void> {
    return this.denials.denied({ status, action, target, identity });
  }
}
