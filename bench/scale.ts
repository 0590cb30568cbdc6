/** Scale: start-up time, memory and issue latency with many active leases in the store. */
import { spawnSync } from 'node:child_process';
import { BENCH_DB, Identity, Stats, admin, benchConfig, dropRolesLike, flushQueue, load, post, recreateDatabase, startBroker } from './lib';

export interface ScaleRow {
  leases: number;
  startupMs: number;
  rssReadyMb: number;
  rssAfterMb: number;
  issue: Stats;
}

export async function benchScale(id: Identity, opts: { quick: boolean }): Promise<ScaleRow[]> {
  const sizes = opts.quick ? [0, 100_000] : [0, 100_000, 1_000_000];
  const rows: ScaleRow[] = [];
  const token = await id.token('spiffe://bench.example/load/scale');
  for (const size of sizes) {
    await recreateDatabase(BENCH_DB);
    await flushQueue();
    const config = benchConfig(id, (doc) => (doc.connections.pg.scram_iterations = 1));
    const migrate = spawnSync(process.execPath, ['bin/tessera.js', 'migrate', '--config', config], { encoding: 'utf8' });
    if (migrate.status !== 0) throw new Error(`migrate failed: ${migrate.stderr}`);
    // Seeded straight into the store: live leases of another role, expiring hours from now.
    for (let from = 1; from <= size; from += 250_000) {
      const to = Math.min(size, from + 249_999);
      await admin(BENCH_DB, (c) =>
        c.query(`INSERT INTO leases (id, role, connection, plugin, account, owner, owner_issuer, state, expires_at, max_expires_at, activated_at)
                 SELECT 'tsl_seed' || lpad(i::text, 20, '0'), 'bench-seeded', 'pg', 'postgres', 'tsr_seed_' || i,
                        'spiffe://bench.example/seed/' || (i % 1000), 'bench', 'active',
                        now() + interval '5 hours' + (i % 3600) * interval '1 second', now() + interval '6 hours', now()
                 FROM generate_series(${from}, ${to}) i`),
      );
    }
    await admin(BENCH_DB, (c) => c.query('ANALYZE leases'));
    const broker = await startBroker(config);
    try {
      await new Promise((r) => setTimeout(r, 1000)); // let the first reconcile sweep run
      const rssReadyMb = broker.rssMb();
      const issue = await load(opts.quick ? 100 : 500, 4, async () => {
        const res = await post(`${broker.url}/v1/creds/bench-pg`, token, { ttl: '30m' });
        if (res.status !== 201) throw new Error(`issue failed: ${res.status}`);
      });
      rows.push({ leases: size, startupMs: broker.startupMs, rssReadyMb, rssAfterMb: broker.rssMb(), issue });
    } finally {
      await broker.stop();
      await dropRolesLike('tsr_bench_');
    }
  }
  await recreateDatabase(BENCH_DB);
  return rows;
}
