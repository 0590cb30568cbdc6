import { DomainError } from '../../src/common/errors';
import { ROLE, leaseWorld, operator, workload } from '../unit/support/lease-fakes';

/** The console shows a bulk revoke's count before the operator confirms it; the revoke uses the same filter. */
describe('bulk revoke with a confirmed count (in-memory fakes)', () => {
  const api = workload('api');

  it('counts exactly what the revoke then moves, and revokes only when the count still matches', async () => {
    const w = leaseWorld();
    const a = await w.service.issue(api, ROLE, { runId: 'r1' });
    const b = await w.service.issue(api, ROLE, { runId: 'r1' });
    const other = await w.service.issue(api, ROLE, { runId: 'r2' });
    w.leases.force(b.lease_id, { state: 'revoke_failed' });
    expect(await w.service.countBulkRevoke({ runId: 'r1' })).toEqual({ matched: 2 });

    const late = await w.service.issue(api, ROLE, { runId: 'r1' });
    const err = await w.service.bulkRevoke(operator, { runId: 'r1' }, { expected: 2 }).catch((e: unknown) => e);
    expect(err).toBeInstanceOf(DomainError);
    expect(err).toMatchObject({ kind: 'conflict', code: 'bulk_revoke_changed', message: '3 leases match now, not the 2 confirmed; nothing was revoked' });
    for (const id of [a.lease_id, late.lease_id]) expect(w.leases.rows.get(id)!.state).toBe('active');
    expect(w.audit.ofType('lease.bulk_revoke')).toHaveLength(0);

    expect(await w.service.bulkRevoke(operator, { runId: 'r1' }, { expected: 3 })).toMatchObject({ matched: 3 });
    for (const id of [a.lease_id, b.lease_id, late.lease_id]) expect(w.leases.rows.get(id)!.state).toBe('revoking');
    expect(w.leases.rows.get(other.lease_id)!.state).toBe('active');
    expect(await w.service.countBulkRevoke({ runId: 'r1' })).toEqual({ matched: 0 });
  });

  it('summarises active leases by role and plugin, and revoke_failed ones', async () => {
    const w = leaseWorld();
    const a = await w.service.issue(api, ROLE, {});
    await w.service.issue(api, ROLE, {});
    w.leases.force(a.lease_id, { state: 'revoke_failed' });
    const summary = await w.service.summary();
    expect(summary.revoke_failed).toBe(1);
    expect(summary.active).toEqual([{ role: ROLE, plugin: expect.any(String), count: 1 }]);
  });
});
