import { Client } from 'pg';
import { TestBroker, eventually, startBroker } from '../support/broker';
import { PG_ADMIN_URL, TARGET_DB } from '../support/services';
import { createPgAccount, owned, settled } from '../support/statics';
import { pgLogin, withAdmin } from '../support/target';
import { jobContext } from '../../src/jobs/job-handler';
import { RotationBatchRepository } from '../../src/statics/rotation-batch.repository';
import { RotationBatchService } from '../../src/statics/rotation-batch.service';
import { newRotationId } from '../../src/statics/rotation.model';
import { StaticRepository } from '../../src/statics/static.repository';
import { Database } from '../../src/storage/database';

const SINGLES = ['eb-1', 'eb-2', 'eb-3', 'eb-4'];
const ALL = [...SINGLES, 'eb-alt'];
const BATCH_STEPS = ['started', 'intent', 'set', 'verified', 'contained'];

async function pgSession(username: string, password: string) {
  const admin = new URL(PG_ADMIN_URL);
  const client = new Client({ host: admin.hostname, port: Number(admin.port || 5432), database: TARGET_DB, user: username, password });
  client.on('error', () => undefined);
  await client.connect();
  return { alive: () => client.query('SELECT 1').then(() => true, () => false), close: () => client.end().catch(() => undefined) };
}

/**
 * An emergency on a whole connection rotates its password secrets in batches (one statement per step
 * for the batch): the same outcome as one rotation each — every exposed password refused, every
 * session opened with one ended, every new one logging in — and whatever the batch cannot do goes on
 * in the secret's own job.
 */
