import { Client } from 'pg';
import { TestBroker, eventually, startBroker } from '../support/broker';
import { PG_ADMIN_URL, TARGET_DB } from '../support/services';
import { createPgAccount, owned, settled } from '../support/statics';
import { pgLogin, withAdmin } from '../support/target';

/** The server's limit on a login's SCRAM exchange, lowered for this file so the second sweep comes soon. */
const AUTH_TIMEOUT_S = 10;

/**
 * A login whose SCRAM exchange is held after the server's first message: by then PostgreSQL has read
 * the role's verifier, and it checks the client's proof against that one whenever the proof comes.
 */
function heldLogin(user: string, password: string) {
  let release!: () => void;
  const gate = new Promise<void>((resolve) => (release = resolve));
  let held!: () => void;
  const reached = new Promise<void>((resolve) => (held = resolve));
  class HeldClient extends Client {
    async _handleAuthSASLContinue(msg: unknown): Promise<void> {
      held();
      await gate;
      return (Client.prototype as any)._handleAuthSASLContinue.call(this, msg);
    }
  }
  const admin = new URL(PG_ADMIN_URL);
  const client = new HeldClient({ host: admin.hostname, port: Number(admin.port || 5432), database: TARGET_DB, user, password });
  client.on('error', () => undefined);
  const connected = client.connect();
  connected.catch(() => undefined);
  return { client, reached, connected, finish: release, alive: () => client.query('SELECT 1').then(() => true, () => false) };
}

describe('a password replaced because it leaked: logins begun before the change cannot keep a session', () => {
  let broker: TestBroker;
  let reader: string;
  let operator: string;
  const clients: Client[] = [];

  beforeAll(async () => {
    await withAdmin('postgres', async (c) => {
      await c.query(`ALTER SYSTEM SET authentication_timeout = '${AUTH_TIMEOUT_S}s'`);
      await c.query('SELECT pg_reload_conf()');
    });
    await createPgAccount('tess_late_single', 'legacy-late');
    broker = await startBroker('late', (doc) => {
      doc.static_secrets = { 'pg-late': { connection: 'target', username: 'tess_late_single', strategy: 'single' } };
      doc.policies.push({ name: 'legacy', subjects: ['spiffe://test.example/ns/legacy/*'], allow: [{ static: ['pg-late'] }] });
    });
    reader = await broker.token('ns/legacy/app');
    operator = await broker.token('ops/erin');
  });
  afterAll(async () => {
    await Promise.all(clients.map((c) => c.end().catch(() => undefined)));
    await broker?.close();
    await withAdmin('postgres', async (c) => {
      await c.query('ALTER SYSTEM RESET authentication_timeout');
      await c.query('SELECT pg_reload_conf()');
    });
  });

  it('a login held across an emergency rotation gets in with the exposed password, and the second sweep ends its session', async () => {
    const exposed = await owned(broker, reader, 'pg-late');
    const late = heldLogin(exposed.username, exposed.password);
    clients.push(late.client);
    await late.reached;

    const res = await broker.api('POST', '/v1/static/pg-late/rotate', { token: operator, body: { emergency: true, reason: 'in a paste' } });
    expect(res.status).toBe(202);
    expect(await settled(broker, operator, res.body.rotation_id)).toMatchObject({ status: 'succeeded' });
    expect(await pgLogin({ username: exposed.username, password: exposed.password })).toEqual({ ok: false, code: '28P01' });
    const sweeps = await broker.state(`SELECT account, until_at - due_at >= interval '10 minutes' AS long FROM late_login_sweeps WHERE name = 'pg-late'`);
    expect(sweeps).toContainEqual({ account: 'tess_late_single', long: true });

    // The held login finishes now, with the exposed password, after every session of the account was ended.
    late.finish();
    await late.connected;
    expect(await late.alive()).toBe(true);
    // A session opened with the new password after the rotation.
    const current = (await broker.api('GET', '/v1/static/pg-late/creds', { token: reader })).body;
    const fresh = new Client({ host: new URL(PG_ADMIN_URL).hostname, database: TARGET_DB, user: current.username, password: current.password });
    fresh.on('error', () => undefined);
    clients.push(fresh);
    await fresh.connect();

    // Once the server's authentication_timeout has passed, the late session is ended; the new one is not.
    await eventually(async () => !(await late.alive()), (AUTH_TIMEOUT_S + 10) * 1000, 250);
    expect(await fresh.query('SELECT 1').then(() => true, () => false)).toBe(true);
    const events = () => broker.state(`SELECT body::jsonb->'detail' AS detail FROM audit_events WHERE type = 'static.late_sessions_ended'`);
    expect((await events()).map((e) => e.detail)).toEqual([{ name: 'pg-late', account: 'tess_late_single', sessions: 1 }]);
    // The sweeps go on (a late login can be listed later still), and they never touch the new session.
    const swept = async () => (await broker.state(`SELECT max(due_at) AS at FROM late_login_sweeps WHERE name = 'pg-late'`))[0].at.getTime();
    const first = await swept();
    await eventually(async () => (await swept()) > first, 10_000, 250);
    expect(await fresh.query('SELECT 1').then(() => true, () => false)).toBe(true);
    expect(await events()).toHaveLength(1);
  }, 90_000);
});
