import { Logger } from '@nestjs/common';
import { LeaseTerms, PluginError, RevokeUsersRequest } from '../../../plugins/contract';
import { AuditDenials } from '../../../src/audit/audit-denials';
import { AuditEvent } from '../../../src/audit/audit.log';
import { TesseraConfig } from '../../../src/config/config.loader';
import { Identity } from '../../../src/identity/identity';
import { DEFER_MIN_MS, EnqueueOptions } from '../../../src/jobs/job.producer';
import { JobName, JobPayloads } from '../../../src/jobs/jobs';
import { Metrics } from '../../../src/metrics/metrics';
import { Clock } from '../../../src/common/clock';
import { LeaseError } from '../../../src/leases/lease-errors';
import { LeaseFilter, LeaseRow, LeaseState, RevokeReason } from '../../../src/leases/lease.model';
import { InsertRefusal, LeaseRepository, NewLease } from '../../../src/leases/lease.repository';
import { LeaseRevoker } from '../../../src/leases/lease-revoker';
import { LeaseJobs } from '../../../src/leases/lease.jobs';
import { LeaseService } from '../../../src/leases/lease.service';
import { Transition, TRANSITIONS, finishedState, isExpired, may, revokeReasonAfter } from '../../../src/leases/lease-state';
import { PluginHost, revokeEach } from '../../../src/plugin-host/plugin-host';
import { RoleSettingsResolver } from '../../../src/plugin-host/role-settings';
import { PolicyService } from '../../../src/policy/policy.service';

type Public<T> = { [K in keyof T]: T[K] };

// The services log what they hand to the workers; the tests assert it instead.
Logger.overrideLogger(false);

export class FakeClock extends Clock {
  constructor(private t = Date.parse('2030-01-01T00:00:00Z')) {
    super();
  }
  now(): Date {
    return new Date(this.t);
  }
  advance(seconds: number): void {
    this.t += seconds * 1000;
  }
}

/**
 * LeaseRepository in memory: every transition checks its from-states with lease-state.ts, as the SQL
 * does, and the audited ones record their event only when they happen. Time is the fake clock's.
 */
export class InMemoryLeases implements Public<LeaseRepository> {
  readonly rows = new Map<string, LeaseRow>();
  /** Pending leases whose issuing process is gone (its issuer lock is free). */
  readonly issuerGone = new Set<string>();

  constructor(
    private readonly clock: Clock,
    private readonly audit: FakeAudit,
  ) {}

  async onApplicationShutdown(): Promise<void> {}

  async insertPending(l: NewLease, caps: { role: number; owner: number }): Promise<InsertRefusal | undefined> {
    const live = [...this.rows.values()].filter((r) => r.state === 'pending' || r.state === 'active');
    if (live.filter((r) => r.role === l.role).length >= caps.role) return 'role_limit';
    if (live.filter((r) => r.owner === l.owner && r.owner_issuer === l.ownerIssuer).length >= caps.owner) return 'owner_limit';
    const now = this.clock.now();
    this.rows.set(l.id, {
      id: l.id, role: l.role, connection: l.connection, plugin: l.plugin, account: l.account, owner: l.owner,
      owner_issuer: l.ownerIssuer, run_id: l.runId, state: 'pending', created_at: now, updated_at: now,
      expires_at: l.expiresAt, max_expires_at: l.maxExpiresAt, activated_at: null, revoked_at: null,
      last_error: null, last_error_code: null, issuer_lock: 1, revoke_reason: null, revocable: l.revocable,
    });
    return undefined;
  }

  async activate(id: string, event: AuditEvent): Promise<boolean> {
    return this.move('activate', id, event, (r) => ({ state: 'active', activated_at: this.clock.now() })) !== undefined;
  }

  async renew(id: string, expiresAt: Date, event: AuditEvent): Promise<LeaseRow | undefined> {
    return this.move('renew', id, event, (r) => (isExpired(r, this.clock.now()) ? undefined : { expires_at: expiresAt }));
  }

