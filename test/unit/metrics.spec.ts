import { UNMATCHED, routeLabel } from '../../src/metrics/http-metrics';
import { familyOf, parseExposition, promqlMetricNames } from '../../src/metrics/metric-names';
import { Metrics } from '../../src/metrics/metrics';
import { ScrapeCache } from '../../src/metrics/scrape-cache';
import { ScrapeSources } from '../../src/metrics/scrape-gauges';

describe('PromQL metric names', () => {
  it('finds every tessera_ metric once, in order, and nothing from label values or comments', () => {
    const expr = `histogram_quantile(0.99, sum by (le) (rate(tessera_lease_expiry_lateness_seconds_bucket[5m]))) > 2
      and on() sum(tessera_leases{state="revoke_failed", role=~"tessera_.*"}) > 0 # tessera_commented_out
      or increase(tessera_static_rotations_total{result='failed'}[15m]) > 0 unless tessera_leases`;
    expect(promqlMetricNames(expr)).toEqual(['tessera_lease_expiry_lateness_seconds_bucket', 'tessera_leases', 'tessera_static_rotations_total']);
  });

  it('ignores names that only end in tessera_ and finds names after operators and parentheses', () => {
    expect(promqlMetricNames('my_tessera_x + (tessera_a)*tessera_b:rate5m')).toEqual(['tessera_a', 'tessera_b:rate5m']);
    expect(promqlMetricNames('vector(1)')).toEqual([]);
  });

  it('maps histogram series to their family, and only histogram series', () => {
    const types = new Map([
      ['tessera_lease_issue_seconds', 'histogram'],
      ['tessera_audit_events_total', 'counter'],
      ['tessera_x', 'gauge'],
    ]);
    expect(familyOf('tessera_lease_issue_seconds_bucket', types)).toBe('tessera_lease_issue_seconds');
    expect(familyOf('tessera_lease_issue_seconds_count', types)).toBe('tessera_lease_issue_seconds');
    expect(familyOf('tessera_audit_events_total', types)).toBe('tessera_audit_events_total');
    expect(familyOf('tessera_x_count', types)).toBeUndefined();
    expect(familyOf('tessera_missing', types)).toBeUndefined();
  });
});

describe('exposition parsing', () => {
  it('reads types, names, labels (with escapes) and values', () => {
    const { types, samples } = parseExposition(
      [
        '# HELP tessera_x A gauge.',
        '# TYPE tessera_x gauge',
        'tessera_x{a="1",b="say \\"hi\\"\\\\"} 2',
        'tessera_y 0.5',
        '',
      ].join('\n'),
    );
    expect(types.get('tessera_x')).toBe('gauge');
    expect(samples).toEqual([
      { name: 'tessera_x', labels: { a: '1', b: 'say "hi"\\' }, value: 2 },
      { name: 'tessera_y', labels: {}, value: 0.5 },
    ]);
  });

  it('refuses a line that is not a sample', () => {
    expect(() => parseExposition('not a metric line {')).toThrow('not a sample line');
  });
});

describe('ScrapeCache', () => {
  it('shares one read within the interval, reads again after it, and does not keep failures', async () => {
    let now = 0;
    let reads = 0;
    let fail = false;
    const cache = new ScrapeCache(
      async () => {
        reads++;
        if (fail) throw new Error('down');
        return reads;
      },
      5000,
      1000,
      () => now,
    );
    expect(await Promise.all([cache.get(), cache.get()])).toEqual([1, 1]);
    now = 4999;
    expect(await cache.get()).toBe(1);
    now = 5000;
    fail = true;
    await expect(cache.get()).rejects.toThrow('down');
    fail = false;
    expect(await cache.get()).toBe(3);
    expect(reads).toBe(3);
  });

  it('gives up on a read that does not answer in time', async () => {
    const cache = new ScrapeCache(() => new Promise<number>(() => undefined), 5000, 20);
    await expect(cache.get()).rejects.toThrow('no answer within 20 ms');
  });
});

describe('route label', () => {
  it('is the route template, or unmatched', () => {
    expect(routeLabel({ route: { path: '/v1/leases/:id' }, baseUrl: '' } as never)).toBe('/v1/leases/:id');
    expect(routeLabel({ route: undefined, baseUrl: '' } as never)).toBe(UNMATCHED);
    expect(routeLabel({ route: { path: /x/ }, baseUrl: '' } as never)).toBe(UNMATCHED);
    for (const path of ['/{*path}', '*', '/*path', '{*splat}']) expect(routeLabel({ route: { path }, baseUrl: '' } as never)).toBe(UNMATCHED);
    expect(routeLabel({ route: { path: '/v1/sys/internal/ui/mounts/*path' }, baseUrl: '' } as never)).toBe('/v1/sys/internal/ui/mounts/*path');
  });
});