describe('emergency rotation of a connection, in batches', () => {
  let broker: TestBroker;
  let reader: string;
  let operator: string;

  beforeAll(async () => {
    for (const n of [1, 2, 3, 4]) await createPgAccount(`tess_eb_${n}`, `legacy-eb-${n}`);
    await createPgAccount('tess_eb_alt_a', 'legacy-eb-alt-a');
    await createPgAccount('tess_eb_alt_b', 'legacy-eb-alt-b');
    broker = await startBroker('eb', (doc) => {
      doc.static_secrets = {
        ...Object.fromEntries([1, 2, 3, 4].map((n) => [`eb-${n}`, { connection: 'target', username: `tess_eb_${n}`, strategy: 'single' }])),
        'eb-alt': { connection: 'target', usernames: ['tess_eb_alt_a', 'tess_eb_alt_b'], strategy: 'alternating' },
      };
      doc.policies.push({ name: 'legacy', subjects: ['spiffe://test.example/ns/legacy/*'], allow: [{ static: ALL }] });
    });
    reader = await broker.token('ns/legacy/app');
    operator = await broker.token('ops/grace');
    for (const name of ALL) await owned(broker, reader, name);
  });
  afterAll(async () => {
    await broker.close();
  });

  const creds = async (name: string) => (await broker.api('GET', `/v1/static/${name}/creds`, { token: reader })).body;
  const emergency = async () => {
    const res = await broker.api('POST', '/v1/rotate', { token: operator, body: { connection: 'target', reason: 'leaked' } });
    expect(res.status).toBe(202);
    return res.body.rotation_ids as string[];
  };
  /** name → its rotation's steps with their times, for the given rotation ids. */
  const stepsOf = async (ids: string[]) => {
    const rows = await broker.state<{ name: string; steps: { step: string; at: string }[] }>('SELECT name, steps FROM rotations WHERE id = ANY($1::text[])', [ids]);
    return new Map(rows.map((r) => [r.name, r.steps]));
  };
  const intentAt = (steps: { step: string; at: string }[]) => steps.find((s) => s.step === 'intent')?.at;

  it('rotates every secret of the connection in one batch: old passwords refused, old sessions ended, new ones log in, all audited', async () => {
    const before = new Map(await Promise.all(ALL.map(async (n) => [n, await creds(n)] as const)));
    const sessions = await Promise.all(ALL.map((n) => pgSession(before.get(n).username, before.get(n).password)));
    const auditBefore = await broker.state<{ type: string; n: number }>(`SELECT type, count(*)::int AS n FROM audit_events WHERE type LIKE 'static.%' GROUP BY type`);

    const ids = await emergency();
    expect(ids).toHaveLength(ALL.length);
    const results = await Promise.all(ids.map((id) => settled(broker, operator, id)));
    expect(results.map((r) => [r.name, r.status, r.trigger]).sort()).toEqual(ALL.map((n) => [n, 'succeeded', 'emergency']));

    const steps = await stepsOf(ids);
    for (const name of ALL) expect(steps.get(name)!.map((s) => s.step)).toEqual(BATCH_STEPS);
    // One statement wrote every intent: one time for all.
    expect(new Set(ALL.map((n) => intentAt(steps.get(n)!))).size).toBe(1);

    for (const s of sessions) expect(await s.alive()).toBe(false);
    await Promise.all(sessions.map((s) => s.close()));
    for (const name of ALL) {
      const old = before.get(name);
      expect(await pgLogin({ username: old.username, password: old.password })).toEqual({ ok: false, code: '28P01' });
      const now = await creds(name);
      expect(now.version).toBe(old.version + 1);
      expect((await pgLogin({ username: now.username, password: now.password })).ok).toBe(true);
    }
    // The alternating secret's other account was given a password nobody knows.
    const alt = await creds('eb-alt');
    const other = alt.username === 'tess_eb_alt_a' ? 'tess_eb_alt_b' : 'tess_eb_alt_a';
    expect(other).toBe(before.get('eb-alt').username);
    expect(await broker.state('SELECT name FROM static_secrets WHERE exposed_at IS NOT NULL')).toEqual([]);
    // Every account whose sessions were ended for a replaced password has its late-login sweeps
    // recorded: each secret's new account, and the alternating secret's other one.
    const swept = await broker.state<{ name: string; account: string }>(`SELECT DISTINCT name, account FROM late_login_sweeps`);
    for (const name of ALL) expect(swept.filter((s) => s.name === name).map((s) => s.account)).toContain((await creds(name)).username);
    expect(swept.filter((s) => s.name === 'eb-alt').map((s) => s.account)).toContain(other);
    const auditAfter = await broker.state<{ type: string; n: number }>(`SELECT type, count(*)::int AS n FROM audit_events WHERE type LIKE 'static.%' GROUP BY type`);
    const added = (type: string) => (auditAfter.find((a) => a.type === type)?.n ?? 0) - (auditBefore.find((a) => a.type === type)?.n ?? 0);
    expect(added('static.rotated')).toBe(ALL.length);
    expect(added('static.exposure_contained')).toBe(ALL.length);
  });

  it('a secret whose rotation lock is held elsewhere is left to its own job, which rotates it once the lock is free', async () => {
    const held = new Client({ connectionString: broker.config.storage.postgres_url });
    await held.connect();
    await held.query(`SELECT pg_advisory_lock(hashtext('tessera:static:' || $1))`, ['eb-2']);
    const old = await creds('eb-2');
    let ids: string[];
    try {
      ids = await emergency();
      await eventually(async () => {
        const rows = await broker.state<{ name: string; status: string }>('SELECT name, status FROM rotations WHERE id = ANY($1::text[])', [ids]);
        return rows.filter((r) => r.name !== 'eb-2').every((r) => r.status === 'succeeded');
      });
      const [waiting] = await broker.state<{ status: string }>(`SELECT status FROM rotations WHERE id = ANY($1::text[]) AND name = 'eb-2'`, [ids]);
      expect(waiting.status).toBe('queued');
      expect((await pgLogin({ username: old.username, password: old.password })).ok).toBe(true);
    } finally {
      await held.query(`SELECT pg_advisory_unlock(hashtext('tessera:static:' || $1))`, ['eb-2']);
      await held.end();
    }
    const rotation = await settled(broker, operator, (await broker.state<{ id: string }>(`SELECT id FROM rotations WHERE id = ANY($1::text[]) AND name = 'eb-2'`, [ids]))[0].id, 30_000);
    expect(rotation.status).toBe('succeeded');
    const steps = await stepsOf(ids);
    expect(steps.get('eb-2')!.map((s) => s.step)).toEqual(BATCH_STEPS);
    expect(intentAt(steps.get('eb-2')!)).not.toBe(intentAt(steps.get('eb-1')!));
    expect(await pgLogin({ username: old.username, password: old.password })).toEqual({ ok: false, code: '28P01' });
    const now = await creds('eb-2');
    expect((await pgLogin({ username: now.username, password: now.password })).ok).toBe(true);
  });

  it('a batch run again after a crash leaves a rotation it had begun to the secret\'s own job, which resumes it from its intent', async () => {
    const statics = broker.app.get(StaticRepository);
    const batch = broker.app.get(RotationBatchRepository);
    const [one, four] = [await creds('eb-1'), await creds('eb-4')];
    // What a batch that stopped after writing its intents leaves: requests, the exposure, eb-1's intent.
    await statics.markExposed(['eb-1', 'eb-4']);
    const requests = [
      { id: newRotationId(), name: 'eb-1', target: one.version + 1, trigger: 'emergency' },
      { id: newRotationId(), name: 'eb-4', target: four.version + 1, trigger: 'emergency' },
    ];
    await statics.createRotations(requests);
    const intended = 'intent-written-before-the-crash-0123456789';
    await batch.insertPending([{ name: 'eb-1', version: one.version + 1, account: one.username, content: { password: intended } }]);

    await broker.app.get(RotationBatchService).run({ batchId: requests[0].id, rotations: requests.map((r) => ({ name: r.name, targetVersion: r.target })) }, jobContext(1, 4));
    const results = await Promise.all(requests.map((r) => settled(broker, operator, r.id)));
    expect(results.map((r) => r.status)).toEqual(['succeeded', 'succeeded']);
    const steps = await stepsOf(requests.map((r) => r.id));
    // eb-4 went the batch's way; eb-1 (intent written before the crash) was started by the batch run
    // again, then resumed by its own job, which set the password of the intent.
    expect(steps.get('eb-4')!.map((s) => s.step)).toEqual(BATCH_STEPS);
    expect(steps.get('eb-1')!.map((s) => s.step)).toEqual(['intent', 'started', 'started', 'set', 'verified', 'contained']);
    const after = await creds('eb-1');
    expect(after).toMatchObject({ version: one.version + 1, password: intended });
    expect((await pgLogin({ username: after.username, password: intended })).ok).toBe(true);
    expect(await pgLogin({ username: one.username, password: one.password })).toEqual({ ok: false, code: '28P01' });
    expect(await pgLogin({ username: four.username, password: four.password })).toEqual({ ok: false, code: '28P01' });
  });

  it('two emergencies on the connection at once (a second report while the first batch runs) both finish, and nothing from before either works', async () => {
    const before = new Map(await Promise.all(ALL.map(async (n) => [n, await creds(n)] as const)));
    const [first, second] = await Promise.all([emergency(), emergency()]);
    const results = await Promise.all([...first, ...second].map((id) => settled(broker, operator, id, 30_000)));
    expect(results.map((r) => r.status)).toEqual(Array(2 * ALL.length).fill('succeeded'));
    for (const name of ALL) {
      const old = before.get(name);
      expect(await pgLogin({ username: old.username, password: old.password })).toEqual({ ok: false, code: '28P01' });
      const now = await creds(name);
      expect(now.version).toBeGreaterThan(old.version);
      expect((await pgLogin({ username: now.username, password: now.password })).ok).toBe(true);
    }
    await eventually(async () => (await broker.state('SELECT name FROM static_secrets WHERE exposed_at IS NOT NULL')).length === 0, 30_000);
  });

  it('a batch locking its secrets\' rows does not wait for a request being recorded for one of them (no lock cycle with it)', async () => {
    // A request's insert into rotations holds a key-share lock on its secret's row until it commits.
    const request = new Client({ connectionString: broker.config.storage.postgres_url });
    await request.connect();
    try {
      await request.query('BEGIN');
      await request.query(`INSERT INTO rotations (id, name, target_version, trigger, status) VALUES ($1, 'eb-4', 999, 'emergency', 'queued')`, [newRotationId()]);
      const batch = broker.app.get(RotationBatchRepository);
      // With a lock timeout, a wait is an error (55P03) instead of a hang.
      await broker.app.get(Database).tx(async (tx) => {
        await tx.query(`SET LOCAL lock_timeout = '2s'`);
        await batch.exposures(['eb-1', 'eb-4'], tx);
      });
    } finally {
      await request.query('ROLLBACK');
      await request.end();
      await broker.state('UPDATE static_secrets SET exposed_at = NULL');
    }
  });

  it('a report for many secrets locks their rows in name order, as a batch does (so neither waits for the other in a cycle)', async () => {
    const database = broker.app.get(Database);
    const batch = broker.app.get(RotationBatchRepository);
    let release!: () => void;
    const holding = new Promise<void>((r) => (release = r));
    let held!: () => void;
    const heldNow = new Promise<void>((r) => (held = r));
    // Rewritten rows move behind the others on their page: storage order is no longer name order.
    await broker.state(`UPDATE static_secrets SET updated_at = now() WHERE name IN ('eb-1', 'eb-2')`);
    // A batch holds eb-3's row (as its promotion does) while a report for every secret comes in.
    const batchTx = database.tx(async (tx) => {
      await batch.exposures(['eb-3'], tx);
      held();
      await holding;
    });
    await heldNow;
    const report = broker.app.get(StaticRepository).markExposed(ALL);
    try {
      // The report waits at eb-3, having locked what comes before it in name order and nothing after.
      const probe = new Client({ connectionString: broker.config.storage.postgres_url });
      await probe.connect();
      try {
        await eventually(async () => {
          const locks = await probe.query(`SELECT count(*)::int AS n FROM pg_locks WHERE locktype = 'transactionid' AND NOT granted`);
          return locks.rows[0].n > 0;
        });
        const tryLock = (name: string) =>
          probe.query('BEGIN').then(() =>
            probe
              .query(`SELECT name FROM static_secrets WHERE name = $1 FOR NO KEY UPDATE NOWAIT`, [name])
              .then(() => true, () => false)
              .finally(() => probe.query('ROLLBACK')),
          );
        expect(await tryLock('eb-1')).toBe(false);
        expect(await tryLock('eb-4')).toBe(true);
        expect(await tryLock('eb-alt')).toBe(true);
      } finally {
        await probe.end();
      }
    } finally {
      release();
      await batchTx;
      await report;
      await broker.state('UPDATE static_secrets SET exposed_at = NULL');
    }
  });

  it('a secret the target refuses fails alone: its neighbours in the batch are rotated', async () => {
    const olds = new Map(await Promise.all(ALL.map(async (n) => [n, await creds(n)] as const)));
    await withAdmin('postgres', (c) => c.query('DROP ROLE tess_eb_3'));
    try {
      const ids = await emergency();
      const rows = await broker.state<{ id: string; name: string }>('SELECT id, name FROM rotations WHERE id = ANY($1::text[])', [ids]);
      const results = new Map(await Promise.all(rows.map(async (r) => [r.name, await settled(broker, operator, r.id, 30_000)] as const)));
      expect(results.get('eb-3').status).toBe('failed');
      for (const name of ALL.filter((n) => n !== 'eb-3')) {
        expect(results.get(name).status).toBe('succeeded');
        const old = olds.get(name);
        expect(await pgLogin({ username: old.username, password: old.password })).toEqual({ ok: false, code: '28P01' });
        const now = await creds(name);
        expect((await pgLogin({ username: now.username, password: now.password })).ok).toBe(true);
      }
    } finally {
      await createPgAccount('tess_eb_3', 'legacy-eb-3');
    }
  });
});