  async claimExpired(id: string, limit: number): Promise<LeaseRow[]> {
    const connection = this.rows.get(id)?.connection;
    const due = (r: LeaseRow) => r.connection === connection && may('expire', r.state) && isExpired(r, this.clock.now());
    const own = [...this.rows.values()].filter((r) => r.id === id && due(r));
    const neighbours = [...this.rows.values()].filter((r) => r.id !== id && due(r)).sort((a, b) => a.expires_at.getTime() - b.expires_at.getTime());
    return [...own, ...neighbours].slice(0, limit).map((r) => this.toRevoking('expire', r.id)!);
  }

  async expiryStatus(id: string, seconds: number): Promise<{ state: LeaseState; held: boolean } | undefined> {
    const r = this.rows.get(id);
    return r && { state: r.state, held: await this.heldByExpiryClaim(id, seconds) };
  }

  async heldByExpiryClaim(id: string, seconds: number): Promise<boolean> {
    const r = this.rows.get(id);
    if (!r) return false;
    return r.state === 'revoking' && r.revoke_reason === 'expired' && r.last_error === null && r.updated_at.getTime() > this.clock.now().getTime() - seconds * 1000;
  }

  async beginRevoke(id: string): Promise<LeaseRow | undefined> {
    return this.toRevoking('beginRevoke', id);
  }

  async beginRevokeMatching(filter: LeaseFilter, reason: 'owner' | 'bulk'): Promise<string[]> {
    const ids = [...this.rows.values()].filter((r) => matches(r, filter) && may('beginRevokeMatching', r.state)).map((r) => r.id);
    for (const id of ids) this.toRevoking('beginRevokeMatching', id, undefined, reason);
    return ids;
  }

  async beginRevokeMatchingExactly(filter: LeaseFilter, reason: 'owner' | 'bulk', expected: number): Promise<string[] | undefined> {
    if ((await this.countMatching(filter)) !== expected) return undefined;
    return this.beginRevokeMatching(filter, reason);
  }

  async countMatching(filter: LeaseFilter): Promise<number> {
    return [...this.rows.values()].filter((r) => matches(r, filter) && may('beginRevokeMatching', r.state)).length;
  }

  async countActiveByRole(): Promise<Array<{ role: string; plugin: string; count: number }>> {
    const counts = new Map<string, { role: string; plugin: string; count: number }>();
    for (const r of this.rows.values()) {
      if (r.state !== 'active') continue;
      const key = `${r.role}\u0000${r.plugin}`;
      const entry = counts.get(key) ?? { role: r.role, plugin: r.plugin, count: 0 };
      entry.count++;
      counts.set(key, entry);
    }
    return [...counts.values()];
  }

  async failIssue(id: string, error: LeaseError): Promise<LeaseRow | undefined> {
    return this.toRevoking('failIssue', id, undefined, undefined, error);
  }

  async abandon(id: string, pendingTimeoutSeconds: number): Promise<LeaseRow | undefined> {
    const old = (r: LeaseRow) => r.created_at.getTime() <= this.clock.now().getTime() - pendingTimeoutSeconds * 1000;
    return this.toRevoking('abandon', id, (r) => old(r) || this.issuerGone.has(r.id), undefined, { code: 'abandoned', detail: 'abandoned while pending' });
  }

  async finish(id: string, event: AuditEvent): Promise<LeaseRow | undefined> {
    return this.move('finish', id, event, (r) => {
      const state = finishedState(r);
      return { state, revoked_at: this.clock.now(), ...(state === 'revoked' && { last_error: null, last_error_code: null }) };
    });
  }

  async finishMany(items: readonly { id: string; event: AuditEvent }[]): Promise<LeaseRow[]> {
    const finished: LeaseRow[] = [];
    for (const { id, event } of items) {
      const row = await this.finish(id, event);
      if (row) finished.push(row);
    }
    return finished;
  }

  async recordErrors(errors: readonly { id: string; error: LeaseError }[]): Promise<void> {
    for (const { id, error } of errors) await this.recordError(id, error);
  }

  async markRevokeFailed(id: string, error: LeaseError, event: AuditEvent): Promise<boolean> {
    return this.move('markRevokeFailed', id, event, () => ({ state: 'revoke_failed', last_error: error.detail, last_error_code: error.code })) !== undefined;
  }

  async get(id: string): Promise<LeaseRow | undefined> {
    const row = this.rows.get(id);
    return row && { ...row };
  }

