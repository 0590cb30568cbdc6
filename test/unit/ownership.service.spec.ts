import { JobName, QueueName } from '../../src/jobs/jobs';
import { rotationWorld } from './support/static-fakes';

describe('OwnershipService (in-memory fakes)', () => {
  it('imports a configured password that logs in: version 1 is current at once, with no rotation', async () => {
    const w = rotationWorld({ app: { username: 'app_user', password: 'known' } });
    w.target.account('app_user', 'known');
    await w.statics.register([{ name: 'app', connection: 'target' }]);
    await w.ownership.takeOwnership('app');
    expect(await w.statics.get('app')).toMatchObject({ status: 'active', current_version: 1 });
    expect(w.statics.open((await w.statics.version('app', 'current'))!).password).toBe('known');
    expect(w.target.callsOf('setStaticSecret')).toEqual([expect.objectContaining({ account: 'app_user', apply: false })]);
    expect(w.audit.ofType('static.imported')).toEqual([expect.objectContaining({ detail: { name: 'app', version: 1, account: 'app_user' } })]);
    expect(w.jobs.enqueued).toEqual([]);
  });

  it('a configured password that does not log in leaves the secret unowned, with the reason', async () => {
    const w = rotationWorld({ app: { username: 'app_user', password: 'wrong' } });
    w.target.account('app_user', 'legacy');
    await w.statics.register([{ name: 'app', connection: 'target' }]);
    await w.ownership.takeOwnership('app');
    expect(await w.statics.get('app')).toMatchObject({ status: 'rotation_failed', current_version: null, last_error: expect.stringContaining('does not log in') });
    expect(w.statics.versions).toEqual([]);
  });

  it('a configured password reported leaked is never imported: an exposure rotation to version 1 replaces it', async () => {
    const w = rotationWorld({ app: { username: 'app_user', password: 'known' } });
    w.target.account('app_user', 'known');
    await w.statics.register([{ name: 'app', connection: 'target' }]);
    await w.statics.markExposed(['app']);
    await w.ownership.takeOwnership('app');
    expect(w.statics.versions).toEqual([]);
    expect(w.jobs.enqueued[0]).toEqual({ name: JobName.RotateStatic, payload: { name: 'app', targetVersion: 1 }, opts: { queue: QueueName.Emergency } });
    await w.rotations.rotate('app', 1, false);
    expect(w.target.logsIn('app_user', 'known')).toBe(false);
    expect(w.target.logsIn('app_user', w.statics.open((await w.statics.version('app', 'current'))!).password!)).toBe(true);
    expect((await w.statics.get('app'))!.exposed_at).toBeNull();
    expect(w.audit.ofType('static.imported')).toEqual([]);
  });

  it('a report that comes in while the configured password is checked stops its import', async () => {
    const w = rotationWorld({ app: { username: 'app_user', password: 'known' } });
    w.target.account('app_user', 'known');
    await w.statics.register([{ name: 'app', connection: 'target' }]);
    w.target.before.verifyLogin = async () => void (await w.statics.markExposed(['app']));
    await w.ownership.takeOwnership('app');
    w.target.before.verifyLogin = undefined;
    expect(await w.statics.version('app', 'pending')).toBeUndefined();
    expect(await w.statics.version('app', 'current')).toBeUndefined();
    expect(w.audit.ofType('static.imported')).toEqual([]);
    await w.rotations.rotate('app', 1, false);
    expect(w.target.logsIn('app_user', 'known')).toBe(false);
    expect((await w.statics.get('app'))!.exposed_at).toBeNull();
  });

  it('without a password it asks for one rotation to version 1, once, however often it is called', async () => {
    const w = rotationWorld({ app: { username: 'app_user' } });
    await w.statics.register([{ name: 'app', connection: 'target' }]);
    await w.ownership.takeOwnership('app');
    await w.ownership.takeOwnership('app');
    expect([...w.statics.rotations.values()]).toEqual([expect.objectContaining({ target_version: 1, trigger: 'register', status: 'queued' })]);
    expect(w.jobs.enqueued[0]).toEqual({ name: JobName.RotateStatic, payload: { name: 'app', targetVersion: 1 }, opts: { queue: QueueName.Rotations } });
    expect(w.target.calls).toEqual([]);
  });
});
