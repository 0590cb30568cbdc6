/** Mass expiry: many leases due in the same second, their lateness, and the revocation rate beside bare DROP ROLE. */
import { Queue } from 'bullmq';
import { Client, Pool } from 'pg';
import { planJob } from '../src/jobs/job.producer';
import { JobName, QueueName } from '../src/jobs/jobs';
import { newAccountName, newLeaseId } from '../src/leases/names';
import { BENCH_DB, Identity, PG, Stats, TARGET_DB, admin, benchConfig, cpuSplit, dropRolesLike, flushQueue, load, post, recreateDatabase, startBroker, vacuumRoleCatalogs } from './lib';

export interface ExpiryResult {
  leases: number;
  /** First refused login minus expires_at, for a sample of credentials polled around expiry. */
  loginRefusedMs: { sample: number; p50: number; p99: number; max: number };
  latenessMs: { p50: number; p99: number; max: number };
  revokeRate: number;
  rawDropRate: number;
  ratio: number;
  raw: Stats;
  /**
   * The same DROP ROLEs on 16 connections, each role dropped no earlier than its lease fell due (the same
   * one-second spread): seconds from the first due time to the last drop, Tessera's and the raw loop's,
   * and the raw loop's over Tessera's. The unpaced ratio above cannot pass n / (1 s + lateness) for
   * Tessera however fast it is, since the leases themselves fall due over a second.
   */
  paced: { tesseraSeconds: number; rawSeconds: number; ratio: number };
  /** CPU (ms) per revoked lease from just before the first expiry until all are revoked (the sample's polling included). */
  cpuMs: { broker: number; postgres: number; redis: number };
}

/**
 * Credentials whose refused login is timed. Each poll is a new backend (~20 ms of CPU on a machine
 * with slow process creation): a hundred took about 1 ms of PostgreSQL's CPU per lease from the
 * 2,000-lease run, work the bare DROP ROLE loop it is compared to does not do.
 */
const SAMPLE = 25;

/**
 * Polls logins with the sampled credentials from their expiry until each is refused: 16 pollers share
 * the sample, each taking the credential polled longest ago among those due, each credential at most
 * every 20 ms. (One poller per credential held a hundred connections at once and pushed PostgreSQL
 * past max_connections, failing the broker's own revocations with 53300. Polling from half a second
 * before expiry logged in with each credential about 25 times before it expired; where a backend
 * costs ~20 ms of CPU, as on a machine with slow process creation, that took the cores the
 * revocations needed.) Every poll is a new backend: the CPU figures of the expiry rows include it.
 */
async function refusedLateness(sample: { creds: Record<string, any>; expiresAt: number }[]): Promise<number[]> {
  const lateness: (number | undefined)[] = sample.map(() => undefined);
  const polledAt = sample.map(() => 0);
  const busy = new Set<number>();
  const poller = async () => {
    while (lateness.some((l) => l === undefined)) {
      const now = Date.now();
      const ready = sample
        .map((s, i) => i)
        .filter((i) => lateness[i] === undefined && !busy.has(i) && sample[i].expiresAt <= now && now - polledAt[i] >= 20)
        .sort((x, y) => polledAt[x] - polledAt[y]);
      if (!ready.length) {
        await new Promise((r) => setTimeout(r, 10));
        continue;
      }
      const i = ready[0];
      busy.add(i);
      const { creds, expiresAt } = sample[i];
      const client = new Client({ host: creds.host, port: creds.port, database: creds.database, user: creds.username, password: creds.password });
      // The revocation may end this session between connect and end: that must not crash the bench.
      client.on('error', () => undefined);
      const ok = await client.connect().then(() => true, () => false);
      const at = Date.now();
      await client.end().catch(() => undefined);
      polledAt[i] = at;
      if (!ok) lateness[i] = at - expiresAt;
      busy.delete(i);
    }
  };
  await Promise.all(Array.from({ length: 16 }, poller));
  return lateness as number[];
}

/**
 * Mass expiry at each size (quick: 2,000; full: 2,000, 10,000 and 100,000), every lease due in the same
 * second. Up to 10,000 the leases are issued through the API; 100,000 are seeded (see seedLeases).
 */
export async function benchExpiry(id: Identity, opts: { quick: boolean }): Promise<ExpiryResult[]> {
  const results: ExpiryResult[] = [];
  for (const n of opts.quick ? [2000] : [2000, 10_000, 100_000]) results.push(await expiryOf(id, n, n > 10_000));
  return results;
}

/**
 * What issuing `n` leases leaves behind, written in bulk: the roles on the target (VALID UNTIL their
 * expiry, member of the role's group), the active lease rows, and each lease's delayed expiry job with
 * the id, payload and options the broker gives it (planJob). Issue-time audit events are not written;
 * expiry does not read them. Issuing 100,000 through the API would take the bench most of an hour.
 */
