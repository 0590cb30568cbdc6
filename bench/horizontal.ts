/** Horizontal: issue throughput with one broker, and with two brokers plus a separate worker. */
import { Identity, Stats, benchConfig, dropRolesLike, flushQueue, load, post, recreateDatabase, startBroker, startWorker, BENCH_DB } from './lib';

export interface HorizontalResult {
  one: Stats;
  two: Stats;
  ratio: number;
}

export async function benchHorizontal(id: Identity, opts: { quick: boolean }): Promise<HorizontalResult> {
  const n = opts.quick ? 400 : 3000;
  const token = await id.token('spiffe://bench.example/load/horizontal');
  const run = async (urls: string[]) =>
    load(n, 32, async (i) => {
      const res = await post(`${urls[i % urls.length]}/v1/creds/bench-pg`, token, { ttl: '30m' });
      if (res.status !== 201) throw new Error(`issue failed: ${res.status}`);
    });

  await recreateDatabase(BENCH_DB);
  await flushQueue();
  const config = benchConfig(id, (doc) => (doc.connections.pg.scram_iterations = 1));
  const single = await startBroker(config);
  let one: Stats;
  try {
    one = await run([single.url]);
  } finally {
    await single.stop();
  }
  await dropRolesLike('tsr_bench_');

  const a = await startBroker(config, ['--no-worker']);
  const b = await startBroker(config, ['--no-worker']);
  const worker = startWorker(config);
  let two: Stats;
  try {
    two = await run([a.url, b.url]);
  } finally {
    worker.kill('SIGTERM');
    await Promise.all([a.stop(), b.stop()]);
  }
  await dropRolesLike('tsr_bench_');
  await recreateDatabase(BENCH_DB);
  return { one, two, ratio: two.rate / one.rate };
}
