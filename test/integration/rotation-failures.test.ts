import { TestBroker, eventually, sleep, startBroker } from '../support/broker';
import { TcpProxy } from '../support/tcp-proxy';
import { TARGET_DB } from '../support/services';
import { createPgAccount, owned, settled } from '../support/statics';
import { pgLogin } from '../support/target';

describe('rotation when the target goes away', () => {
  const proxy = new TcpProxy('127.0.0.1', 5432);
  let broker: TestBroker;
  let reader: string;
  let operator: string;

  beforeAll(async () => {
    const port = await proxy.start();
    await createPgAccount('tess_flaky', 'legacy-flaky');
    broker = await startBroker('rotdown', (doc) => {
      doc.connections.target.url = `postgres://postgres@127.0.0.1:${port}/${TARGET_DB}`;
      doc.connections.target.connect_timeout = 1;
      doc.rotation_attempts = 2;
      doc.static_secrets = { flaky: { connection: 'target', username: 'tess_flaky' } };
      doc.policies.push({ name: 'legacy', subjects: ['spiffe://test.example/ns/legacy/*'], allow: [{ static: ['flaky'] }] });
    });
    reader = await broker.token('ns/legacy/app');
    operator = await broker.token('ops/gina');
  });
  afterAll(async () => {
    await broker.close();
    await proxy.stop();
  });

  it('an unreachable target fails the rotation, the current version keeps working, and it succeeds once the target is back', async () => {
    const current = await owned(broker, reader, 'flaky');
    await proxy.stop();
    const res = await broker.api('POST', '/v1/static/flaky/rotate', { token: operator, body: { reason: 'drill' } });
    const rotation = await settled(broker, operator, res.body.rotation_id, 30_000);
    expect(rotation.status).toBe('failed');
    expect(rotation.error).toEqual(expect.any(String));
    const meta = await broker.api('GET', '/v1/static/flaky', { token: operator });
    expect(meta.body.status).toBe('rotation_failed');
    expect(await broker.api('GET', '/metrics')).toMatchObject({ body: expect.stringMatching(/tessera_static_rotations_total\{result="failed",trigger="manual"\} [1-9]/) });
    expect((await broker.state(`SELECT 1 FROM audit_events WHERE type = 'static.rotation_failed'`)).length).toBeGreaterThanOrEqual(1);

    // Readers still get the current version, and it still logs in (directly, not through the proxy).
    const during = (await broker.api('GET', '/v1/static/flaky/creds', { token: reader })).body;
    expect(during.version).toBe(current.version);
    expect((await pgLogin({ username: 'tess_flaky', password: during.password })).ok).toBe(true);

    await proxy.start();
    const recovered = await eventually(async () => {
      const c = (await broker.api('GET', '/v1/static/flaky/creds', { token: reader })).body;
      return c.version > current.version ? c : undefined;
    }, 30_000);
    expect(recovered).toBeDefined();
    expect((await pgLogin({ username: 'tess_flaky', password: recovered.password })).ok).toBe(true);
    expect((await broker.api('GET', '/v1/static/flaky', { token: operator })).body.status).toBe('active');
  });
});

describe('cadence with two brokers on one PostgreSQL and Redis', () => {
  it('rotates repeatedly, and each due rotation happens exactly once', async () => {
    await createPgAccount('tess_ticker', 'legacy-ticker');
    const customise = (doc: Record<string, any>) => {
      doc.static_secrets = { ticker: { connection: 'target', username: 'tess_ticker', rotate_every: '2s' } };
      doc.policies.push({ name: 'legacy', subjects: ['spiffe://test.example/ns/legacy/*'], allow: [{ static: ['ticker'] }] });
    };
    const a = await startBroker('cadence', customise);
    const b = await startBroker('cadence', (doc) => {
      customise(doc);
      doc.encryption.key = a.doc.encryption.key; // replicas share the master key
    }, { reset: false });
    try {
      await sleep(9000);
      const versions = await a.state<{ version: number; state: string }>(`SELECT version, state FROM static_versions WHERE name = 'ticker' ORDER BY version`);
      const numbers = versions.map((v) => v.version);
      expect(numbers.length).toBeGreaterThanOrEqual(3); // registration + at least two cadence rotations
      expect(numbers).toEqual(numbers.map((_, i) => i + 1)); // one version per rotation, none twice, no gaps
      const rotated = await a.state<{ version: number }>(`SELECT (body::jsonb->'detail'->>'version')::int AS version FROM audit_events WHERE type = 'static.rotated'`);
      expect(rotated.map((r) => r.version).sort((x, y) => x - y)).toEqual(numbers.filter((n) => versions.find((v) => v.version === n)!.state !== 'pending'));
      const reader = await a.token('ns/legacy/app');
      const c = (await b.api('GET', '/v1/static/ticker/creds', { token: reader })).body;
      expect((await pgLogin({ username: 'tess_ticker', password: c.password })).ok).toBe(true);
    } finally {
      await b.close();
      await a.close();
    }
  });
});
