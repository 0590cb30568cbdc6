import { TestBroker, redisDump, sleep, startBroker } from '../support/broker';
import { IamTestServer } from '../support/iam-server';
import { mysqlLogin } from '../support/mysql';
import { MYSQL_ADMIN_URL } from '../support/services';
import { createIamUser, createMysqlAccount, createPgAccount, owned, settled, sign } from '../support/statics';
import { pgLogin } from '../support/target';

const EVENTS_KEY = 'events-key-for-tests-0123456789';

describe('rotation of static secrets', () => {
  const iam = new IamTestServer();
  let broker: TestBroker;
  let reader: string;
  let operator: string;
  const seen: string[] = [];

  beforeAll(async () => {
    const endpoint = await iam.start();
    await createPgAccount('tess_billing', 'legacy-pw-1');
    await createPgAccount('tess_imported', 'known-pw-123');
    await createMysqlAccount('tess_orders_a', 'legacy-a');
    await createMysqlAccount('tess_orders_b', 'legacy-b');
    await createIamUser(endpoint, 'legacy-batch');
    broker = await startBroker('rot', (doc) => {
      doc.connections.mysql = { plugin: 'mysql', url: MYSQL_ADMIN_URL };
      doc.connections.aws = { plugin: 'aws-iam', region: 'us-east-1', endpoint, access_key_id: 'AKIDTESSERAADMIN0000', secret_access_key: 'x', max_attempts: 1 };
      doc.events = { hmac_key: EVENTS_KEY };
      doc.static_secrets = {
        'billing-legacy': { connection: 'target', username: 'tess_billing', strategy: 'single' },
        'imported-legacy': { connection: 'target', username: 'tess_imported', password: 'known-pw-123' },
        'orders-legacy': { connection: 'mysql', usernames: ['tess_orders_a', 'tess_orders_b'], strategy: 'alternating' },
        'batch-keys': { connection: 'aws', iam_user: 'legacy-batch', grace: '2s' },
      };
      doc.policies.push({ name: 'legacy', subjects: ['spiffe://test.example/ns/legacy/*'], allow: [{ static: ['billing-legacy', 'imported-legacy', 'orders-legacy', 'batch-keys'] }] });
    });
    reader = await broker.token('ns/legacy/app');
    operator = await broker.token('ops/frank');
  });
  afterAll(async () => {
    await broker.close();
    await iam.stop();
  });

  const creds = async (name: string) => {
    const res = await broker.api('GET', `/v1/static/${name}/creds`, { token: reader });
    if (res.body.password) seen.push(res.body.password);
    if (res.body.secret_access_key) seen.push(res.body.secret_access_key);
    return res;
  };
  const rotate = async (name: string) => {
    const res = await broker.api('POST', `/v1/static/${name}/rotate`, { token: operator, body: { reason: 'test' } });
    expect(res.status).toBe(202);
    return settled(broker, operator, res.body.rotation_id);
  };

  it('takes ownership at registration: rotates once, or imports a configured password', async () => {
    const billing = await owned(broker, reader, 'billing-legacy');
    expect(billing).toMatchObject({ name: 'billing-legacy', username: 'tess_billing', version: 1 });
    expect(billing.password).not.toBe('legacy-pw-1');
    expect((await pgLogin({ username: 'tess_billing', password: billing.password })).ok).toBe(true);
    expect((await pgLogin({ username: 'tess_billing', password: 'legacy-pw-1' })).ok).toBe(false);
    seen.push(billing.password);

    const imported = await owned(broker, reader, 'imported-legacy');
    expect(imported).toMatchObject({ version: 1, password: 'known-pw-123' });
    const meta = await broker.api('GET', '/v1/static/imported-legacy', { token: operator });
    expect(meta.body).toMatchObject({ status: 'active', version: 1, strategy: 'single' });
    expect(JSON.stringify(meta.body)).not.toContain('known-pw-123');
  });

  it('single: after a rotation the new password logs in and the old one does not', async () => {
    const before = (await creds('billing-legacy')).body;
    const rotation = await rotate('billing-legacy');
    expect(rotation.status).toBe('succeeded');
    expect(rotation.steps.map((s: { step: string }) => s.step)).toEqual(expect.arrayContaining(['intent', 'set', 'verified']));
    const after = (await creds('billing-legacy')).body;
    expect(after.version).toBe(before.version + 1);
    expect((await pgLogin({ username: 'tess_billing', password: after.password })).ok).toBe(true);
    expect(await pgLogin({ username: 'tess_billing', password: before.password })).toEqual({ ok: false, code: '28P01' });
  });

  it('alternating: the previous credential still logs in, and across many rotations no read returns one that fails', async () => {
    await owned(broker, reader, 'orders-legacy');
    let stop = false;
    let reads = 0;
    const failures: string[] = [];
    const readerLoop = (async () => {
      while (!stop) {
        const c = (await creds('orders-legacy')).body;
        const login = await mysqlLogin(c.username, c.password);
        reads++;
        if (!login.ok) failures.push(`v${c.version} ${c.username}: ${login.code}`);
      }
    })();
    let previous = (await creds('orders-legacy')).body;
    for (let i = 0; i < 6; i++) {
      expect((await rotate('orders-legacy')).status).toBe('succeeded');
      const current = (await creds('orders-legacy')).body;
      expect(current.username).not.toBe(previous.username);
      expect((await mysqlLogin(current.username, current.password)).ok).toBe(true);
      expect((await mysqlLogin(previous.username, previous.password)).ok).toBe(true);
      previous = current;
    }
    stop = true;
    await readerLoop;
    expect(reads).toBeGreaterThan(10);
    expect(failures).toEqual([]);
  });

  it('IAM keys rotate with overlap: the new key works, the previous one until grace, never more than two', async () => {
    const first = await owned(broker, reader, 'batch-keys');
    expect(Object.keys(first)).toEqual(expect.arrayContaining(['access_key_id', 'secret_access_key', 'version']));
    expect((await rotate('batch-keys')).status).toBe('succeeded');
    const second = (await creds('batch-keys')).body;
    const keys = iam.accessKeys('legacy-batch').map((k) => k.id);
    expect(keys).toEqual(expect.arrayContaining([first.access_key_id, second.access_key_id]));
    expect(keys.length).toBeLessThanOrEqual(2);
    await sleep(3500); // grace (2 s) and a sweep
    expect(iam.accessKeys('legacy-batch').map((k) => k.id)).toEqual([second.access_key_id]);
    expect((await rotate('batch-keys')).status).toBe('succeeded');
    expect((await rotate('batch-keys')).status).toBe('succeeded');
    expect(iam.accessKeys('legacy-batch').length).toBeLessThanOrEqual(2);
    const latest = (await creds('batch-keys')).body;
    expect(latest.version).toBe(second.version + 2);
    expect(iam.accessKeys('legacy-batch').map((k) => k.id)).toContain(latest.access_key_id);
  });

  it('emergency rotation of every static secret on a connection reports each one and completes', async () => {
    const res = await broker.api('POST', '/v1/rotate', { token: operator, body: { connection: 'target' } });
    expect(res.status).toBe(202);
    expect(res.body.rotation_ids).toHaveLength(2);
    const results = await Promise.all(res.body.rotation_ids.map((id: string) => settled(broker, operator, id)));
    expect(results.map((r) => [r.name, r.trigger, r.status]).sort()).toEqual([
      ['billing-legacy', 'emergency', 'succeeded'],
      ['imported-legacy', 'emergency', 'succeeded'],
    ]);
    const imported = (await creds('imported-legacy')).body;
    expect(imported.password).not.toBe('known-pw-123');
    expect((await pgLogin({ username: 'tess_imported', password: imported.password })).ok).toBe(true);
  });

  it('a secret.exposed event with a valid signature rotates; a bad signature gets 401 and rotates nothing', async () => {
    const before = (await creds('billing-legacy')).body.version;
    const body = JSON.stringify({ type: 'secret.exposed', static: 'billing-legacy' });
    const bad = await broker.api('POST', '/v1/events', { raw: body, headers: { 'x-tessera-signature': sign('wrong-key-wrong-key-wrong', body) } });
    expect(bad.status).toBe(401);
    const tampered = await broker.api('POST', '/v1/events', { raw: body.replace('billing', 'imported'), headers: { 'x-tessera-signature': sign(EVENTS_KEY, body) } });
    expect(tampered.status).toBe(401);
    const unsigned = await broker.api('POST', '/v1/events', { raw: body });
    expect(unsigned.status).toBe(401);
    await sleep(300);
    expect((await creds('billing-legacy')).body.version).toBe(before);

    const good = await broker.api('POST', '/v1/events', { raw: body, headers: { 'x-tessera-signature': sign(EVENTS_KEY, body) } });
    expect(good.status).toBe(202);
    expect(good.body.rotation_ids).toHaveLength(1);
    expect((await settled(broker, operator, good.body.rotation_ids[0])).status).toBe('succeeded');
    expect((await creds('billing-legacy')).body.version).toBe(before + 1);
  });

  it('a signed workload.completed event revokes the workload\'s leases of that run', async () => {
    const workload = await broker.token('ns/app/batch');
    const lease = await broker.api('POST', '/v1/creds/rot-ro', { token: workload, body: { run_id: 'nightly-7' } });
    const body = JSON.stringify({ type: 'workload.completed', subject: 'spiffe://test.example/ns/app/batch', run_id: 'nightly-7' });
    const res = await broker.api('POST', '/v1/events', { raw: body, headers: { 'x-tessera-signature': sign(EVENTS_KEY, body) } });
    expect(res.body).toEqual({ revoked: 1 });
    expect((await pgLogin(lease.body.credentials)).ok).toBe(false);
  });

  it('workloads get 403 on rotate and on reading secrets their policy does not list; bad input is a 4xx', async () => {
    const workload = await broker.token('ns/app/api');
    expect((await broker.api('POST', '/v1/static/billing-legacy/rotate', { token: reader })).status).toBe(403);
    expect((await broker.api('POST', '/v1/rotate', { token: reader, body: { connection: 'target' } })).status).toBe(403);
    expect((await broker.api('GET', '/v1/static/billing-legacy/creds', { token: workload })).status).toBe(403);
    expect((await broker.api('GET', '/v1/static/__proto__/creds', { token: reader })).status).toBe(403);
    expect((await broker.api('POST', '/v1/static/nope/rotate', { token: operator })).status).toBe(404);
    expect((await broker.api('POST', '/v1/rotate', { token: operator, body: { connection: 'nope' } })).status).toBe(404);
    expect((await broker.api('POST', '/v1/rotate', { token: operator, body: { connection: '../x' } })).status).toBe(422);
    expect((await broker.api('GET', '/v1/rotations/rot_nope', { token: operator })).status).toBe(404);
    const nul = JSON.stringify({ type: 'workload.completed', subject: 'a\u0000b' });
    expect((await broker.api('POST', '/v1/events', { raw: nul, headers: { 'x-tessera-signature': sign(EVENTS_KEY, nul) } })).status).toBe(422);
    expect((await broker.api('GET', '/v1/static/a%00b', { token: operator })).status).toBe(404);
    expect((await broker.api('POST', '/v1/static/billing-legacy/rotate', { token: operator, body: { reason: 'x\u0000' } })).status).toBe(422);
    const body = JSON.stringify({ type: 'secret.exposed', static: 'billing-legacy', extra: 1 });
    expect((await broker.api('POST', '/v1/events', { raw: body, headers: { 'x-tessera-signature': sign(EVENTS_KEY, body) } })).status).toBe(422);
  });

  it('no plaintext secret in Redis job payloads, the audit trail or the state tables', async () => {
    expect(seen.length).toBeGreaterThan(10);
    const tables = JSON.stringify([
      await broker.state('SELECT * FROM static_versions'),
      await broker.state('SELECT * FROM static_secrets'),
      await broker.state('SELECT * FROM rotations'),
      await broker.state('SELECT body FROM audit_events'),
    ]);
    const redis = await redisDump(broker.doc.queue.prefix);
    for (const secret of new Set(seen)) {
      if (secret === 'known-pw-123') continue; // it is in the config file by design (imported)
      expect(tables).not.toContain(secret);
      expect(redis).not.toContain(secret);
    }
  });
});