describe('scrape-time gauges', () => {
  const sources = (over: Partial<ScrapeSources> = {}): ScrapeSources => ({
    leases: async () => [{ role: 'app-ro', plugin: 'postgres', state: 'active', count: 3 }],
    statics: async () => [
      { name: 'billing', status: 'active', rotated_at: new Date(1_700_000_000_000) },
      { name: 'orders', status: 'rotation_failed', rotated_at: null },
      { name: 'removed-from-config', status: 'active', rotated_at: new Date(1) },
    ],
    queues: async () => [{ queue: 'leases', counts: { waiting: 2, delayed: 5, active: 0 } }],
    known: { roles: [{ role: 'app-ro', plugin: 'postgres' }, { role: 'idle-ro', plugin: 'mysql' }], statics: ['billing', 'orders'], queues: ['leases'] },
    ...over,
  });
  const series = async (m: Metrics, name: string) => {
    const { samples } = parseExposition(await m.registry.metrics());
    return samples.filter((s) => s.name === name).map((s) => ({ ...s.labels, value: s.value }));
  };

  it('export nothing until given sources', async () => {
    const m = new Metrics();
    expect(await series(m, 'tessera_leases')).toEqual([]);
  });

  it('fill configured roles and states with zeros, count configured static secrets only, and report queue states', async () => {
    const m = new Metrics();
    m.useSources(sources());
    const leases = await series(m, 'tessera_leases');
    expect(leases).toHaveLength(8);
    expect(leases).toContainEqual({ role: 'app-ro', plugin: 'postgres', state: 'active', value: 3 });
    expect(leases).toContainEqual({ role: 'idle-ro', plugin: 'mysql', state: 'revoke_failed', value: 0 });
    expect(await series(m, 'tessera_static_secrets')).toEqual([
      { state: 'unowned', value: 0 },
      { state: 'active', value: 1 },
      { state: 'rotation_failed', value: 1 },
    ]);
    expect(await series(m, 'tessera_static_last_rotation_timestamp_seconds')).toEqual([{ name: 'billing', value: 1_700_000_000 }]);
    expect(await series(m, 'tessera_queue_jobs')).toEqual([
      { queue: 'leases', state: 'waiting', value: 2 },
      { queue: 'leases', state: 'delayed', value: 5 },
      { queue: 'leases', state: 'active', value: 0 },
      { queue: 'leases', state: 'failed', value: 0 },
    ]);
    expect(await series(m, 'tessera_metrics_source_up')).toContainEqual({ source: 'queues', value: 1 });
  });

  it('drop the series of a source that fails, and say so', async () => {
    const m = new Metrics();
    let down = false;
    m.useSources(sources({ queues: async () => (down ? Promise.reject(new Error('redis down')) : [{ queue: 'leases', counts: { waiting: 1 } }]) }));
    expect(await series(m, 'tessera_queue_jobs')).toHaveLength(4);
    down = true;
    expect(await series(m, 'tessera_queue_jobs')).toEqual([]);
    expect(await series(m, 'tessera_metrics_source_up')).toContainEqual({ source: 'queues', value: 0 });
    expect(await series(m, 'tessera_leases')).not.toEqual([]);
  });
});

describe('event metrics', () => {
  it('count a revocation by plugin, result and reason, and its lateness only when given', async () => {
    const m = new Metrics();
    m.revoked('postgres', 'expired', 0.4);
    m.revoked('postgres', 'owner');
    expect((await m.revocations.get()).values).toEqual([expect.objectContaining({ labels: { plugin: 'postgres', result: 'succeeded' }, value: 2 })]);
    expect((await m.expiryLateness.get()).values.find((v) => v.metricName === 'tessera_lease_expiry_lateness_seconds_count')?.value).toBe(1);
  });

  it('label a rotation with a known trigger, and anything else as unknown', async () => {
    const m = new Metrics();
    m.rotated('succeeded', 'cadence');
    m.rotated('failed', 'something-new');
    m.rotated('failed', undefined);
    expect((await m.rotations.get()).values.map((v) => [v.labels, v.value])).toEqual([
      [{ result: 'succeeded', trigger: 'cadence' }, 1],
      [{ result: 'failed', trigger: 'unknown' }, 2],
    ]);
  });

  it('audit chain health: ok until a check finds it broken, ok again after a verify that succeeds', async () => {
    const m = new Metrics();
    const ok = async () => (await m.auditChainOk.get()).values[0].value;
    expect(await ok()).toBe(1);
    m.auditChainBroken('heartbeat');
    expect(await ok()).toBe(0);
    m.auditVerified(false);
    expect((await m.auditChainProblems.get()).values.map((v) => [v.labels.check, v.value])).toEqual([
      ['heartbeat', 1],
      ['verify', 1],
    ]);
    m.auditVerified(true);
    expect(await ok()).toBe(1);
  });
});