  async recordError(id: string, error: LeaseError): Promise<void> {
    const row = this.rows.get(id);
    if (row) Object.assign(row, { last_error: error.detail, last_error_code: error.code });
  }

  async list(filter: LeaseFilter, limit: number): Promise<LeaseRow[]> {
    return [...this.rows.values()].filter((r) => matches(r, filter)).slice(0, limit);
  }

  async findDue(): Promise<string[]> {
    return [...this.rows.values()].filter((r) => r.state !== 'revoked' && r.state !== 'failed').map((r) => r.id);
  }

  async countLive(): Promise<{ role: string; plugin: string; state: string; count: number }[]> {
    const counts = new Map<string, { role: string; plugin: string; state: string; count: number }>();
    for (const r of this.rows.values()) {
      if (!['pending', 'active', 'revoking', 'revoke_failed'].includes(r.state)) continue;
      const key = JSON.stringify([r.role, r.plugin, r.state]);
      const c = counts.get(key) ?? { role: r.role, plugin: r.plugin, state: r.state, count: 0 };
      c.count++;
      counts.set(key, c);
    }
    return [...counts.values()];
  }

  async countRevokeFailed(): Promise<number> {
    return [...this.rows.values()].filter((r) => r.state === 'revoke_failed').length;
  }

  /** Puts a lease straight into a state, for tests that start there. */
  force(id: string, patch: Partial<LeaseRow>): void {
    Object.assign(this.rows.get(id)!, patch);
  }

  private move(transition: Transition, id: string, event: AuditEvent | undefined, change: (r: LeaseRow) => Partial<LeaseRow> | undefined): LeaseRow | undefined {
    const row = this.rows.get(id);
    if (!row || !may(transition, row.state)) return undefined;
    const patch = change(row);
    if (!patch) return undefined;
    Object.assign(row, patch, { updated_at: this.clock.now() });
    if (event) this.audit.events.push(event);
    return { ...row };
  }

  private toRevoking(transition: Transition, id: string, when?: (r: LeaseRow) => boolean, reason?: RevokeReason, error?: LeaseError) {
    return this.move(transition, id, undefined, (r) => {
      if (when && !when(r)) return undefined;
      const given = (TRANSITIONS[transition] as { reason?: RevokeReason }).reason ?? reason!;
      return { state: 'revoking', revoke_reason: revokeReasonAfter(r, given), ...(error && { last_error: error.detail, last_error_code: error.code }) };
    });
  }
}

function matches(r: LeaseRow, f: LeaseFilter): boolean {
  return (
    (f.role === undefined || r.role === f.role) &&
    (f.connection === undefined || r.connection === f.connection) &&
    (f.state === undefined || r.state === f.state) &&
    (f.runId === undefined || r.run_id === f.runId) &&
    (f.owner === undefined || r.owner === f.owner) &&
    (f.ownerIssuer === undefined || r.owner_issuer === f.ownerIssuer)
  );
}

export class FakeAudit {
  readonly events: AuditEvent[] = [];
  async append(event: AuditEvent): Promise<void> {
    this.events.push(event);
  }
  async appendMany(events: AuditEvent[]): Promise<void> {
    this.events.push(...events);
  }
  ofType(type: AuditEvent['type']): AuditEvent[] {
    return this.events.filter((e) => e.type === type);
  }
}

/** A target that keeps its accounts in a set; `failWith` makes its next calls of one verb throw. */
export class FakeTarget {
  readonly accounts = new Map<string, Date>();
  readonly failures: Partial<Record<'createUser' | 'renewUser' | 'revokeUser', PluginError>> = {};
  /** Runs inside createUser, after the account exists (to race the issue). */
  duringCreate?: () => Promise<void>;
  readonly maxUsernameLength = 63;
  readonly capabilities = { staticStrategies: [], targetExpiry: true, keyOverlap: false, batchRevoke: true };

  async createUser(req: { username: string; password: string; expiresAt: Date }) {
    if (this.failures.createUser) throw this.failures.createUser;
    this.accounts.set(req.username, req.expiresAt);
    await this.duringCreate?.();
    return { credentials: { username: req.username, password: req.password } };
  }

  async renewUser(req: { username: string; expiresAt: Date }) {
    if (this.failures.renewUser) throw this.failures.renewUser;
    if (!this.accounts.has(req.username)) throw new PluginError(`account ${req.username} does not exist`, false, 'account_not_found');
    this.accounts.set(req.username, req.expiresAt);
    return {};
  }