async function seedLeases(n: number, expiresAt: number, prefix: string): Promise<void> {
  const at = (i: number) => new Date(expiresAt + Math.floor((i * 1000) / n));
  const leases = Array.from({ length: n }, (_, i) => ({ id: newLeaseId(), account: newAccountName('bench-pg', 63), expiresAt: at(i) }));
  for (let i = 0; i < n; i += 2000) {
    const chunk = leases.slice(i, i + 2000);
    await admin(TARGET_DB, (c) =>
      c.query(chunk.map((l) => `CREATE ROLE "${l.account}" LOGIN VALID UNTIL '${l.expiresAt.toISOString()}' IN ROLE bench_readers;`).join('\n')),
    );
    await admin(BENCH_DB, (c) =>
      c.query(
        `INSERT INTO leases (id, role, connection, plugin, account, owner, owner_issuer, run_id, state, expires_at, max_expires_at, activated_at)
         SELECT id, 'bench-pg', 'pg', 'postgres', account, 'spiffe://bench.example/load/expiry', 'bench', NULL, 'active', e, e + interval '6 hours', now()
         FROM unnest($1::text[], $2::text[], $3::timestamptz[]) AS t(id, account, e)`,
        [chunk.map((l) => l.id), chunk.map((l) => l.account), chunk.map((l) => l.expiresAt)],
      ),
    );
  }
  const queue = new Queue(QueueName.Leases, { connection: { host: '127.0.0.1', port: 6379 }, prefix });
  try {
    for (let i = 0; i < n; i += 1000) {
      const jobs = leases.slice(i, i + 1000).map((l) => planJob({ revoke_attempts: 6, rotation_attempts: 4 } /* the config defaults */, JobName.EnforceLease, { leaseId: l.id }, { runAt: l.expiresAt }, Date.now()));
      await queue.addBulk(jobs.map((j) => ({ name: j.name, data: j.data, opts: j.opts })));
    }
  } finally {
    await queue.close();
  }
}

export async function expiryOf(id: Identity, n: number, seeded = false): Promise<ExpiryResult> {
  await recreateDatabase(BENCH_DB);
  await flushQueue();
  await dropRolesLike('tsr_bench_');
  await admin(TARGET_DB, vacuumRoleCatalogs);
  const config = benchConfig(id, (doc) => {
    doc.connections.pg.scram_iterations = 1;
    doc.reconcile_every = '60s'; // expiry must come from the delayed jobs, not the reconciler
  });
  const broker = await startBroker(config);
  const token = await id.token('spiffe://bench.example/load/expiry');
  let loginRefused: number[] = [];
  let cpuMs: ExpiryResult['cpuMs'] = { broker: NaN, postgres: NaN, redis: NaN };
  // Issue at a few hundred a second, all due in one second: [expiresAt, expiresAt + 1 s).
  // Seeding writes about a lease a millisecond here; give it half as much again.
  const expiresAt = Date.now() + 15_000 + (seeded ? SAMPLE * 8 + n * 1.5 : n * 8);
  try {
    const sample: { creds: Record<string, any>; expiresAt: number }[] = [];
    const issued = seeded ? SAMPLE : n;
    await load(issued, 32, async (i) => {
      const ttl = Math.max(1, Math.ceil((expiresAt - Date.now()) / 1000));
      const res = await post(`${broker.url}/v1/creds/bench-pg`, token, { ttl });
      if (res.status !== 201) throw new Error(`issue failed: ${res.status}`);
      if (i % Math.ceil(issued / SAMPLE) === 0) sample.push({ creds: res.body.credentials, expiresAt: Date.parse(res.body.expires_at) });
    });
    if (seeded) {
      await seedLeases(n - issued, expiresAt, 'tessera-bench');
      if (Date.now() > expiresAt - 1000) throw new Error('seeding took longer than planned: leases fell due before it finished');
    }
    const cpuBefore = cpuSplit(broker.child.pid!);
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
    const cpuAfter = cpuSplit(broker.child.pid!);
    const per = (k: 'broker' | 'postgres' | 'redis') => ((cpuAfter[k] - cpuBefore[k]) * 1000) / n;
    cpuMs = { broker: per('broker'), postgres: per('postgres'), redis: per('redis') };
  } finally {
    await broker.stop();
  }
  const { rows } = await admin(BENCH_DB, (c) =>
    c.query(`SELECT percentile_cont(0.5) WITHIN GROUP (ORDER BY l) AS p50, percentile_cont(0.99) WITHIN GROUP (ORDER BY l) AS p99, max(l) AS max,
                    extract(epoch FROM max(revoked_at) - min(expires_at)) AS span
             FROM (SELECT revoked_at, expires_at, extract(epoch FROM revoked_at - expires_at) * 1000 AS l FROM leases) t`),
  );
  const span = Math.max(Number(rows[0].span), 0.001);

  // The raw operation: the same number of roles dropped by 16 connections, on catalogs vacuumed as
  // Tessera's half found them.
  await admin(TARGET_DB, vacuumRoleCatalogs);
  const pool = new Pool({ connectionString: `${PG}/${TARGET_DB}`, max: 16 });
  await pool.query(`DO $$ BEGIN FOR i IN 1..${n} LOOP EXECUTE format('CREATE ROLE bench_raw_drop_%s LOGIN', i); END LOOP; END $$`);
  const raw = await load(n, 16, async (i) => {
    await pool.query(`DROP ROLE bench_raw_drop_${i + 1}`);
  });
  // The same loop paced like the leases: role i is dropped no earlier than lease i fell due.
  await pool.query(`DO $$ BEGIN FOR i IN 1..${n} LOOP EXECUTE format('CREATE ROLE bench_raw_drop_%s LOGIN', i); END LOOP; END $$`);
  const start = performance.now() + 200;
  let lastDone = start;
  await load(n, 16, async (i) => {
    const due = start + Math.floor((i * 1000) / n);
    const wait = due - performance.now();
    if (wait > 0) await new Promise((r) => setTimeout(r, wait));
    await pool.query(`DROP ROLE bench_raw_drop_${i + 1}`);
    lastDone = Math.max(lastDone, performance.now());
  });
  const rawSeconds = (lastDone - start) / 1000;
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
    paced: { tesseraSeconds: span, rawSeconds, ratio: rawSeconds / span },
    cpuMs,
  };
}
