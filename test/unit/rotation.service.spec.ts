import { PluginError } from '../../plugins/contract';
import { DomainError } from '../../src/common/errors';
import { PermanentJobError, RunAgain, jobContext } from '../../src/jobs/job-handler';
import { JobName, QueueName } from '../../src/jobs/jobs';
import { RotationBusy, isPermanent } from '../../src/statics/rotation.model';
import { RotationSweeper } from '../../src/statics/rotation.sweeper';
import { SealedVersion } from '../../src/statics/static-secrets';
import { rotationWorld } from './support/static-fakes';

type World = ReturnType<typeof rotationWorld>;

const reset = () => new PluginError('connection reset by the target', true);

/** Registers the secret and takes ownership (its first rotation, to version 1); returns version 1's content. */
async function owned(w: World, name: string): Promise<SealedVersion> {
  await w.statics.register([{ name, connection: 'target' }]);
  await w.ownership.takeOwnership(name);
  await w.rotations.rotate(name, 1, false);
  return creds(w, name);
}

async function creds(w: World, name: string): Promise<SealedVersion> {
  return w.statics.open((await w.statics.version(name, 'current'))!);
}

async function rejection(p: Promise<unknown>): Promise<unknown> {
  return p.then(
    () => {
      throw new Error('expected a rejection');
    },
    (err: unknown) => err,
  );
}

const rotationsTotal = async (w: World, result: string) =>
  (await w.metrics.rotations.get()).values.filter((v) => v.labels.result === result).reduce((sum, v) => sum + v.value, 0);