  /** Accounts whose removal fails with the given error (their neighbours' succeed). */
  readonly failingAccounts = new Map<string, PluginError>();
  /** The batch calls made, one list of usernames each. */
  readonly batches: string[][] = [];

  /** Every account revokeUser was asked to remove, in order. */
  readonly revokeCalls: string[] = [];

  async revokeUser(req: { username: string }) {
    this.revokeCalls.push(req.username);
    if (this.failures.revokeUser) throw this.failures.revokeUser;
    const failure = this.failingAccounts.get(req.username);
    if (failure) throw failure;
    this.accounts.delete(req.username);
    return {};
  }

  /** The batch verb, as the plugin host gives it to plugins without one. */
  async revokeUsers(req: RevokeUsersRequest) {
    this.batches.push(req.users.map((u) => u.username));
    return revokeEach(this, req);
  }
}

/** The job producer: remembers what was enqueued; `down` makes it fail like Redis gone. */
export class FakeJobs {
  readonly enqueued: { name: JobName; payload: unknown; opts: EnqueueOptions<JobName> }[] = [];
  down = false;

  /** As the producer's: only far-off jobs are held back for a shared add. */
  defers(opts: Pick<EnqueueOptions<JobName>, 'runAt' | 'reschedule'>): boolean {
    return !opts.reschedule && !!opts.runAt && opts.runAt.getTime() - Date.now() >= DEFER_MIN_MS;
  }

  async enqueue<N extends JobName>(name: N, payload: JobPayloads[N], opts: EnqueueOptions<N> = {}): Promise<string> {
    if (this.down) throw new Error('queue unavailable');
    this.enqueued.push({ name, payload, opts: opts as EnqueueOptions<JobName> });
    return `${name}-${this.enqueued.length}`;
  }
}

export const ROLE = 'app-ro';
export const workload = (name = 'api'): Identity => ({ subject: `spiffe://test.example/ns/app/${name}`, issuer: 'test', operator: false, claims: {} });
export const operator: Identity = { subject: 'spiffe://test.example/ops/carol', issuer: 'test', operator: true, claims: {} };

/** LeaseService, LeaseRevoker and LeaseJobs over in-memory fakes. */
export function leaseWorld(opts: { maxTtl?: number; policyMaxTtl?: number; roleCap?: number; terms?: LeaseTerms } = {}) {
  const clock = new FakeClock();
  const audit = new FakeAudit();
  const leases = new InMemoryLeases(clock, audit);
  const target = new FakeTarget();
  const jobs = new FakeJobs();
  const metrics = new Metrics();
  const config = {
    roles: new Map([[ROLE, { name: ROLE, connection: 'target', plugin: 'postgres', defaultTtl: 300, maxTtl: opts.maxTtl ?? 3600, settings: {}, terms: opts.terms }]]),
    limits: { max_active_leases_per_role: opts.roleCap ?? 100, max_active_leases_per_owner: 100 },
    pending_timeout: 60,
    identity: { issuers: [{ name: 'test', type: 'jwt-svid', trust_domain: 'test.example' }] },
  } as unknown as TesseraConfig;
  const plugins = { for: () => target } as unknown as PluginHost;
  const policy = {
    canIssue: (identity: Identity, role: string) =>
      identity.subject.includes('/ns/app/') && role === ROLE ? { allowed: true, policy: 'app', maxTtl: opts.policyMaxTtl } : { allowed: false },
  } as unknown as PolicyService;
  const roleSettings = { forLease: () => ({}), termsForLease: () => ({ renewable: true, revocable: true }) } as unknown as RoleSettingsResolver;
  const repo = leases as unknown as LeaseRepository;
  const producer = jobs as never;
  const revoker = new LeaseRevoker(repo, plugins, roleSettings, producer, metrics, clock);
  const service = new LeaseService(config, repo, revoker, plugins, policy, audit as never, producer, metrics, clock, new AuditDenials(config, audit as never, metrics));
  const leaseJobs = new LeaseJobs(config, clock, repo, revoker, service);
  return { clock, leases, target, jobs, audit, metrics, service, revoker, leaseJobs };
}
