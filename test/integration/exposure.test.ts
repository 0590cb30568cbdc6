import mysql from 'mysql2/promise';
import { Client } from 'pg';
import { TestBroker, eventually, sleep, startBroker } from '../support/broker';
import { IamTestServer } from '../support/iam-server';
import { mysqlLogin } from '../support/mysql';
import { MYSQL_ADMIN_URL, PG_ADMIN_URL, TARGET_DB } from '../support/services';
import { createIamUser, createMysqlAccount, createPgAccount, owned, settled, sign } from '../support/statics';
import { pgLogin, withAdmin } from '../support/target';

const EVENTS_KEY = 'events-key-for-exposure-tests-0123';

/** A session opened with a credential, to check that exposure ends it. */
interface Session {
  alive(): Promise<boolean>;
  close(): Promise<void>;
}

async function pgSession(username: string, password: string): Promise<Session> {
  const admin = new URL(PG_ADMIN_URL);
  const client = new Client({ host: admin.hostname, port: Number(admin.port || 5432), database: TARGET_DB, user: username, password });
  client.on('error', () => undefined);
  await client.connect();
  return {
    alive: () => client.query('SELECT 1').then(() => true, () => false),
    close: () => client.end().catch(() => undefined),
  };
}

async function mysqlSession(username: string, password: string): Promise<Session> {
  const url = new URL(MYSQL_ADMIN_URL);
  const conn = await mysql.createConnection({ host: url.hostname, port: Number(url.port || 3306), user: username, password, database: 'test' });
  conn.on('error', () => undefined);
  return {
    alive: () => conn.query('SELECT 1').then(() => true, () => false),
    close: () => conn.end().catch(() => undefined),
  };
}

/**
 * DESIGN §4 and invariant 8: after an emergency or secret.exposed rotation reports `succeeded`, no
 * credential of the secret from before the trigger logs in, no session opened with one survives, and
 * the stored current version logs in.
 */
