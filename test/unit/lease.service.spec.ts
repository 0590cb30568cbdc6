import { PluginError } from '../../plugins/contract';
import { DomainError } from '../../src/common/errors';
import { JobName } from '../../src/jobs/jobs';
import { ROLE, leaseWorld, operator, workload } from './support/lease-fakes';

const api = workload('api');

async function refusal(p: Promise<unknown>): Promise<DomainError> {
  const err = await p.then(
    () => undefined,
    (e: unknown) => e,
  );
  if (!(err instanceof DomainError)) throw new Error(`expected a DomainError, got ${String(err)}`);
  return err;
}

describe('LeaseService (in-memory fakes)', () => {
  describe('issue', () => {
    it('writes the lease pending, creates the account, activates it with its event and schedules its expiry', async () => {
      const w = leaseWorld();
      const issued = await w.service.issue(api, ROLE, { ttl: 60, runId: 'run-1' });
      const row = w.leases.rows.get(issued.lease_id)!;
      expect(row).toMatchObject({ state: 'active', owner: api.subject, owner_issuer: 'test', run_id: 'run-1', revoke_reason: null });
      expect(w.target.accounts.has(row.account)).toBe(true);
      expect(issued.expires_at).toBe(new Date(w.clock.now().getTime() + 60_000).toISOString());
      expect(w.audit.ofType('lease.issued')).toEqual([expect.objectContaining({ actor: api.subject, leaseId: issued.lease_id })]);
      expect(w.jobs.enqueued).toEqual([{ name: JobName.EnforceLease, payload: { leaseId: issued.lease_id }, opts: { runAt: row.expires_at, reschedule: false, deferrable: true } }]);
    });

    it('caps the ttl at the role and policy max_ttl', async () => {
      const w = leaseWorld({ maxTtl: 600, policyMaxTtl: 120 });
      const issued = await w.service.issue(api, ROLE, { ttl: 3600 });
      expect(issued.ttl_seconds).toBe(120);
      expect(issued.max_expires_at).toBe(issued.expires_at);
      expect(issued.renewable).toBe(false);
    });

    it('is refused with 403 and audited when policy says no; nothing is written', async () => {
      const w = leaseWorld();
      const outsider = { ...api, subject: 'spiffe://test.example/ns/batch/x' };
      const err = await refusal(w.service.issue(outsider, ROLE, {}));
      expect(err).toMatchObject({ kind: 'forbidden', code: 'policy_denied' });
      expect(w.leases.rows.size).toBe(0);
      expect(w.audit.ofType('request.denied')).toHaveLength(1);
    });

    it('is refused with 429 at the role cap', async () => {
      const w = leaseWorld({ roleCap: 1 });
      await w.service.issue(api, ROLE, {});
      expect(await refusal(w.service.issue(api, ROLE, {}))).toMatchObject({ kind: 'rate_limited', code: 'role_lease_limit' });
    });

    it('a target that fails leaves the lease failed, its account removed and the failure audited (503)', async () => {
      const w = leaseWorld();
      w.target.failures.createUser = new PluginError('cannot reach the target', true);
      expect(await refusal(w.service.issue(api, ROLE, {}))).toMatchObject({ kind: 'unavailable', code: 'target_unavailable' });
      const [row] = w.leases.rows.values();
      expect(row).toMatchObject({ state: 'failed', revoke_reason: 'issue_failed', last_error_code: 'target_unavailable' });
      expect(w.audit.ofType('lease.issue_failed')).toHaveLength(1);
    });

    it('a lease taken while the target works (bulk revoke) gives no credential, and the account is removed', async () => {
      const w = leaseWorld();
      w.target.duringCreate = async () => void (await w.leases.beginRevokeMatching({ role: ROLE }, 'bulk'));
      expect(await refusal(w.service.issue(api, ROLE, {}))).toMatchObject({ code: 'issue_interrupted' });
      expect(w.target.accounts.size).toBe(0);
      expect(w.audit.ofType('lease.issued')).toEqual([]);
    });

    it('a lease taken while the target works, for a role whose credentials cannot be revoked (STS), asks the target to remove nothing', async () => {
      const w = leaseWorld({ terms: { renewable: false, revocable: false } });
      w.target.duringCreate = async () => void (await w.leases.beginRevokeMatching({ role: ROLE }, 'bulk'));
      expect(await refusal(w.service.issue(api, ROLE, {}))).toMatchObject({ code: 'issue_interrupted' });
      expect(w.target.revokeCalls).toEqual([]);
    });
  });

  describe('renew', () => {
    it('moves expires_at to min(now + increment, max) with its event, and moves the expiry job in place', async () => {
      const w = leaseWorld();
      const issued = await w.service.issue(api, ROLE, { ttl: 60 });
      w.clock.advance(30);
      const view = await w.service.renew(api, issued.lease_id, 120);
      expect(view.expires_at).toBe(new Date(w.clock.now().getTime() + 120_000).toISOString());
      expect(w.target.accounts.get(view.account)).toEqual(new Date(view.expires_at));
      expect(w.audit.ofType('lease.renewed')).toEqual([expect.objectContaining({ detail: expect.objectContaining({ increment_seconds: 120 }) })]);
      expect(w.jobs.enqueued.at(-1)).toEqual({ name: JobName.EnforceLease, payload: { leaseId: issued.lease_id }, opts: { runAt: new Date(view.expires_at), reschedule: true } });
      const capped = await w.service.renew(api, issued.lease_id, 999_999);
      expect(capped.expires_at).toBe(capped.max_expires_at);
    });

    it.each([['pending'], ['revoking'], ['revoked'], ['failed'], ['revoke_failed']] as const)('of a %s lease is 409 lease_not_active and changes nothing', async (state) => {
      const w = leaseWorld();
      const issued = await w.service.issue(api, ROLE, {});
      w.leases.force(issued.lease_id, { state });
      expect(await refusal(w.service.renew(api, issued.lease_id, 60))).toMatchObject({ kind: 'conflict', code: 'lease_not_active' });
      expect(w.audit.ofType('lease.renewed')).toEqual([]);
    });

    it('of an active lease past its expires_at is 409 lease_expired', async () => {
      const w = leaseWorld();
      const issued = await w.service.issue(api, ROLE, { ttl: 10 });
      w.clock.advance(10);
      expect(await refusal(w.service.renew(api, issued.lease_id, 60))).toMatchObject({ kind: 'conflict', code: 'lease_expired' });
    });

    it('when the account is gone from the target, revokes the lease and answers 409 account_missing', async () => {
      const w = leaseWorld();
      const issued = await w.service.issue(api, ROLE, {});
      w.target.accounts.clear();
      expect(await refusal(w.service.renew(api, issued.lease_id, 60))).toMatchObject({ kind: 'conflict', code: 'account_missing' });
      expect(w.leases.rows.get(issued.lease_id)).toMatchObject({ state: 'revoked', revoke_reason: 'revoked' });
    });
  });

  describe('revoke', () => {
    it('revokes an active lease: account gone, state revoked, audited with the caller as actor', async () => {
      const w = leaseWorld();
      const issued = await w.service.issue(api, ROLE, {});
      expect(await w.service.revoke(api, issued.lease_id)).toEqual({ state: 'revoked' });
      expect(w.target.accounts.size).toBe(0);
      expect(w.audit.ofType('lease.revoked')).toEqual([expect.objectContaining({ actor: api.subject, detail: expect.objectContaining({ reason: 'revoked' }) })]);
    });

    it.each([['revoked'], ['failed']] as const)('of a %s lease is idempotent: its state, no new event', async (state) => {
      const w = leaseWorld();
      const issued = await w.service.issue(api, ROLE, {});
      w.leases.force(issued.lease_id, { state });
      const before = w.audit.events.length;
      expect(await w.service.revoke(api, issued.lease_id)).toEqual({ state });
      expect(w.audit.events).toHaveLength(before);
    });

    it('of a pending lease is 409 lease_pending', async () => {
      const w = leaseWorld();
      const issued = await w.service.issue(api, ROLE, {});
      w.leases.force(issued.lease_id, { state: 'pending' });
      expect(await refusal(w.service.revoke(api, issued.lease_id))).toMatchObject({ kind: 'conflict', code: 'lease_pending' });
    });

    it('with the target down: revoking (202), the error recorded, and a revoke job takes over', async () => {
      const w = leaseWorld();
      const issued = await w.service.issue(api, ROLE, {});
      w.target.failures.revokeUser = new PluginError('cannot reach the target', true);
      expect(await w.service.revoke(api, issued.lease_id)).toEqual({ state: 'revoking' });
      expect(w.leases.rows.get(issued.lease_id)).toMatchObject({ state: 'revoking', revoke_reason: 'revoked', last_error_code: 'target_unavailable' });
      expect(w.jobs.enqueued.at(-1)).toEqual({ name: JobName.EnforceLease, payload: { leaseId: issued.lease_id }, opts: {} });
    });

    it('with the queue down too, still answers revoking (the reconciler takes over)', async () => {
      const w = leaseWorld();
      const issued = await w.service.issue(api, ROLE, {});
      w.target.failures.revokeUser = new PluginError('cannot reach the target', true);
      w.jobs.down = true;
      expect(await w.service.revoke(api, issued.lease_id)).toEqual({ state: 'revoking' });
    });

    it('of a revoke_failed lease tries again, keeping the reason it was first revoked for', async () => {
      const w = leaseWorld();
      const issued = await w.service.issue(api, ROLE, {});
      w.leases.force(issued.lease_id, { state: 'revoke_failed', revoke_reason: 'expired' });
      expect(await w.service.revoke(operator, issued.lease_id)).toEqual({ state: 'revoked' });
      expect(w.audit.ofType('lease.expired')).toEqual([expect.objectContaining({ actor: operator.subject })]);
    });

    it("someone else's lease is 404 and the probe is audited", async () => {
      const w = leaseWorld();
      const issued = await w.service.issue(api, ROLE, {});
      expect(await refusal(w.service.revoke(workload('other'), issued.lease_id))).toMatchObject({ kind: 'not_found' });
      expect(await refusal(w.service.get(workload('other'), 'tsl_nope'))).toMatchObject({ kind: 'not_found' });
      expect(w.audit.ofType('request.denied')).toHaveLength(1);
      expect(w.leases.rows.get(issued.lease_id)!.state).toBe('active');
    });
  });

  describe('revoking many', () => {
    it("revoke-owned revokes only the caller's leases of that run, for reason owner", async () => {
      const w = leaseWorld();
      const mine = await w.service.issue(api, ROLE, { runId: 'r1' });
      const otherRun = await w.service.issue(api, ROLE, { runId: 'r2' });
      const theirs = await w.service.issue(workload('batch'), ROLE, { runId: 'r1' });
      expect(await w.service.revokeOwned(api, 'r1')).toEqual({ revoked: 1 });
      expect(w.leases.rows.get(mine.lease_id)).toMatchObject({ state: 'revoked', revoke_reason: 'owner' });
      expect(w.leases.rows.get(otherRun.lease_id)!.state).toBe('active');
      expect(w.leases.rows.get(theirs.lease_id)!.state).toBe('active');
    });

    it('bulk revoke moves the matching leases (pending ones too) to revoking, audits the request and enqueues the job', async () => {
      const w = leaseWorld();
      const a = await w.service.issue(api, ROLE, {});
      const b = await w.service.issue(api, ROLE, {});
      w.leases.force(b.lease_id, { state: 'pending' });
      const answer = await w.service.bulkRevoke(operator, { role: ROLE });
      expect(answer.matched).toBe(2);
      expect(w.leases.rows.get(a.lease_id)).toMatchObject({ state: 'revoking', revoke_reason: 'bulk' });
      expect(w.audit.ofType('lease.bulk_revoke')).toHaveLength(1);
      expect(w.jobs.enqueued.at(-1)).toMatchObject({ name: JobName.BulkRevoke, payload: { leaseIds: [a.lease_id, b.lease_id] } });
      w.jobs.down = true;
      expect(await refusal(w.service.bulkRevoke(operator, { role: ROLE }))).toMatchObject({ kind: 'unavailable', code: 'queue_unavailable' });
    });
  });
});
