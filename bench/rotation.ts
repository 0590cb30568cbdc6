/** Emergency rotation of many static secrets on one connection, beside a bare ALTER ROLE loop. */
import { Client, Pool } from 'pg';
import { scramSha256Verifier } from '../plugins/postgres/scram';
import { BENCH_DB, Identity, PG, Stats, TARGET_DB, admin, benchConfig, cpuSplit, flushQueue, load, post, recreateDatabase, startBroker, vacuumRoleCatalogs } from './lib';

export interface RotationResult {
  /** The connection's verify_logins. */
  verifyLogins: 'every_password' | 'once_per_configuration';
  /** SCRAM rounds of the verifiers Tessera sets (16: the product's default). */
  iterations: number;
  secrets: number;
  seconds: number;
  rate: number;
  /** A bare `ALTER ROLE … PASSWORD '<plaintext>'` loop (PostgreSQL hashes it, 4096 rounds by default). */
  raw: Stats;
  ratio: number;
  /** The same statement with a verifier of Tessera's round count computed by the client. */
  rawVerifier: Stats;
  ratioVerifier: number;
  /** Bare password logins (connect, disconnect) with verifiers of these rounds: what verifying by login costs. */
  rawLogin: Stats;
  /** Seconds from the request to the last exposed password replaced on the target (the last `set` step). */
  replacedSeconds: number;
  /** CPU (ms) per rotation: the broker, PostgreSQL (state database and target), Redis. */
  cpuMs: { broker: number; postgres: number; redis: number };
}

/**
 * Polls on one connection held open: a new connection per poll would start a PostgreSQL backend ten
 * times a second, on the machine whose logins the rotations themselves are measured by.
 */
async function waitFor(sql: string, want: number, timeoutMs: number): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  await admin(BENCH_DB, async (c) => {
    for (;;) {
      const { rows } = await c.query<{ n: number }>(sql);
      if (rows[0].n >= want) return;
      if (Date.now() > deadline) throw new Error(`timed out waiting: ${sql} (${rows[0].n}/${want})`);
      await new Promise((r) => setTimeout(r, 100));
    }
  });
}

export async function benchRotation(
  id: Identity,
  opts: { quick: boolean; verifyLogins: RotationResult['verifyLogins']; iterations: number },
): Promise<RotationResult> {
  const n = opts.quick ? 100 : 1000;
  const iterations = opts.iterations;
  await recreateDatabase(BENCH_DB);
  await flushQueue();
  await admin(TARGET_DB, vacuumRoleCatalogs);
  await admin(TARGET_DB, (c) =>
    c.query(`DO $$ BEGIN FOR i IN 1..${n} LOOP
      EXECUTE format('DROP ROLE IF EXISTS bench_static_%s', i);
      EXECUTE format('CREATE ROLE bench_static_%s LOGIN', i);
    END LOOP; END $$`),
  );
  const statics: Record<string, unknown> = {};
  for (let i = 1; i <= n; i++) statics[`static-${i}`] = { connection: 'pg', username: `bench_static_${i}` };
  const config = benchConfig(id, (doc) => {
    doc.connections.pg.scram_iterations = iterations;
    doc.connections.pg.verify_logins = opts.verifyLogins;
    doc.static_secrets = statics;
    doc.reconcile_every = '1s';
  });
  const broker = await startBroker(config);
  let seconds: number;
  let cpuMs: RotationResult['cpuMs'];
  let replacedSeconds: number;
  try {
    // Taking ownership (one rotation each) is not measured.
    await waitFor(`SELECT count(*)::int AS n FROM static_secrets WHERE current_version = 1`, n, 600_000);
    const operator = await id.token('spiffe://bench.example/ops/bench');
    const cpuBefore = cpuSplit(broker.child.pid!);
    const started = performance.now();
    const startedAt = Date.now();
    const res = await post(`${broker.url}/v1/rotate`, operator, { connection: 'pg', reason: 'bench' });
    if (res.status !== 202) throw new Error(`emergency rotation refused: ${res.status}`);
    await waitFor(`SELECT count(*)::int AS n FROM rotations WHERE trigger = 'emergency' AND status = 'succeeded'`, n, 600_000);
    seconds = (performance.now() - started) / 1000;
    // Step times are the broker's clock, on this machine.
    const { rows } = await admin(BENCH_DB, (c) =>
      c.query<{ at: Date }>(
        `SELECT max((s->>'at')::timestamptz) AS at FROM rotations r, jsonb_array_elements(r.steps) s WHERE r.trigger = 'emergency' AND s->>'step' = 'set'`,
      ),
    );
    replacedSeconds = (rows[0].at.getTime() - startedAt) / 1000;
    const cpuAfter = cpuSplit(broker.child.pid!);
    const per = (k: 'broker' | 'postgres' | 'redis') => ((cpuAfter[k] - cpuBefore[k]) * 1000) / n;
    cpuMs = { broker: per('broker'), postgres: per('postgres'), redis: per('redis') };
  } finally {
    await broker.stop();
  }
  // The raw operation over 16 connections: as a script would send it (plaintext; PostgreSQL makes the
  // verifier with its own round count), and with a verifier of Tessera's round count made here; on
  // catalogs vacuumed as Tessera's half found them.
  await admin(TARGET_DB, vacuumRoleCatalogs);
  const pool = new Pool({ connectionString: `${PG}/${TARGET_DB}`, max: 16 });
  const raw = await load(n, 16, async (i) => {
    await pool.query(`ALTER ROLE bench_static_${i + 1} WITH PASSWORD 'pw-${Math.random()}'`);
  });
  const rawVerifier = await load(n, 16, async (i) => {
    const verifier = await scramSha256Verifier(`pw-${Math.random()}`, iterations);
    await pool.query(`ALTER ROLE bench_static_${i + 1} WITH PASSWORD '${verifier}'`);
  });
  // Logins as those roles, with a password known here, over 16 connections at a time.
  const known = await scramSha256Verifier('bench-login-password', iterations);
  await admin(TARGET_DB, (c) => c.query(`DO $$ BEGIN FOR i IN 1..${n} LOOP EXECUTE format('ALTER ROLE bench_static_%s PASSWORD %L', i, '${known}'); END LOOP; END $$`));
  const target = new URL(`${PG}/${TARGET_DB}`);
  const rawLogin = await load(n, 16, async (i) => {
    const client = new Client({ host: target.hostname, port: Number(target.port || 5432), database: TARGET_DB, user: `bench_static_${i + 1}`, password: 'bench-login-password' });
    await client.connect();
    await client.end();
  });
  await pool.end();
  await admin(TARGET_DB, (c) => c.query(`DO $$ BEGIN FOR i IN 1..${n} LOOP EXECUTE format('DROP ROLE IF EXISTS bench_static_%s', i); END LOOP; END $$`));
  await recreateDatabase(BENCH_DB);
  const rate = n / seconds;
  return { verifyLogins: opts.verifyLogins, iterations, secrets: n, seconds, replacedSeconds, rate, raw, ratio: rate / raw.rate, rawVerifier, ratioVerifier: rate / rawVerifier.rate, rawLogin, cpuMs };
}
