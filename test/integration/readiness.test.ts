import { TestBroker, eventually, sleep, startBroker } from '../support/broker';
import { IamTestServer } from '../support/iam-server';

/** An aws-iam connection on the IAM test server; moto's and LocalStack's usual `test` keys. */
const withIam = (endpoint: string, health: Record<string, unknown>) => (doc: Record<string, any>) => {
  doc.connections.aws = { plugin: 'aws-iam', region: 'us-east-1', endpoint, access_key_id: 'test', secret_access_key: 'test', max_attempts: 1 };
  doc.health = health;
};

describe('readiness never calls the targets per request', () => {
  const iam = new IamTestServer();
  let broker: TestBroker;
  const pings = () => iam.calls.filter((c) => c === 'ListUsers').length;

  beforeAll(async () => {
    const endpoint = await iam.start();
    broker = await startBroker('ready', withIam(endpoint, { probe_every: '1s', ready_rps: 1000 }));
    // The first background round has run.
    await eventually(async () => (await broker.api('GET', '/v1/health/ready')).body.details?.targets?.checked_at, 10_000);
  });
  afterAll(async () => {
    await broker.close();
    await iam.stop();
  });

  it('100 readiness checks cost at most a few target calls (the background probes)', async () => {
    const before = pings();
    const started = Date.now();
    const answers = await Promise.all(Array.from({ length: 100 }, () => broker.api('GET', '/v1/health/ready')));
    const elapsedMs = Date.now() - started;
    const calls = pings() - before;
    process.stdout.write(`readiness: 100 checks in ${elapsedMs} ms caused ${calls} IAM ListUsers call(s)\n`);
    expect(answers.map((a) => a.status)).toEqual(Array(100).fill(200));
    expect(answers[0].body.details.targets).toMatchObject({ status: 'up', state: 'ok', degraded: [] });
    // One probe round a second, whatever the request rate.
    expect(calls).toBeLessThanOrEqual(Math.ceil(elapsedMs / 1000) + 1);
    expect(calls).toBeLessThanOrEqual(3);
  });

  it('a target that goes down shows as degraded (200) and in tessera_target_up, from the background probe', async () => {
    const up = await broker.api('GET', '/metrics');
    expect(up.body).toMatch(/tessera_target_up\{connection="aws"\} 1/);
    expect(up.body).toMatch(/tessera_target_up\{connection="target"\} 1/);
    await iam.stop();
    try {
      const degraded = await eventually(async () => {
        const ready = await broker.api('GET', '/v1/health/ready');
        return ready.body.details?.targets?.state === 'degraded' ? ready : undefined;
      }, 10_000);
      expect(degraded?.status).toBe(200);
      expect(degraded?.body.details.targets.degraded).toEqual(['aws']);
      expect((await broker.api('GET', '/metrics')).body).toMatch(/tessera_target_up\{connection="aws"\} 0/);
    } finally {
      await iam.start();
    }
  });
});

describe('readiness is rate limited per client address', () => {
  const iam = new IamTestServer();
  let broker: TestBroker;

  beforeAll(async () => {
    broker = await startBroker('readyrl', withIam(await iam.start(), { probe_every: '30s', ready_rps: 1 }));
  });
  afterAll(async () => {
    await broker.close();
    await iam.stop();
  });

  it('beyond health.ready_rps (bursts of twice that), 429; the limit refills', async () => {
    const before = iam.calls.filter((c) => c === 'ListUsers').length;
    const started = performance.now();
    const statuses = await Promise.all(Array.from({ length: 40 }, () => broker.api('GET', '/v1/health/ready').then((r) => r.status)));
    // The burst (2), and what refilled at 1/s while the 40 requests were answered (a slow machine takes longer).
    // One token a second keeps the check after the burst well clear of the next refill.
    const allowed = 2 + Math.ceil((performance.now() - started) / 1000);
    expect(statuses.filter((s) => s === 200).length).toBeGreaterThanOrEqual(2);
    expect(statuses.filter((s) => s === 200).length).toBeLessThanOrEqual(allowed);
    expect(statuses.filter((s) => s === 429).length).toBeGreaterThanOrEqual(40 - allowed);
    expect(iam.calls.filter((c) => c === 'ListUsers').length - before).toBeLessThanOrEqual(1);
    const refused = await broker.api('GET', '/v1/health/ready');
    expect(refused.status).toBe(429);
    expect(refused.body.error.code).toBe('too_many_readiness_checks');
    await sleep(1100);
    expect((await broker.api('GET', '/v1/health/ready')).status).toBe(200);
    // Liveness is not limited.
    expect((await broker.api('GET', '/v1/health/live')).status).toBe(200);
  });
});
