import { CheckStoredPasswordsRequest, VerifyRequest } from '../../plugins/contract';
import { postgresConnectionSchema } from '../../plugins/postgres/postgres.config';
import { PostgresPlugin } from '../../plugins/postgres/postgres.plugin';
import { SealedVersion } from '../../src/statics/static-secrets';
import { TARGET_URL } from '../support/services';
import { createPgAccount } from '../support/statics';
import { pgLogin, reloadPgConf, withAdmin } from '../support/target';
import { rotationWorld } from '../unit/support/static-fakes';

/**
 * An exposure rotation proves the exposed passwords dead from what PostgreSQL stores (pg_authid), with
 * one real login of the new password (verify_logins: every_password, the default) or none once the role
 * has logged in under the server's present configuration (once_per_configuration), and falls back to
 * logging in whenever the stored verifier is not the one Tessera set. Real PostgreSQL and the real
 * plugin; the state repository is the in-memory one.
 */
describe.each(['every_password', 'once_per_configuration'] as const)('exposure proof from stored verifiers (PostgreSQL, verify_logins: %s)', (mode) => {
  const everyPassword = mode === 'every_password';
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

  const plugin = new ObservedPlugin('target', postgresConnectionSchema.parse({ url: TARGET_URL, scram_iterations: 16, verify_logins: mode }));
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

  it('single: contained with one login (every_password: the verify step) or none (once_per_configuration: the first rotation logged in); the old password is really refused, the new one logs in', async () => {
    await createPgAccount('tess_proof_single', 'legacy');
    const w = await world({ app: { username: 'tess_proof_single' } });
    const v1 = await current(w, 'app');
    const { rotation_id } = await w.rotations.request('app', 'emergency');
    await w.rotations.rotate('app', 2, false);

    const v2 = await current(w, 'app');
    expect(await w.statics.rotation(rotation_id)).toMatchObject({ status: 'succeeded' });
    expect(w.statics.steps(rotation_id)).toEqual(expect.arrayContaining(['verified', 'contained']));
    expect(plugin.logins).toEqual(everyPassword ? [v2.password] : []);
    expect(await login('tess_proof_single', v1.password!)).toBe(false);
    expect(await login('tess_proof_single', v2.password!)).toBe(true);
  });

  it('single: after the server reloads its configuration, the verify step logs in again (pg_hba may have changed) and the proof rests on that login', async () => {
    await createPgAccount(`tess_proof_reload_${mode}`, 'legacy');
    const w = await world({ app: { username: `tess_proof_reload_${mode}` } });
    const v1 = await current(w, 'app');
    await reloadPgConf();
    const { rotation_id } = await w.rotations.request('app', 'emergency');
    await w.rotations.rotate('app', 2, false);

    const v2 = await current(w, 'app');
    expect(await w.statics.rotation(rotation_id)).toMatchObject({ status: 'succeeded' });
    expect(plugin.logins).toEqual([v2.password]);
    expect(await login(`tess_proof_reload_${mode}`, v1.password!)).toBe(false);
    expect(await login(`tess_proof_reload_${mode}`, v2.password!)).toBe(true);
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

  it('alternating: the earlier passwords are proved refused from pg_authid where a login vouches for the stored verifier, else by logging in; real logins agree', async () => {
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
    // every_password: the verify step's login, then the contained account's exposed password (its
    // random password no login has checked) refused at a real login. once_per_configuration: both
    // accounts logged in at earlier rotations, so no login at all.
    const exposed = before.find((b) => b.verify!.username !== v3.verify!.username)!;
    expect(plugin.logins).toEqual(everyPassword ? [v3.password, exposed.password] : []);
    for (const old of before) expect(await login(old.verify!.username, old.password!)).toBe(false);
    expect(await login(v3.verify!.username, v3.password!)).toBe(true);
  });
});
