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