describe('RotationService (in-memory fakes)', () => {
  describe('the steps of a rotation', () => {
    it('single: intent (sealed before the target is touched) → set → verified → promote, with its audit event', async () => {
      const w = rotationWorld({ app: { username: 'app_user', rotate_every: '1h' } });
      w.target.account('app_user', 'legacy');
      const v1 = await owned(w, 'app');
      const { rotation_id } = await w.rotations.request('app', 'manual', { reason: 'drill', actor: 'ops' });
      expect(w.jobs.enqueued.at(-1)).toEqual({ name: JobName.RotateStatic, payload: { name: 'app', targetVersion: 2 }, opts: { queue: QueueName.Rotations } });

      const intents: (SealedVersion | undefined)[] = [];
      w.target.before.setStaticSecret = async () => {
        const pending = await w.statics.version('app', 'pending');
        intents.push(pending && w.statics.open(pending));
      };
      await w.rotations.rotate('app', 2, false);

      const v2 = await creds(w, 'app');
      expect(intents).toEqual([{ password: v2.password }]);
      expect(w.statics.steps(rotation_id)).toEqual(['started', 'intent', 'set', 'verified']);
      expect((await w.statics.rotation(rotation_id))!.status).toBe('succeeded');
      expect(w.target.logsIn('app_user', v2.password!)).toBe(true);
      expect(w.target.logsIn('app_user', v1.password!)).toBe(false);
      const [first, second] = w.statics.versions;
      expect(first).toMatchObject({ version: 1, state: 'previous', retire_after: new Date(second.promoted_at!.getTime() + 3600_000) });
      expect(second).toMatchObject({ version: 2, state: 'current', account: 'app_user' });
      expect(await w.statics.get('app')).toMatchObject({ status: 'active', current_version: 2, next_rotation_at: new Date(w.clock.now().getTime() + 3600_000) });
      expect(w.audit.ofType('static.rotated').at(-1)).toEqual({ type: 'static.rotated', actor: null, detail: { name: 'app', version: 2, account: 'app_user', exposed: false } });
      expect(await rotationsTotal(w, 'succeeded')).toBe(2);
    });

    it('alternating: sets the inactive account and flips; the previous account works until grace, then gets a password nobody knows', async () => {
      const w = rotationWorld({ alt: { usernames: ['alt_a', 'alt_b'], strategy: 'alternating', grace: '10m' } });
      w.target.account('alt_a', 'legacy-a').account('alt_b', 'legacy-b');
      const v1 = await owned(w, 'alt');
      await w.rotations.request('alt', 'cadence');
      await w.rotations.rotate('alt', 2, false);
      const v2 = await creds(w, 'alt');
      expect([v1.credentials!.username, v2.credentials!.username]).toEqual(['alt_a', 'alt_b']);
      expect(w.target.logsIn('alt_b', v2.password!)).toBe(true);
      expect(w.target.connect('alt_a', v1.password!)).toBe(true);

      await w.rotations.retireExpired();
      expect(w.target.logsIn('alt_a', v1.password!)).toBe(true);
      w.clock.advance(601);
      await w.rotations.retireExpired();
      expect(w.target.logsIn('alt_a', v1.password!)).toBe(false);
      expect(w.target.sessions.get('alt_a')).toBe(0);
      expect(w.statics.versions.map((v) => v.state)).toEqual(['retired', 'current']);
    });

    it('key overlap (IAM-like): the new key is made beside the current one and recorded at once; a retry reuses it; the old key goes after grace', async () => {
      const w = rotationWorld({ keys: { iam_user: 'deployer', grace: '10m' } }, { keyOverlap: true });
      const v1 = await owned(w, 'keys');
      await w.rotations.request('keys', 'manual');
      w.target.failWhen('verifyLogin', new PluginError('the key is not visible yet', true));
      expect(await rejection(w.rotations.rotate('keys', 2, false))).toMatchObject({ code: 'target_unavailable' });
      const pending = (await w.statics.version('keys', 'pending'))!;
      expect(pending.handle).toEqual(expect.any(String));
      expect(w.target.callsOf('setStaticSecret').at(-1)).toMatchObject({ account: 'deployer', keep: [v1.verify!.keyId] });

      const made = w.target.callsOf('setStaticSecret').length;
      await w.rotations.rotate('keys', 2, false);
      expect(w.target.callsOf('setStaticSecret')).toHaveLength(made);
      const v2 = await creds(w, 'keys');
      expect(v2.verify!.keyId).toBe(pending.handle);
      expect(w.target.keysOf('deployer')).toEqual([v1.verify!.keyId, v2.verify!.keyId]);
      w.clock.advance(601);
      await w.rotations.retireExpired();
      expect(w.target.keysOf('deployer')).toEqual([v2.verify!.keyId]);
    });
  });

  describe('failures', () => {
    it('a failed attempt puts the single password back until the next one, which sets the same pending password', async () => {
      const w = rotationWorld({ app: { username: 'app_user' } });
      w.target.account('app_user', 'legacy');
      const v1 = await owned(w, 'app');
      const { rotation_id } = await w.rotations.request('app', 'manual');
      w.target.failWhen('verifyLogin', reset());
      expect(await rejection(w.rotations.rotate('app', 2, false))).toMatchObject({ message: 'connection reset by the target' });

      const pending = w.statics.open((await w.statics.version('app', 'pending'))!);
      expect(w.target.logsIn('app_user', v1.password!)).toBe(true);
      expect(w.target.logsIn('app_user', pending.password!)).toBe(false);
      expect(await w.statics.rotation(rotation_id)).toMatchObject({ status: 'running', error: 'connection reset by the target' });
      expect((await w.statics.get('app'))!.status).toBe('active');

      await w.rotations.rotate('app', 2, false);
      expect((await creds(w, 'app')).password).toBe(pending.password);
      expect(w.target.logsIn('app_user', pending.password!)).toBe(true);
      expect(w.statics.steps(rotation_id)).toEqual(['started', 'intent', 'set', 'error', 'started', 'set', 'verified']);
    });

    it('the last attempt gives up: the password is put back, the intent dropped, the secret rotation_failed before the rotation reads failed', async () => {
      const w = rotationWorld({ app: { username: 'app_user' } });
      w.target.account('app_user', 'legacy');
      const v1 = await owned(w, 'app');
      const { rotation_id } = await w.rotations.request('app', 'manual');
      const secretWhenFailed: string[] = [];
      const step = w.statics.step.bind(w.statics);
      w.statics.step = async (name, target, s, status, error) => {
        if (status === 'failed') secretWhenFailed.push((await w.statics.get(name))!.status);
        return step(name, target, s, status, error);
      };
      w.target.failWhen('verifyLogin', reset());

      const err = await rejection(w.rotations.rotate('app', 2, true));
      expect(err).toBeInstanceOf(PermanentJobError);
      expect(secretWhenFailed).toEqual(['rotation_failed']);
      expect(w.target.logsIn('app_user', v1.password!)).toBe(true);
      expect(await w.statics.version('app', 'pending')).toBeUndefined();
      const row = (await w.statics.get('app'))!;
      expect(row).toMatchObject({ status: 'rotation_failed', current_version: 1, last_error: 'connection reset by the target' });
      // Retried after max(5 s, 4 × reconcile_every), not at the next tick.
      expect(Math.round((row.next_rotation_at!.getTime() - w.clock.now().getTime()) / 1000)).toBe(5);
      expect(await w.statics.rotation(rotation_id)).toMatchObject({ status: 'failed' });
      expect(w.audit.ofType('static.rotation_failed')).toEqual([expect.objectContaining({ detail: { name: 'app', version: 2, error: 'connection reset by the target', undone: true } })]);
      expect(await rotationsTotal(w, 'failed')).toBe(1);
    });

    it('an exposed secret\'s password is never put back: not after a failed attempt, not when the last one gives up', async () => {
      const w = rotationWorld({ app: { username: 'app_user' } });
      w.target.account('app_user', 'legacy');
      const leaked = await owned(w, 'app');
      const from = w.target.calls.length;
      const { rotation_id } = await w.rotations.request('app', 'event');
      w.target.failWhen('verifyLogin', reset());
      await rejection(w.rotations.rotate('app', 2, false));
      expect(w.target.logsIn('app_user', leaked.password!)).toBe(false);
      w.target.failWhen('verifyLogin', reset());
      expect(await rejection(w.rotations.rotate('app', 2, true))).toBeInstanceOf(PermanentJobError);
      expect(w.target.logsIn('app_user', leaked.password!)).toBe(false);
      expect(w.target.calls.slice(from).filter((c) => c.verb === 'setStaticSecret').map((c) => c.req.password)).not.toContain(leaked.password);
      // Not undone: the intent stays for the next rotation, which is still an exposure one, to resume.
      expect(w.audit.ofType('static.rotation_failed').at(-1)!.detail).toMatchObject({ undone: false });
      const pending = w.statics.open((await w.statics.version('app', 'pending'))!);
      expect((await w.statics.get('app'))!.exposed_at).not.toBeNull();
      expect(await w.statics.rotation(rotation_id)).toMatchObject({ status: 'failed' });
      await w.rotations.rotate('app', 2, false);
      expect((await creds(w, 'app')).password).toBe(pending.password);
      expect(w.target.logsIn('app_user', pending.password!)).toBe(true);
      expect(w.target.logsIn('app_user', leaked.password!)).toBe(false);
      expect((await w.statics.get('app'))!.exposed_at).toBeNull();
    });

    it('a report that lands while the password is being put back makes it set the new one again, ending sessions', async () => {
      const w = rotationWorld({ app: { username: 'app_user' } });
      w.target.account('app_user', 'legacy');
      const v1 = await owned(w, 'app');
      await w.rotations.request('app', 'manual');
      w.target.failWhen('verifyLogin', reset());
      w.target.before.setStaticSecret = async (req: { password: string }) => {
        if (req.password === v1.password) await w.statics.markExposed(['app']);
      };
      await rejection(w.rotations.rotate('app', 2, false));
      const pending = w.statics.open((await w.statics.version('app', 'pending'))!);
      expect(w.target.logsIn('app_user', v1.password!)).toBe(false);
      expect(w.target.logsIn('app_user', pending.password!)).toBe(true);
      expect(w.target.callsOf('setStaticSecret').at(-1)).toMatchObject({ password: pending.password, endSessions: true });
      expect(w.lateSweeps.filter((s) => s.late).map((s) => s.account)).toEqual(['app_user']);
    });

    it('a permanent target error gives up at once; with key overlap the new key it recorded is deleted and the current key kept', async () => {
      const w = rotationWorld({ keys: { iam_user: 'deployer' } }, { keyOverlap: true });
      const v1 = await owned(w, 'keys');
      await w.rotations.request('keys', 'manual');
      w.target.failWhen('verifyLogin', new PluginError('access denied', false, 'target_rejected'));
      expect(await rejection(w.rotations.rotate('keys', 2, false))).toBeInstanceOf(PermanentJobError);
      expect(w.target.keysOf('deployer')).toEqual([v1.verify!.keyId]);
      expect((await w.statics.get('keys'))!.status).toBe('rotation_failed');
    });

    it('RotationBusy is its own retryable error: a held lock touches nothing, a pending version of another target is retried', async () => {
      const w = rotationWorld({ app: { username: 'app_user' } });
      w.target.account('app_user', 'legacy');
      await owned(w, 'app');
      const calls = w.target.calls.length;
      w.statics.locked.add('app');
      const busy = await rejection(w.rotations.rotate('app', 2, true));
      expect(busy).toBeInstanceOf(RotationBusy);
      expect(busy).not.toBeInstanceOf(PluginError);
      expect(busy).toMatchObject({ retryable: true, code: 'rotation_busy' });
      expect(isPermanent(busy)).toBe(false);
      expect(w.target.calls.length).toBe(calls);
      w.statics.locked.delete('app');

      await w.statics.insertPending({ name: 'app', version: 3, account: 'app_user', content: { password: 'p3' } });
      const { rotation_id } = await w.rotations.request('app', 'manual');
      expect(await rejection(w.rotations.rotate('app', 2, false))).toBeInstanceOf(RotationBusy);
      expect(await w.statics.rotation(rotation_id)).toMatchObject({ status: 'running', error: 'another rotation of app is in progress' });
      expect((await w.statics.get('app'))!.status).toBe('active');
    });

    it('the job of a secret whose lock is held runs again a second later without using up an attempt; other errors still fail the attempt', async () => {
      const w = rotationWorld({ app: { username: 'app_user' } });
      w.target.account('app_user', 'legacy');
      await owned(w, 'app');
      const sweeper = new RotationSweeper(w.config, {} as never, w.statics as never, w.rotations, w.ownership, {} as never);
      w.statics.locked.add('app');
      const before = Date.now();
      const outcome = await sweeper.rotate({ name: 'app', targetVersion: 2 }, jobContext(4, 4));
      expect(outcome).toBeInstanceOf(RunAgain);
      expect((outcome as RunAgain).at.getTime()).toBeGreaterThanOrEqual(before + 1000);
      w.statics.locked.delete('app');
      await w.statics.insertPending({ name: 'app', version: 3, account: 'app_user', content: { password: 'p3' } });
      await w.rotations.request('app', 'manual');
      expect(await rejection(sweeper.rotate({ name: 'app', targetVersion: 2 }, jobContext(1, 4)))).toBeInstanceOf(RotationBusy);
    });
  });

  describe('exposure', () => {
    it('is marked before the request is read, and goes to the emergency queue; an unknown secret is not_found', async () => {
      const w = rotationWorld({ app: { username: 'app_user' } });
      w.target.account('app_user', 'legacy');
      await owned(w, 'app');
      await w.rotations.request('app', 'emergency', { reason: 'leaked' });
      expect((await w.statics.get('app'))!.exposed_at).toBeInstanceOf(Date);
      expect(w.jobs.enqueued.at(-1)).toEqual({ name: JobName.RotateStatic, payload: { name: 'app', targetVersion: 2 }, opts: { queue: QueueName.Emergency } });
      expect(await rejection(w.rotations.request('nope', 'manual'))).toEqual(expect.any(DomainError));
    });

    it('many at once: all marked exposed before any is read, one record each and one batch job for the connection; an unknown name is not_found after the rest are queued', async () => {
      const w = rotationWorld({ a: { username: 'a_user' }, b: { username: 'b_user' } });
      w.target.account('a_user', 'legacy-a').account('b_user', 'legacy-b');
      await owned(w, 'a');
      await owned(w, 'b');
      const queuedBefore = w.jobs.enqueued.length;
      const told: string[][] = [];
      const err = await rejection(w.rotations.requestMany(['a', 'nope', 'b'], 'emergency', { reason: 'leaked', actor: 'ops', requested: async (ids) => void told.push(ids) }));
      expect(err).toMatchObject({ code: 'static_not_found' });
      // The caller is told what was requested (to audit it) before the not_found.
      expect(told).toEqual([[...w.statics.rotations.values()].filter((r) => r.trigger === 'emergency').map((r) => r.id)]);
      expect(told[0]).toHaveLength(2);
      const records = [...w.statics.rotations.values()].filter((r) => r.trigger === 'emergency');
      expect(w.jobs.enqueued.slice(queuedBefore)).toEqual([
        {
          name: JobName.RotateStaticBatch,
          payload: { batchId: records[0].id, rotations: ['a', 'b'].map((name) => ({ name, targetVersion: 2 })) },
          opts: { queue: QueueName.Emergency },
        },
      ]);
      expect(records.map((r) => [r.name, r.target_version, r.status, r.reason, r.requested_by])).toEqual([
        ['a', 2, 'queued', 'leaked', 'ops'],
        ['b', 2, 'queued', 'leaked', 'ops'],
      ]);
      for (const name of ['a', 'b']) expect((await w.statics.get(name))!.exposed_at).toBeInstanceOf(Date);

      expect(await w.rotations.requestMany(['a', 'b'], 'manual')).toEqual([expect.stringMatching(/^rot_/), expect.stringMatching(/^rot_/)]);
    });

    it('many at once on a key target (IAM): one emergency job each, no batch', async () => {
      const w = rotationWorld({ a: { username: 'a_user' }, b: { username: 'b_user' } }, { keyOverlap: true });
      await owned(w, 'a');
      await owned(w, 'b');
      const queuedBefore = w.jobs.enqueued.length;
      await w.rotations.requestMany(['a', 'b'], 'emergency');
      expect(w.jobs.enqueued.slice(queuedBefore)).toEqual(
        ['a', 'b'].map((name) => ({ name: JobName.RotateStatic, payload: { name, targetVersion: 2 }, opts: { queue: QueueName.Emergency } })),
      );
    });

    it('(a) after promotion a failure never sets the old password back, on a retry or on the last attempt', async () => {
      const w = rotationWorld({ app: { username: 'app_user' } });
      w.target.account('app_user', 'legacy');
      const v1 = await owned(w, 'app');
      const { rotation_id } = await w.rotations.request('app', 'event');
      const from = w.target.calls.length;
      // The proof step (logging in with version 1's password) fails: promotion has happened.
      const onOldPassword = { when: (req: { password: string }) => req.password === v1.password };
      w.target.failWhen('verifyLogin', reset(), onOldPassword);
      await rejection(w.rotations.rotate('app', 2, false));
      w.target.failWhen('verifyLogin', reset(), onOldPassword);
      expect(await rejection(w.rotations.rotate('app', 2, true))).toBeInstanceOf(PermanentJobError);

      const v2 = await creds(w, 'app');
      expect(w.target.calls.slice(from).filter((c) => c.verb === 'setStaticSecret').map((c) => c.req.password)).toEqual([v2.password]);
      expect(w.target.logsIn('app_user', v1.password!)).toBe(false);
      expect(w.target.logsIn('app_user', v2.password!)).toBe(true);
      expect(w.audit.ofType('static.rotation_failed').at(-1)!.detail).toMatchObject({ undone: true });
      expect(await w.statics.rotation(rotation_id)).toMatchObject({ status: 'failed' });
    });

    it('(b) a report while a routine rotation runs makes it contain: no grace, the other account destroyed, both requests succeed', async () => {
      const w = rotationWorld({ alt: { usernames: ['alt_a', 'alt_b'], strategy: 'alternating' } });
      w.target.account('alt_a', 'legacy-a').account('alt_b', 'legacy-b');
      const v1 = await owned(w, 'alt');
      expect(w.target.connect('alt_a', v1.password!) && w.target.connect('alt_b', 'legacy-b')).toBe(true);
      const routine = await w.rotations.request('alt', 'cadence');
      let report: { rotation_id: string } | undefined;
      w.target.before.setStaticSecret = async () => void (report ??= await w.rotations.request('alt', 'event'));
      await w.rotations.rotate('alt', 2, false);

      const v2 = await creds(w, 'alt');
      expect(w.audit.ofType('static.rotated').at(-1)!.detail).toMatchObject({ version: 2, exposed: true });
      expect(w.target.logsIn('alt_a', v1.password!)).toBe(false);
      expect(w.target.logsIn('alt_b', v2.password!)).toBe(true);
      expect([w.target.sessions.get('alt_a'), w.target.sessions.get('alt_b')]).toEqual([0, 0]);
      // Both accounts' sessions were ended by containment: each gets its second sweep (late logins).
      expect(w.lateSweeps.filter((s) => s.late).map((s) => [s.name, s.account])).toEqual([
        ['alt', 'alt_a'],
        ['alt', 'alt_b'],
      ]);
      expect(w.statics.versions.map((v) => v.state)).toEqual(['retired', 'current']);
      expect((await w.statics.get('alt'))!.exposed_at).toBeNull();
      for (const id of [routine.rotation_id, report!.rotation_id]) {
        expect(await w.statics.rotation(id)).toMatchObject({ status: 'succeeded' });
        expect(w.statics.steps(id)).toContain('contained');
      }
    });

    it('(c) a second report during a containment is not cleared by it: the exposure stays until its own rotation contains it', async () => {
      const w = rotationWorld({ alt: { usernames: ['alt_a', 'alt_b'], strategy: 'alternating' } });
      w.target.account('alt_a', 'legacy-a').account('alt_b', 'legacy-b');
      await owned(w, 'alt');
      const first = await w.rotations.request('alt', 'emergency');
      let second: { rotation_id: string } | undefined;
      w.target.before.retireStaticSecret = async () => void (second ??= await w.rotations.request('alt', 'event'));
      await w.rotations.rotate('alt', 2, false);

      expect(await w.statics.rotation(first.rotation_id)).toMatchObject({ status: 'succeeded' });
      expect((await w.statics.get('alt'))!.exposed_at).toBeInstanceOf(Date);
      expect(await w.statics.rotation(second!.rotation_id)).toMatchObject({ status: 'queued', target_version: 3 });

      await w.rotations.rotate('alt', 3, false);
      expect(await w.statics.rotation(second!.rotation_id)).toMatchObject({ status: 'succeeded' });
      expect(w.statics.steps(second!.rotation_id)).toContain('contained');
      expect((await w.statics.get('alt'))!.exposed_at).toBeNull();
    });

    it('(d) does not report succeeded while a previous version still logs in (a target that kept the old password)', async () => {
      const w = rotationWorld({ app: { username: 'app_user' } });
      w.target.account('app_user', 'legacy');
      const v1 = await owned(w, 'app');
      w.target.retainsPrevious = true;
      const { rotation_id } = await w.rotations.request('app', 'emergency');
      const err = await rejection(w.rotations.rotate('app', 2, false));
      expect(err).toMatchObject({ code: 'exposed_still_works' });
      expect(w.target.logsIn('app_user', v1.password!)).toBe(true);
      expect(await w.statics.rotation(rotation_id)).toMatchObject({ status: 'running', error: 'version 1 of app still logs in after the exposure rotation' });
      expect(w.statics.steps(rotation_id)).not.toContain('contained');
      expect(w.audit.ofType('static.exposure_contained')).toEqual([]);
      expect((await w.statics.get('app'))!.exposed_at).toBeInstanceOf(Date);

      expect(await rejection(w.rotations.rotate('app', 2, true))).toBeInstanceOf(PermanentJobError);
      expect(await w.statics.rotation(rotation_id)).toMatchObject({ status: 'failed' });
      expect((await w.statics.get('app'))!.status).toBe('rotation_failed');
    });
  });
});
