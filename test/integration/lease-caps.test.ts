import { randomUUID } from 'node:crypto';
import { LeaseRepository, NewLease } from '../../src/leases/lease.repository';
import { Database } from '../../src/storage/database';
import { TestBroker, startBroker } from '../support/broker';

/**
 * Pending inserts arriving together share one statement (group commit). The caps must hold inside such
 * a statement exactly: leases earlier in it count against the ones after. Inserts asked within one turn
 * of the event loop go in one statement.
 */
describe('lease caps inside one group-committed insert', () => {
  let broker: TestBroker;
  let db: Database;
  let repo: LeaseRepository;

  beforeAll(async () => {
    broker = await startBroker('lcaps');
    db = new Database(broker.config.storage.postgres_url, 2);
    const config = { storage: { postgres_url: broker.config.storage.postgres_url, pool_size: 2 } } as any;
    repo = new LeaseRepository(db, config, { append: async () => undefined, appendMany: async () => undefined, firstShard: () => 1 } as any);
  });
  afterAll(async () => {
    await repo.onApplicationShutdown();
    await db.close();
    await broker.close();
  });

  const lease = (role: string, owner: string): NewLease => {
    const id = randomUUID();
    const at = new Date(Date.now() + 60_000);
    return { id, role, connection: 'target', plugin: 'postgres', account: `acct_${id.slice(0, 8)}`, owner, ownerIssuer: 'test', runId: null, expiresAt: at, maxExpiresAt: at, revocable: true };
  };
  const live = async (where: string, value: string) =>
    Number((await broker.state<{ n: string }>(`SELECT count(*) AS n FROM leases WHERE ${where} = $1 AND state = 'pending'`, [value]))[0].n);

  it('a role at its cap: exactly cap leases are written, the rest refused with role_limit', async () => {
    const results = await Promise.all(Array.from({ length: 8 }, (_, i) => repo.insertPending(lease('capped-role', `owner-${i}`), { role: 3, owner: 100 })));
    expect(results.filter((r) => r === undefined)).toHaveLength(3);
    expect(results.filter((r) => r === 'role_limit')).toHaveLength(5);
    expect(await live('role', 'capped-role')).toBe(3);
    // Rows written by one statement share a transaction id: the eight were judged in one statement.
    const xids = await broker.state<{ n: string }>(`SELECT count(DISTINCT xmin::text) AS n FROM leases WHERE role = 'capped-role'`);
    expect(Number(xids[0].n)).toBe(1);
  });

  it('an owner at its cap across roles: exactly cap leases, the rest owner_limit; another owner is unaffected', async () => {
    const results = await Promise.all([
      ...Array.from({ length: 6 }, (_, i) => repo.insertPending(lease(`role-${i}`, 'greedy'), { role: 100, owner: 2 })),
      repo.insertPending(lease('role-0', 'modest'), { role: 100, owner: 2 }),
    ]);
    expect(results.slice(0, 6).filter((r) => r === undefined)).toHaveLength(2);
    expect(results.slice(0, 6).filter((r) => r === 'owner_limit')).toHaveLength(4);
    expect(results[6]).toBeUndefined();
    expect(await live('owner', 'greedy')).toBe(2);
  });

  it('with the default pool (20): hundreds of concurrent inserts still stop exactly at the cap', async () => {
    const big = new Database(broker.config.storage.postgres_url, 20);
    const wide = new LeaseRepository(big, { storage: { postgres_url: broker.config.storage.postgres_url, pool_size: 20 } } as any, { append: async () => undefined, appendMany: async () => undefined, firstShard: () => 1 } as any);
    try {
      const results = await Promise.all(Array.from({ length: 600 }, (_, i) => wide.insertPending(lease(`wide-${i % 7}`, 'flood'), { role: 100_000, owner: 50 })));
      expect(results.filter((r) => r === undefined)).toHaveLength(50);
      expect(await live('owner', 'flood')).toBe(50);
    } finally {
      await wide.onApplicationShutdown();
      await big.close();
    }
  });

  it('a lease whose values the statement refuses fails alone; the others of its statement are written', async () => {
    const first = repo.insertPending(lease('mixed-role', 'm-first'), { role: 100, owner: 100 });
    const rest = [lease('mixed-role', 'm-a'), lease('mixed-role', 'bad\u0000owner'), lease('mixed-role', 'm-b')].map((l) =>
      repo.insertPending(l, { role: 100, owner: 100 }).then(() => 'written', () => 'failed'),
    );
    await first;
    expect(await Promise.all(rest)).toEqual(['written', 'failed', 'written']);
    expect(await live('role', 'mixed-role')).toBe(3);
  });

  it('answers each insert in its own order: the earliest of a statement are the ones written', async () => {
    const first = await repo.insertPending(lease('ordered-role', 'o-first'), { role: 2, owner: 100 });
    expect(first).toBeUndefined();
    const [a, b, c] = await Promise.all(['o-a', 'o-b', 'o-c'].map((o) => repo.insertPending(lease('ordered-role', o), { role: 2, owner: 100 })));
    // a runs alone (the one batch in flight is free again) and takes the last place; b and c, together
    // in the next statement, find the role full.
    expect([a, b, c]).toEqual([undefined, 'role_limit', 'role_limit']);
  });
});
