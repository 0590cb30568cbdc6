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

  it('the preview lists exactly what the count and the revoke match: connection, owner with its issuer, revocable states', async () => {
    const w = leaseWorld();
    const owner = api.subject;
    const mine = await w.service.issue(api, ROLE, { runId: 'p' });
    const failed = await w.service.issue(api, ROLE, { runId: 'p' });
    const done = await w.service.issue(api, ROLE, { runId: 'p' });
    const elsewhere = await w.service.issue(api, ROLE, { runId: 'p' });
    const sameSubjectOtherIssuer = await w.service.issue(api, ROLE, { runId: 'p' });
    w.leases.force(failed.lease_id, { state: 'revoke_failed' });
    w.leases.force(done.lease_id, { state: 'revoked' });
    w.leases.force(elsewhere.lease_id, { connection: 'other-db' });
    w.leases.force(sameSubjectOtherIssuer.lease_id, { owner_issuer: 'other-idp' });
    const connection = w.leases.rows.get(mine.lease_id)!.connection;

    const filter = { connection, owner, ownerIssuer: 'test' };
    const preview = await w.service.previewBulkRevoke(filter, 50);
    expect(preview.matched).toBe(2);
    expect(preview.items.map((l) => l.lease_id).sort()).toEqual([mine.lease_id, failed.lease_id].sort());
    expect(preview.items.every((l) => l.owner_issuer === 'test')).toBe(true);
    expect(await w.service.countBulkRevoke(filter)).toEqual({ matched: 2 });

    expect(await w.service.bulkRevoke(operator, filter, { expected: 2 })).toMatchObject({ matched: 2 });
    expect(w.leases.rows.get(sameSubjectOtherIssuer.lease_id)!.state).toBe('active');
    expect(w.leases.rows.get(elsewhere.lease_id)!.state).toBe('active');
    expect(w.audit.ofType('lease.bulk_revoke')[0].detail).toMatchObject({ filter: { owner, owner_issuer: 'test', connection } });
    expect(await w.service.previewBulkRevoke(filter, 50)).toEqual({ matched: 0, items: [] });
  });

  it('the preview is capped and newest first', async () => {
    const w = leaseWorld();
    for (let i = 0; i < 4; i++) {
      await w.service.issue(api, ROLE, { runId: 'cap' });
      w.clock.advance(1);
    }
    const { matched, items } = await w.service.previewBulkRevoke({ runId: 'cap' }, 3);
    expect(matched).toBe(4);
    expect(items).toHaveLength(3);
    const times = items.map((l) => Date.parse(l.created_at));
    expect(times).toEqual([...times].sort((a, b) => b - a));
  });
});
