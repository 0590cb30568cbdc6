/** Mass expiry: many leases due in the same second, their lateness, and the revocation rate beside bare DROP ROLE. */
import { Client, Pool } from 'pg';
import { BENCH_DB, Identity, PG, Stats, TARGET_DB, admin, benchConfig, dropRolesLike, flushQueue, load, post, recreateDatabase, startBroker } from './lib';

export interface ExpiryResult {
  leases: number;
  /** First refused login minus expires_at, for a sample of credentials polled around expiry. */
  loginRefusedMs: { sample: number; p50: number; p99: number; max: number };
  latenessMs: { p50: number; p99: number; max: number };
  revokeRate: number;
  rawDropRate: number;
  ratio: number;
  raw: Stats;
}

const SAMPLE = 100;

/** Polls logins with the sampled credentials from just before their expiry until each is refused. */
async function refusedLateness(sample: { creds: Record<string, any>; expiresAt: number }[]): Promise<number[]> {
  const first = Math.min(...sample.map((s) => s.expiresAt));
  await new Promise((r) => setTimeout(r, Math.max(0, first - Date.now() - 500)));
  return Promise.all(
    sample.map(async ({ creds, expiresAt }) => {
      for (;;) {
        const client = new Client({ host: creds.host, port: creds.port, database: creds.database, user: creds.username, password: creds.password });
        // The revocation may end this session between connect and end: that must not crash the bench.
        client.on('error', () => undefined);
        const ok = await client.connect().then(() => true, () => false);
        const at = Date.now();
        await client.end().catch(() => undefined);
        if (!ok) return at - expiresAt;
        await new Promise((r) => setTimeout(r, 50));
      }
    }),
  );
}

/** Mass expiry at each size (quick: 2,000; full: 2,000 and 10,000), every lease due in the same second. */
export async function benchExpiry(id: Identity, opts: { quick: boolean }): Promise<ExpiryResult[]> {
  const results: ExpiryResult[] = [];
  for (const n of opts.quick ? [2000] : [2000, 10_000]) results.push(await expiryOf(id, n));
  return results;
}

async function expiryOf(id: Identity, n: number): Promise<ExpiryResult> {
  await recreateDatabase(BENCH_DB);
  await flushQueue();
  await dropRolesLike('tsr_bench_');
  const config = benchConfig(id, (doc) => {
    doc.connections.pg.scram_iterations = 1;
    doc.reconcile_every = '60s'; // expiry must come from the delayed jobs, not the reconciler
  });
  const broker = await startBroker(config);
  const token = await id.token('spiffe://bench.example/load/expiry');
  let loginRefused: number[] = [];
  // Issue at a few hundred a second, all due in one second: [expiresAt, expiresAt + 1 s).
  const expiresAt = Date.now() + 15_000 + n * 8;
  try {
    const sample: { creds: Record<string, any>; expiresAt: number }[] = [];
    await load(n, 32, async (i) => {
      const ttl = Math.max(1, Math.ceil((expiresAt - Date.now()) / 1000));
      const res = await post(`${broker.url}/v1/creds/bench-pg`, token, { ttl });
      if (res.status !== 201) throw new Error(`issue failed: ${res.status}`);
      if (i % Math.ceil(n / SAMPLE) === 0) sample.push({ creds: res.body.credentials, expiresAt: Date.parse(res.body.expires_at) });
    });
    loginRefused = await refusedLateness(sample);
    const spread = await admin(BENCH_DB, (c) => c.query(`SELECT extract(epoch FROM max(expires_at) - min(expires_at)) AS s FROM leases`));
    if (Number(spread.rows[0].s) >= 1.5) throw new Error(`leases expire over ${spread.rows[0].s} s, not one second; issue was too slow`);
    // Wait for every lease to be revoked.
    for (;;) {
      const { rows } = await admin(BENCH_DB, (c) => c.query<{ n: number }>(`SELECT count(*)::int AS n FROM leases WHERE state <> 'revoked'`));
      if (rows[0].n === 0) break;
      if (Date.now() > expiresAt + 300_000) throw new Error(`${rows[0].n} leases still not revoked`);
      await new Promise((r) => setTimeout(r, 500));
    }
  } finally {
    await broker.stop();
  }
  const { rows } = await admin(BENCH_DB, (c) =>
    c.query(`SELECT percentile_cont(0.5) WITHIN GROUP (ORDER BY l) AS p50, percentile_cont(0.99) WITHIN GROUP (ORDER BY l) AS p99, max(l) AS max,
                    extract(epoch FROM max(revoked_at) - min(expires_at)) AS span
             FROM (SELECT revoked_at, expires_at, extract(epoch FROM revoked_at - expires_at) * 1000 AS l FROM leases) t`),
  );
  const span = Math.max(Number(rows[0].span), 0.001);

  // The raw operation: the same number of roles dropped by 16 connections.
  const pool = new Pool({ connectionString: `${PG}/${TARGET_DB}`, max: 16 });
  await pool.query(`DO $$ BEGIN FOR i IN 1..${n} LOOP EXECUTE format('CREATE ROLE bench_raw_drop_%s LOGIN', i); END LOOP; END $$`);
  const raw = await load(n, 16, async (i) => {
    await pool.query(`DROP ROLE bench_raw_drop_${i + 1}`);
  });
  await pool.end();
  await dropRolesLike('bench_raw_');
  const revokeRate = n / span;
  const sorted = loginRefused.sort((a, b) => a - b);
  const q = (x: number) => sorted[Math.min(sorted.length - 1, Math.floor(x * sorted.length))];
  return {
    leases: n,
    loginRefusedMs: { sample: sorted.length, p50: q(0.5), p99: q(0.99), max: sorted[sorted.length - 1] },
    latenessMs: { p50: Number(rows[0].p50), p99: Number(rows[0].p99), max: Number(rows[0].max) },
    revokeRate,
    rawDropRate: raw.rate,
    ratio: revokeRate / raw.rate,
    raw,
  };
}
