import { CheckStoredPasswordsRequest, VerifyRequest } from '../../plugins/contract';
import { postgresConnectionSchema } from '../../plugins/postgres/postgres.config';
import { PostgresPlugin } from '../../plugins/postgres/postgres.plugin';
import { SealedVersion } from '../../src/statics/static-secrets';
import { TARGET_URL } from '../support/services';
import { createPgAccount } from '../support/statics';
import { pgLogin, withAdmin } from '../support/target';
import { rotationWorld } from '../unit/support/static-fakes';

/**
 * A rotation proves the new password works, and an exposure rotation the exposed ones dead, from what
 * PostgreSQL stores (pg_authid), once a login as the role has been seen checked by SCRAM under the
 * server's present configuration (the first rotation's verify step); it falls back to logging in
 * whenever the stored verifier is not the one Tessera set. Real PostgreSQL and the real plugin; the
 * state repository is the in-memory one.
 */
describe('exposure proof from stored verifiers (PostgreSQL)', () => {
  /** The real plugin, counting logins and able to act just before the stored passwords are read. */
  class ObservedPlugin extends PostgresPlugin {
    logins: string[] = [];
    /** Runs before the stored passwords are read for an exposure's proof (the checks of more than one password). */
    beforeProof?: () => Promise<void>;

    override async verifyLogin(req: VerifyRequest) {
      this.logins.push(req.password);
      return super.verifyLogin(req);
    }

    override async checkStoredPasswords(req: CheckStoredPasswordsRequest) {
      if (req.checks.length > 1) await this.beforeProof?.();
      return super.checkStoredPasswords(req);
    }
  }

  const plugin = new ObservedPlugin('target', postgresConnectionSchema.parse({ url: TARGET_URL, scram_iterations: 16 }));
  afterAll(() => plugin.close());

  async function world(secrets: Record<string, Record<string, unknown>>) {
    const w = rotationWorld(secrets, { plugin });
    for (const name of Object.keys(secrets)) {
      await w.statics.register([{ name, connection: 'target' }]);
      await w.ownership.takeOwnership(name);
      await w.rotations.rotate(name, 1, false);
    }
    plugin.logins = [];
    plugin.beforeProof = undefined;
    return w;
  }
  const current = async (w: Awaited<ReturnType<typeof world>>, name: string): Promise<SealedVersion & { version: number }> => {
    const v = (await w.statics.version(name, 'current'))!;
    return { ...w.statics.open(v), version: v.version };
  };
  const login = (username: string, password: string) => pgLogin({ username, password }).then((r) => r.ok);

  it('single: verified and contained with no login (the first rotation logged in); the old password is really refused, the new one logs in', async () => {
    await createPgAccount('tess_proof_single', 'legacy');
    const w = await world({ app: { username: 'tess_proof_single' } });
    const v1 = await current(w, 'app');
    const { rotation_id } = await w.rotations.request('app', 'emergency');
    await w.rotations.rotate('app', 2, false);

    const v2 = await current(w, 'app');
    expect(await w.statics.rotation(rotation_id)).toMatchObject({ status: 'succeeded' });
    expect(w.statics.steps(rotation_id)).toEqual(expect.arrayContaining(['verified', 'contained']));
    expect(plugin.logins).toEqual([]);
    expect(await login('tess_proof_single', v1.password!)).toBe(false);
    expect(await login('tess_proof_single', v2.password!)).toBe(true);
  });

  it('single: after the server reloads its configuration, the verify step logs in again (pg_hba may have changed) and the proof rests on that login', async () => {
    await createPgAccount('tess_proof_reload', 'legacy');
    const w = await world({ app: { username: 'tess_proof_reload' } });
    const v1 = await current(w, 'app');
    const before = await confLoadTime();
    await withAdmin('postgres', (c) => c.query('SELECT pg_reload_conf()'));
    for (let i = 0; (await confLoadTime()) === before; i++) {
      if (i > 100) throw new Error('the configuration reload was not seen');
      await new Promise((r) => setTimeout(r, 20));
    }
    const { rotation_id } = await w.rotations.request('app', 'emergency');
    await w.rotations.rotate('app', 2, false);

    const v2 = await current(w, 'app');
    expect(await w.statics.rotation(rotation_id)).toMatchObject({ status: 'succeeded' });
    expect(plugin.logins).toEqual([v2.password]);
    expect(await login('tess_proof_reload', v1.password!)).toBe(false);
    expect(await login('tess_proof_reload', v2.password!)).toBe(true);
  });

  it('single: the role set back to the old password behind Tessera\'s back is caught (by logging in), and nothing reports contained', async () => {
    await createPgAccount('tess_proof_tampered', 'legacy');
    const w = await world({ app: { username: 'tess_proof_tampered' } });
    const v1 = await current(w, 'app');
    const { rotation_id } = await w.rotations.request('app', 'emergency');
    plugin.beforeProof = () => withAdmin('postgres', (c) => c.query(`ALTER ROLE tess_proof_tampered PASSWORD '${v1.password}'`)).then(() => undefined);

    await expect(w.rotations.rotate('app', 2, false)).rejects.toMatchObject({ code: 'exposed_still_works' });
    expect(plugin.logins).toContain(v1.password);
    expect(await w.statics.rotation(rotation_id)).toMatchObject({ status: 'running', error: 'version 1 of app still logs in after the exposure rotation' });
    expect(w.statics.steps(rotation_id)).not.toContain('contained');
    expect(w.audit.ofType('static.exposure_contained')).toEqual([]);
    expect((await w.statics.get('app'))!.exposed_at).toBeInstanceOf(Date);
    expect(await login('tess_proof_tampered', v1.password!)).toBe(true);
  });

  it('single: a role pg_hba lets in without checking its password (trust) is never reported contained: the stored verifier proves nothing there', async () => {
    await createPgAccount('tess_hba_trusted', 'legacy');
    const w = await world({ app: { username: 'tess_hba_trusted' } });
    const { rotation_id } = await w.rotations.request('app', 'emergency');

    await expect(w.rotations.rotate('app', 2, false)).rejects.toMatchObject({ code: 'exposed_still_works' });
    expect(w.statics.steps(rotation_id)).not.toContain('contained');
    expect(w.audit.ofType('static.exposure_contained')).toEqual([]);
    expect((await w.statics.get('app'))!.exposed_at).toBeInstanceOf(Date);
  });

  it('single: the new password replaced behind Tessera\'s back is caught too: the current version does not log in', async () => {
    await createPgAccount('tess_proof_replaced', 'legacy');
    const w = await world({ app: { username: 'tess_proof_replaced' } });
    const { rotation_id } = await w.rotations.request('app', 'emergency');
    plugin.beforeProof = () => withAdmin('postgres', (c) => c.query(`ALTER ROLE tess_proof_replaced PASSWORD 'someone-elses'`)).then(() => undefined);

    await expect(w.rotations.rotate('app', 2, false)).rejects.toMatchObject({ code: 'verify_failed' });
    expect(w.statics.steps(rotation_id)).not.toContain('contained');
    expect((await w.statics.get('app'))!.exposed_at).toBeInstanceOf(Date);
  });

  it('alternating: both accounts\' earlier passwords are proved refused from pg_authid (each account logged in at an earlier rotation), and real logins agree', async () => {
    await createPgAccount('tess_proof_alt_a', 'legacy-a');
    await createPgAccount('tess_proof_alt_b', 'legacy-b');
    const w = await world({ alt: { usernames: ['tess_proof_alt_a', 'tess_proof_alt_b'], strategy: 'alternating' } });
    // Two routine rotations first, so both accounts have a password Tessera set and recorded.
    await w.rotations.request('alt', 'cadence');
    await w.rotations.rotate('alt', 2, false);
    const before = [await current(w, 'alt'), w.statics.open(w.statics.versions.find((v) => v.version === 1)!)];
    plugin.logins = [];
    const { rotation_id } = await w.rotations.request('alt', 'emergency');
    await w.rotations.rotate('alt', 3, false);

    const v3 = await current(w, 'alt');
    expect(await w.statics.rotation(rotation_id)).toMatchObject({ status: 'succeeded' });
    expect(w.statics.steps(rotation_id)).toContain('contained');
    expect(plugin.logins).toEqual([]);
    for (const old of before) expect(await login(old.verify!.username, old.password!)).toBe(false);
    expect(await login(v3.verify!.username, v3.password!)).toBe(true);
  });
});

function confLoadTime(): Promise<string> {
  return withAdmin('postgres', (c) => c.query<{ t: string }>('SELECT pg_conf_load_time()::text AS t')).then((r) => r.rows[0].t);
}