describe('exposure kills the exposed credential', () => {
  const iam = new IamTestServer();
  let broker: TestBroker;
  let reader: string;
  let operator: string;

  beforeAll(async () => {
    const endpoint = await iam.start();
    await createPgAccount('tess_exp_single', 'legacy-single');
    await createPgAccount('tess_exp_alt_a', 'legacy-alt-a');
    await createPgAccount('tess_exp_alt_b', 'legacy-alt-b');
    await createPgAccount('tess_exp_cad_a', 'legacy-cad-a');
    await createPgAccount('tess_exp_cad_b', 'legacy-cad-b');
    await createMysqlAccount('tess_exp_my', 'legacy-my');
    await createIamUser(endpoint, 'legacy-exposed');
    broker = await startBroker('exp', (doc) => {
      doc.connections.mysql = { plugin: 'mysql', url: MYSQL_ADMIN_URL };
      doc.connections.aws = { plugin: 'aws-iam', region: 'us-east-1', endpoint, access_key_id: 'AKIDTESSERAADMIN0000', secret_access_key: 'x', max_attempts: 1 };
      doc.events = { hmac_key: EVENTS_KEY };
      doc.static_secrets = {
        'pg-single': { connection: 'target', username: 'tess_exp_single', strategy: 'single' },
        'pg-alt': { connection: 'target', usernames: ['tess_exp_alt_a', 'tess_exp_alt_b'], strategy: 'alternating' },
        'pg-cadence': { connection: 'target', usernames: ['tess_exp_cad_a', 'tess_exp_cad_b'], strategy: 'alternating', grace: '2s' },
        'my-single': { connection: 'mysql', username: 'tess_exp_my', strategy: 'single' },
        'aws-keys': { connection: 'aws', iam_user: 'legacy-exposed' },
      };
      doc.policies.push({ name: 'legacy', subjects: ['spiffe://test.example/ns/legacy/*'], allow: [{ static: ['pg-single', 'pg-alt', 'pg-cadence', 'my-single', 'aws-keys'] }] });
    });
    reader = await broker.token('ns/legacy/app');
    operator = await broker.token('ops/erin');
  });
  afterAll(async () => {
    await broker.close();
    await iam.stop();
  });

  const creds = async (name: string) => (await broker.api('GET', `/v1/static/${name}/creds`, { token: reader })).body;
  const rotate = async (name: string, body: object) => {
    const res = await broker.api('POST', `/v1/static/${name}/rotate`, { token: operator, body });
    expect(res.status).toBe(202);
    return settled(broker, operator, res.body.rotation_id);
  };
  const expose = async (name: string) => {
    const body = JSON.stringify({ type: 'secret.exposed', static: name });
    const res = await broker.api('POST', '/v1/events', { raw: body, headers: { 'x-tessera-signature': sign(EVENTS_KEY, body) } });
    expect(res.status).toBe(202);
    return settled(broker, operator, res.body.rotation_ids[0]);
  };
  const steps = (rotation: { steps: { step: string }[] }) => rotation.steps.map((s) => s.step);

  it('single (PostgreSQL), secret.exposed: the old password is refused, its open session is dead, the new one logs in', async () => {
    const before = await owned(broker, reader, 'pg-single');
    const session = await pgSession(before.username, before.password);
    expect(await session.alive()).toBe(true);

    const rotation = await expose('pg-single');
    expect(rotation).toMatchObject({ status: 'succeeded', trigger: 'event' });
    expect(steps(rotation)).toEqual(expect.arrayContaining(['set', 'verified', 'contained']));

    expect(await session.alive()).toBe(false);
    await session.close();
    expect(await pgLogin({ username: before.username, password: before.password })).toEqual({ ok: false, code: '28P01' });
    const after = await creds('pg-single');
    expect(after.version).toBe(before.version + 1);
    expect((await pgLogin({ username: after.username, password: after.password })).ok).toBe(true);
    // The exposure is over: the sweeper does not rotate the secret again.
    expect(await broker.state('SELECT exposed_at FROM static_secrets WHERE name = $1', ['pg-single'])).toEqual([{ exposed_at: null }]);
  });

  it('single (MariaDB), emergency rotate: the old password is refused and its open session is dead', async () => {
    const before = await owned(broker, reader, 'my-single');
    const session = await mysqlSession(before.username, before.password);
    expect(await session.alive()).toBe(true);

    const rotation = await rotate('my-single', { emergency: true, reason: 'leaked in a build log' });
    expect(rotation).toMatchObject({ status: 'succeeded', trigger: 'emergency' });

    expect(await session.alive()).toBe(false);
    await session.close();
    expect((await mysqlLogin(before.username, before.password)).ok).toBe(false);
    const after = await creds('my-single');
    expect((await mysqlLogin(after.username, after.password)).ok).toBe(true);
  });

  it('alternating, emergency: both accounts get new passwords and lose their sessions, while every read of creds logs in', async () => {
    const v1 = await owned(broker, reader, 'pg-alt');
    const v1Session = await pgSession(v1.username, v1.password);
    // A cadence-style rotation first, so both accounts hold a known password: current, and previous in grace.
    expect((await rotate('pg-alt', {})).status).toBe('succeeded');
    const current = await creds('pg-alt');
    expect(current.username).not.toBe(v1.username);
    expect((await pgLogin({ username: v1.username, password: v1.password })).ok).toBe(true);
    const currentSession = await pgSession(current.username, current.password);

    let stop = false;
    let reads = 0;
    const failures: string[] = [];
    const readerLoop = (async () => {
      while (!stop) {
        const c = await creds('pg-alt');
        const login = await pgLogin({ username: c.username, password: c.password });
        reads++;
        if (!login.ok) failures.push(`v${c.version} ${c.username}: ${login.code}`);
      }
    })();
    await sleep(200);
    const rotation = await rotate('pg-alt', { emergency: true });
    stop = true;
    await readerLoop;

    expect(rotation.status).toBe('succeeded');
    expect(steps(rotation)).toContain('contained');
    expect(reads).toBeGreaterThan(3);
    expect(failures).toEqual([]);
    expect(await v1Session.alive()).toBe(false);
    expect(await currentSession.alive()).toBe(false);
    await Promise.all([v1Session.close(), currentSession.close()]);

    const after = await creds('pg-alt');
    expect(after.username).toBe(v1.username);
    expect((await pgLogin({ username: after.username, password: after.password })).ok).toBe(true);
    expect(await pgLogin({ username: v1.username, password: v1.password })).toEqual({ ok: false, code: '28P01' });
    expect(await pgLogin({ username: current.username, password: current.password })).toEqual({ ok: false, code: '28P01' });
    const meta = await broker.api('GET', '/v1/static/pg-alt', { token: operator });
    expect(meta.body.versions.filter((v: { state: string }) => v.state === 'previous')).toEqual([]);
  });

  it('alternating, emergency: a session the inactive account had open from before is ended too', async () => {
    const current = await creds('pg-alt');
    const inactive = current.username === 'tess_exp_alt_a' ? 'tess_exp_alt_b' : 'tess_exp_alt_a';
    // Somebody still holds a session on the inactive account (opened with a password from before).
    const known = 'known-to-the-attacker-1';
    await withAdmin('postgres', (c) => c.query(`ALTER ROLE "${inactive}" PASSWORD '${known}'`));
    const stale = await pgSession(inactive, known);
    expect(await stale.alive()).toBe(true);

    expect((await rotate('pg-alt', { emergency: true })).status).toBe('succeeded');
    expect(await stale.alive()).toBe(false);
    await stale.close();
    expect(await pgLogin({ username: inactive, password: known })).toEqual({ ok: false, code: '28P01' });
    expect(await pgLogin({ username: current.username, password: current.password })).toEqual({ ok: false, code: '28P01' });
    const after = await creds('pg-alt');
    expect((await pgLogin({ username: after.username, password: after.password })).ok).toBe(true);
  });

  it('IAM, emergency: every key that existed before is deleted (not only deactivated), the new key works', async () => {
    const first = await owned(broker, reader, 'aws-keys');
    expect((await rotate('aws-keys', {})).status).toBe('succeeded'); // a second key; the first stays for grace (1h)
    const second = await creds('aws-keys');
    expect(iam.accessKeys('legacy-exposed').map((k) => k.id).sort()).toEqual([first.access_key_id, second.access_key_id].sort());

    const rotation = await expose('aws-keys');
    expect(rotation.status).toBe('succeeded');
    const after = await creds('aws-keys');
    expect(iam.accessKeys('legacy-exposed')).toEqual([{ id: after.access_key_id, status: 'Active' }]);
    expect([first.access_key_id, second.access_key_id]).not.toContain(after.access_key_id);
  });

  it('cadence keeps its grace, and when grace ends the superseded alternating account stops logging in and loses its sessions', async () => {
    const first = await owned(broker, reader, 'pg-cadence');
    const session = await pgSession(first.username, first.password);
    expect((await rotate('pg-cadence', {})).status).toBe('succeeded');
    const second = await creds('pg-cadence');
    expect(second.username).not.toBe(first.username);
    // Within grace the previous account still works.
    expect((await pgLogin({ username: first.username, password: first.password })).ok).toBe(true);
    // grace is 2 s; the sweep runs every second.
    const refused = await eventually(async () => !(await pgLogin({ username: first.username, password: first.password })).ok, 10_000);
    expect(refused).toBe(true);
    expect(await eventually(async () => !(await session.alive()), 5_000)).toBe(true);
    await session.close();
    expect((await pgLogin({ username: second.username, password: second.password })).ok).toBe(true);
    const retired = await eventually(async () => {
      const meta = await broker.api('GET', '/v1/static/pg-cadence', { token: operator });
      return meta.body.versions.find((v: { version: number }) => v.version === first.version).state === 'retired';
    }, 5_000);
    expect(retired).toBe(true);
  });

  describe('signed webhooks', () => {
    const post = (body: string, signature: string) => broker.api('POST', '/v1/events', { raw: body, headers: { 'x-tessera-signature': signature } });
    const version = async () => (await creds('pg-single')).version;

    it('a replayed signature is refused and rotates nothing', async () => {
      const body = JSON.stringify({ type: 'secret.exposed', static: 'pg-single' });
      const signature = sign(EVENTS_KEY, body);
      const first = await post(body, signature);
      expect(first.status).toBe(202);
      await settled(broker, operator, first.body.rotation_ids[0]);
      const before = await version();
      const replay = await post(body, signature);
      expect(replay.status).toBe(401);
      expect(replay.body.error.code).toBe('replayed_signature');
      await sleep(300);
      expect(await version()).toBe(before);
    });

    it('a stale or future timestamp, and the old sha256= scheme, are refused and rotate nothing', async () => {
      const before = await version();
      const body = JSON.stringify({ type: 'secret.exposed', static: 'pg-single' });
      const now = Math.floor(Date.now() / 1000);
      // `now` is floored and the request takes time: keep a few seconds off the 300 s edge.
      const stale = await post(body, sign(EVENTS_KEY, body, now - 305));
      expect(stale.status).toBe(401);
      expect(stale.body.error.code).toBe('stale_signature');
      expect((await post(body, sign(EVENTS_KEY, body, now + 305))).status).toBe(401);
      const { createHmac } = await import('node:crypto');
      const legacy = `sha256=${createHmac('sha256', EVENTS_KEY).update(body).digest('hex')}`;
      expect((await post(body, legacy)).status).toBe(401);
      // A valid signature for another timestamp does not carry over.
      const moved = sign(EVENTS_KEY, body, now).replace(`t=${now}`, `t=${now - 1}`);
      expect((await post(body, moved)).status).toBe(401);
      await sleep(300);
      expect(await version()).toBe(before);
      const events = await broker.state(`SELECT body FROM audit_events WHERE type = 'request.denied' ORDER BY id DESC LIMIT 4`);
      expect(events.length).toBeGreaterThan(0);
    });
  });
});
