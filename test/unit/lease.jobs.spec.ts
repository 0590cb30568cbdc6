import { PluginError } from '../../plugins/contract';
import { PermanentJobError, RunAgain, jobContext } from '../../src/jobs/job-handler';
import { ROLE, leaseWorld, operator, workload } from './support/lease-fakes';

const api = workload('api');
const first = jobContext(1, 3);
const last = jobContext(3, 3);

async function issued(w: ReturnType<typeof leaseWorld>, ttl = 60) {
  return (await w.service.issue(api, ROLE, { ttl })).lease_id;
}

describe('the lease jobs (in-memory fakes)', () => {
  describe('enforce', () => {
    it('revokes an expired lease as expired, with its lateness', async () => {
      const w = leaseWorld();
      const id = await issued(w, 60);
      w.clock.advance(61.5);
      expect(await w.leaseJobs.enforce({ leaseId: id }, first)).toBeUndefined();
      expect(w.leases.rows.get(id)).toMatchObject({ state: 'revoked', revoke_reason: 'expired' });
      expect(w.target.accounts.size).toBe(0);
      expect(w.audit.ofType('lease.expired')).toEqual([expect.objectContaining({ actor: null, detail: expect.objectContaining({ reason: 'expired', lateness_seconds: 1.5 }) })]);
    });

    it('runs again at the new expiry of a lease renewed since it was scheduled', async () => {
      const w = leaseWorld();
      const id = await issued(w, 60);
      await w.service.renew(api, id, 600);
      const outcome = await w.leaseJobs.enforce({ leaseId: id }, first);
      expect(outcome).toEqual(new RunAgain(w.leases.rows.get(id)!.expires_at));
      expect(w.leases.rows.get(id)!.state).toBe('active');
    });

    it('never runs again sooner than a moment ahead (this host may be ahead of the database)', async () => {
      const w = leaseWorld();
      const id = await issued(w, 60);
      // Expired by this host's clock but not by the database's: the fake's expire refuses it.
      jest.spyOn(w.leases, 'claimExpired').mockResolvedValueOnce([]);
      w.clock.advance(60);
      const outcome = (await w.leaseJobs.enforce({ leaseId: id }, first)) as RunAgain;
      expect(outcome.at.getTime()).toBe(w.clock.now().getTime() + 250);
    });

    it('leaves a pending lease whose issue is under way, and cleans up one whose issuer is gone', async () => {
      const w = leaseWorld();
      const id = await issued(w);
      w.leases.force(id, { state: 'pending', activated_at: null });
      await w.leaseJobs.enforce({ leaseId: id }, first);
      expect(w.leases.rows.get(id)!.state).toBe('pending');
      w.leases.issuerGone.add(id);
      await w.leaseJobs.enforce({ leaseId: id }, first);
      expect(w.leases.rows.get(id)).toMatchObject({ state: 'failed', revoke_reason: 'abandoned', last_error_code: 'abandoned' });
      expect(w.audit.ofType('lease.abandoned')).toHaveLength(1);
    });

    it('cleans up a pending lease older than pending_timeout even while its issuer lives', async () => {
      const w = leaseWorld();
      const id = await issued(w);
      w.leases.force(id, { state: 'pending', activated_at: null });
      w.clock.advance(61);
      await w.leaseJobs.enforce({ leaseId: id }, first);
      expect(w.leases.rows.get(id)!.state).toBe('failed');
    });

    it('finishes a revocation for the reason it began with, even when the expiry job is the one that finds it', async () => {
      const w = leaseWorld();
      const id = await issued(w, 60);
      w.target.failures.revokeUser = new PluginError('cannot reach the target', true);
      expect(await w.service.revoke(operator, id)).toEqual({ state: 'revoking' });
      delete w.target.failures.revokeUser;
      w.clock.advance(120);
      await w.leaseJobs.enforce({ leaseId: id }, first);
      expect(w.leases.rows.get(id)!.state).toBe('revoked');
      expect(w.audit.ofType('lease.expired')).toEqual([]);
      expect(w.audit.ofType('lease.revoked')).toEqual([expect.objectContaining({ detail: expect.objectContaining({ reason: 'revoked' }) })]);
    });

    it('does nothing for a lease that is done or unknown', async () => {
      const w = leaseWorld();
      const id = await issued(w);
      await w.service.revoke(api, id);
      const before = w.audit.events.length;
      expect(await w.leaseJobs.enforce({ leaseId: id }, first)).toBeUndefined();
      expect(await w.leaseJobs.enforce({ leaseId: 'tsl_unknown' }, first)).toBeUndefined();
      expect(w.audit.events).toHaveLength(before);
    });
  });

  describe('mass expiry (batched)', () => {
    it('one job claims every due lease of the connection and revokes them in one batch; their own jobs find nothing to do', async () => {
      const w = leaseWorld();
      const ids = [await issued(w, 60), await issued(w, 60), await issued(w, 60)];
      const later = await issued(w, 600);
      w.clock.advance(61);
      expect(await w.leaseJobs.enforce({ leaseId: ids[1] }, first)).toBeUndefined();
      expect(w.target.batches).toHaveLength(1);
      expect(w.target.batches[0]).toHaveLength(3);
      // The job's own lease first.
      expect(w.target.batches[0][0]).toBe(w.leases.rows.get(ids[1])!.account);
      for (const id of ids) expect(w.leases.rows.get(id)).toMatchObject({ state: 'revoked', revoke_reason: 'expired' });
      expect(w.leases.rows.get(later)!.state).toBe('active');
      expect(w.audit.ofType('lease.expired')).toHaveLength(3);
      const events = w.audit.events.length;
      for (const id of ids) expect(await w.leaseJobs.enforce({ leaseId: id }, first)).toBeUndefined();
      expect(w.target.batches).toHaveLength(1);
      expect(w.audit.events).toHaveLength(events);
    });

    it('a lease another claim holds is left to it', async () => {
      const w = leaseWorld();
      const [a, b] = [await issued(w, 60), await issued(w, 60)];
      w.clock.advance(61);
      await w.leases.claimExpired(a, 200); // a claim at work elsewhere
      expect(await w.leaseJobs.enforce({ leaseId: b }, first)).toBeUndefined();
      expect(w.target.batches).toHaveLength(0);
      expect(w.leases.rows.get(b)!.state).toBe('revoking');
      // A claimer that died holds them no longer than EXPIRY_CLAIM_SECONDS.
      w.clock.advance(61);
      await w.leaseJobs.enforce({ leaseId: b }, first);
      expect(w.leases.rows.get(b)!.state).toBe('revoked');
    });

    it("one account failing never fails its neighbours: they finish; it stays revoking with its error, in a revoke job of its own", async () => {
      const w = leaseWorld();
      const ids = [await issued(w, 60), await issued(w, 60), await issued(w, 60)];
      w.clock.advance(61);
      const bad = w.leases.rows.get(ids[2])!.account;
      w.target.failingAccounts.set(bad, new PluginError('cannot reach the target', true));
      expect(await w.leaseJobs.enforce({ leaseId: ids[0] }, first)).toBeUndefined();
      expect(w.leases.rows.get(ids[0])!.state).toBe('revoked');
      expect(w.leases.rows.get(ids[1])!.state).toBe('revoked');
      expect(w.leases.rows.get(ids[2])).toMatchObject({ state: 'revoking', last_error_code: 'target_unavailable' });
      expect(w.audit.ofType('lease.expired').map((e) => e.leaseId).sort()).toEqual([ids[0], ids[1]].sort());
      expect(w.jobs.enqueued.filter((j) => !j.opts.runAt)).toEqual([expect.objectContaining({ payload: { leaseId: ids[2] } })]);
      // Its revoke job follows the one retry policy: thrown while attempts remain, then given up.
      await expect(w.leaseJobs.enforce({ leaseId: ids[2] }, first)).rejects.toThrow('cannot reach');
      await expect(w.leaseJobs.enforce({ leaseId: ids[2] }, last)).rejects.toBeInstanceOf(PermanentJobError);
      expect(w.leases.rows.get(ids[2])).toMatchObject({ state: 'revoke_failed', revoke_reason: 'expired' });
      expect(w.audit.ofType('lease.revoke_failed')).toHaveLength(1);
    });

    it("the job's own lease failing fails that job only, after its neighbours are finished", async () => {
      const w = leaseWorld();
      const ids = [await issued(w, 60), await issued(w, 60)];
      w.clock.advance(61);
      w.target.failingAccounts.set(w.leases.rows.get(ids[0])!.account, new PluginError('permission denied to drop role', false));
      await expect(w.leaseJobs.enforce({ leaseId: ids[0] }, first)).rejects.toBeInstanceOf(PermanentJobError);
      expect(w.leases.rows.get(ids[0])).toMatchObject({ state: 'revoke_failed', last_error_code: 'target_rejected' });
      expect(w.leases.rows.get(ids[1])!.state).toBe('revoked');
      // No revoke job besides this one: it is this job's failure.
      expect(w.jobs.enqueued.filter((j) => !j.opts.runAt)).toEqual([]);
    });
  });

  describe('a failed revocation in a job', () => {
    it('records the error and throws it, so the queue retries, while attempts remain', async () => {
      const w = leaseWorld();
      const id = await issued(w, 60);
      w.clock.advance(60);
      const down = new PluginError('cannot reach the target', true);
      w.target.failures.revokeUser = down;
      await expect(w.leaseJobs.enforce({ leaseId: id }, first)).rejects.toBe(down);
      expect(w.leases.rows.get(id)).toMatchObject({ state: 'revoking', last_error_code: 'target_unavailable' });
      expect(w.audit.ofType('lease.revoke_failed')).toEqual([]);
    });

    it('gives up on the last attempt: revoke_failed, counted and audited once, and the job stops', async () => {
      const w = leaseWorld();
      const id = await issued(w, 60);
      w.clock.advance(60);
      w.target.failures.revokeUser = new PluginError('cannot reach the target', true);
      await expect(w.leaseJobs.enforce({ leaseId: id }, first)).rejects.toThrow('cannot reach');
      await expect(w.leaseJobs.enforce({ leaseId: id }, last)).rejects.toBeInstanceOf(PermanentJobError);
      expect(w.leases.rows.get(id)).toMatchObject({ state: 'revoke_failed', revoke_reason: 'expired' });
      // The reconciler's later jobs retry it; failing again does not audit or count it again.
      await expect(w.leaseJobs.enforce({ leaseId: id }, last)).rejects.toBeInstanceOf(PermanentJobError);
      expect(w.audit.ofType('lease.revoke_failed')).toHaveLength(1);
      const outcomes = (await w.metrics.revocations.get()).values;
      expect(outcomes.filter((v) => v.labels.result === 'revoke_failed')).toEqual([expect.objectContaining({ labels: { plugin: 'postgres', result: 'revoke_failed' }, value: 1 })]);
      expect(outcomes.find((v) => v.labels.result === 'failed')?.value).toBe(3);
      // Once the target is back, the next job finishes it, still as an expiry.
      delete w.target.failures.revokeUser;
      await w.leaseJobs.enforce({ leaseId: id }, first);
      expect(w.leases.rows.get(id)!.state).toBe('revoked');
      expect(w.audit.ofType('lease.expired')).toHaveLength(1);
    });

    it('gives up at once on a permanent target error', async () => {
      const w = leaseWorld();
      const id = await issued(w, 60);
      w.clock.advance(60);
      w.target.failures.revokeUser = new PluginError('permission denied to drop role', false);
      await expect(w.leaseJobs.enforce({ leaseId: id }, first)).rejects.toBeInstanceOf(PermanentJobError);
      expect(w.leases.rows.get(id)).toMatchObject({ state: 'revoke_failed', last_error_code: 'target_rejected' });
    });
  });

  it('the bulk job revokes the leases the request moved to revoking, for reason bulk', async () => {
    const w = leaseWorld();
    const ids = [await issued(w), await issued(w)];
    await w.service.bulkRevoke(operator, { role: ROLE });
    await w.leaseJobs.bulk({ requestId: 'r', leaseIds: ids });
    for (const id of ids) expect(w.leases.rows.get(id)).toMatchObject({ state: 'revoked', revoke_reason: 'bulk' });
    expect(w.target.accounts.size).toBe(0);
  });
});
