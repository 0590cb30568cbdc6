import { randomBytes } from 'node:crypto';
import { CredentialPlugin, DEFAULT_LEASE_TERMS, LeaseTerms, PluginError, RevokeUsersRequest } from '../../plugins/contract';
import { revokeEach } from '../../src/plugin-host/plugin-host';
import { newAccountName, newPassword } from '../../src/leases/names';
import { HostileRole, TARGETS, parseRole, verifyArgsOf } from './targets';

/** One set of assertions that every plugin passes against its real target. */
describe.each(TARGETS)('plugin conformance: $name', (target) => {
  let plugin: CredentialPlugin;
  const created: string[] = [];
  const role = () => parseRole(target, target.role);
  /**
   * What the role's leases are (the plugin says, per role): a lease that is not a revocable account
   * (STS credentials) has no account to remove, renew, rotate or end sessions of; its credential works
   * until it expires, and revoking it is a no-op on the target.
   */
  const terms = (): LeaseTerms => target.factory.leaseTerms?.(role()) ?? DEFAULT_LEASE_TERMS;
  const fresh = () => {
    const username = newAccountName(`conf-${randomBytes(2).toString('hex')}`, plugin.maxUsernameLength);
    created.push(username);
    return { username, password: newPassword() };
  };
  const inAMinute = () => new Date(Date.now() + 60_000);

  beforeAll(async () => {
    await target.setup?.();
    plugin = target.factory.create('conformance', target.factory.connectionSchema.parse(target.connection()));
  });
  afterAll(async () => {
    for (const username of created) await plugin.revokeUser({ username, role: role() }).catch(() => undefined);
    await plugin.close();
    await target.teardown?.();
  });
  const verify = async (credentials: Record<string, unknown>) => (await plugin.verifyLogin(verifyArgsOf(target, credentials))).ok;

  it('issues an account that really authenticates, renews it, revokes it, and it stops authenticating', async () => {
    const { username, password } = fresh();
    const { credentials } = await plugin.createUser({ username, password, expiresAt: inAMinute(), role: role() });
    expect(await target.accountExists(username)).toBe(true);
    const good = verifyArgsOf(target, credentials);
    if (terms().revocable) expect(good.username).toBe(username);
    expect(await verify(credentials)).toBe(true);
    if (target.checksSecrets !== false) expect((await plugin.verifyLogin({ ...good, password: `${good.password}x` })).ok).toBe(false);
    if (good.keyId) expect((await plugin.verifyLogin({ ...good, keyId: 'AKIA0000000000000000' })).ok).toBe(false);

    if (terms().renewable) {
      await plugin.renewUser({ username, expiresAt: new Date(Date.now() + 3_600_000), role: role() });
    } else {
      await expect(plugin.renewUser({ username, expiresAt: new Date(Date.now() + 3_600_000), role: role() })).rejects.toMatchObject({ retryable: false });
    }
    expect(await verify(credentials)).toBe(true);

    await plugin.revokeUser({ username, role: role() });
    // Not revocable: the credential lives until it expires (revoking ends the lease record only).
    expect(await verify(credentials)).toBe(!terms().revocable);
    expect(await target.accountExists(username)).toBe(!terms().revocable);
  });

  it('revoke is idempotent: again, and for an account that never existed', async () => {
    const { username, password } = fresh();
    await plugin.createUser({ username, password, expiresAt: inAMinute(), role: role() });
    await plugin.revokeUser({ username, role: role() });
    await expect(plugin.revokeUser({ username, role: role() })).resolves.toEqual({});
    await expect(plugin.revokeUser({ username: newAccountName('never-existed', plugin.maxUsernameLength), role: role() })).resolves.toEqual({});
  });

  it('renewing an account that is gone is a non-retryable error', async () => {
    const { username } = fresh();
    await expect(plugin.renewUser({ username, expiresAt: inAMinute(), role: role() })).rejects.toMatchObject({ retryable: false });
  });

  it('revoke ends the open sessions of the account', async () => {
    if (!target.openSession) return;
    const { username, password } = fresh();
    await plugin.createUser({ username, password, expiresAt: inAMinute(), role: role() });
    const alive = await target.openSession(username, password);
    expect(await alive()).toBe(true);
    await plugin.revokeUser({ username, role: role() });
    expect(await alive()).toBe(false);
  });

  it('revokes many users at once: each gets its own outcome, a missing one is success, open sessions end', async () => {
    // Plugins without the batch verb get the broker's loop over revokeUser.
    const revokeUsers = (req: RevokeUsersRequest) => (plugin.capabilities.batchRevoke && plugin.revokeUsers ? plugin.revokeUsers(req) : revokeEach(plugin, req));
    const users = [fresh(), fresh(), fresh()];
    const issued = [];
    for (const u of users) issued.push((await plugin.createUser({ ...u, expiresAt: inAMinute(), role: role() })).credentials);
    const session = target.openSession ? await target.openSession(users[1].username, users[1].password) : undefined;
    if (session) expect(await session()).toBe(true);
    const missing = newAccountName('never-existed', plugin.maxUsernameLength);
    const names = [users[0].username, missing, users[1].username, users[2].username];

    const { results } = await revokeUsers({ users: names.map((username) => ({ username, role: role() })) });
    expect(results).toEqual(names.map((username) => ({ username, ok: true })));
    for (const u of users) expect(await target.accountExists(u.username)).toBe(!terms().revocable);
    for (const credentials of issued) expect(await verify(credentials)).toBe(!terms().revocable);
    if (session) expect(await session()).toBe(false);
    // Idempotent: all of them again.
    const again = await revokeUsers({ users: names.map((username) => ({ username, role: role() })) });
    expect(again.results.every((r) => r.ok)).toBe(true);
  });

  it('static secrets: a new secret can end the sessions of the old one, and retiring destroys a superseded secret', async () => {
    if (!terms().revocable) return; // its leases make no account to rotate
    const { username, password } = fresh();
    const { credentials } = await plugin.createUser({ username, password, expiresAt: inAMinute(), role: role() });
    const old = verifyArgsOf(target, credentials);
    const session = target.openSession ? await target.openSession(username, password) : undefined;
    if (session) expect(await session()).toBe(true);

    const next = await plugin.setStaticSecret({ account: username, password: newPassword(), keep: [], endSessions: true });
    expect((await plugin.verifyLogin(next.verify)).ok).toBe(true);
    if (session) expect(await session()).toBe(false);
    // Key targets keep the old key until it is retired; password targets replaced it already.
    if (next.handle) await plugin.retireStaticSecret({ account: username, keep: [next.handle] });
    expect((await plugin.verifyLogin(old)).ok).toBe(false);

    const unknown = newPassword();
    await plugin.retireStaticSecret(next.handle ? { account: username, handle: next.handle } : { account: username, password: unknown, endSessions: true });
    expect((await plugin.verifyLogin(next.verify)).ok).toBe(false);
    // Idempotent, and an account that is gone is success.
    const gone = newAccountName('never-existed', plugin.maxUsernameLength);
    await expect(plugin.retireStaticSecret({ account: gone, password: newPassword(), keep: [], endSessions: true })).resolves.toEqual({});
  });

  it('a create that fails half way leaves nothing behind, and its error holds no secret', async () => {
    const { username, password } = fresh();
    const failing = parseRole(target, target.failingRole);
    const err = await plugin.createUser({ username, password, expiresAt: inAMinute(), role: failing }).catch((e) => e);
    expect(err).toBeInstanceOf(PluginError);
    expect(err.message).not.toContain(password);
    expect(await target.accountExists(username)).toBe(false);
  });

  it('hostile names and passwords are quoted as values, never executed', async () => {
    const suffix = randomBytes(3).toString('hex');
    const username = `tsr_h'"\\;--é${suffix}`.slice(0, plugin.maxUsernameLength);
    const password = `p'"\\;--é) DROP TABLE x; ${suffix}`;
    created.push(username);
    const result = await plugin.createUser({ username, password, expiresAt: inAMinute(), role: role() }).then(
      (r) => r,
      (e: unknown) => e,
    );
    if (result instanceof PluginError) {
      // Targets that refuse such names must do so cleanly, leaving nothing behind.
      expect(result.retryable).toBe(false);
      expect(await target.accountExists(username)).toBe(false);
    } else {
      expect(await verify({ ...(result as { credentials: Record<string, unknown> }).credentials, username, password })).toBe(true);
      await plugin.revokeUser({ username, role: role() });
      expect(await target.accountExists(username)).toBe(!terms().revocable);
    }
    expect(await target.canaryIntact()).toBe(true);
  });

  it.each(TARGETS.find((t) => t.name === target.name)!.hostileRoles.map((r, i) => [i, r] as [number, HostileRole]))(
    'hostile role settings (#%i) stay data: refused cleanly, or applied without changing the structure',
    async (_i, hostile) => {
      let settings;
      try {
        settings = parseRole(target, hostile.settings);
      } catch {
        expect(hostile.outcome).toBe('refused'); // refused at config time
        return expect(await target.canaryIntact()).toBe(true);
      }
      const { username, password } = fresh();
      const result = await plugin.createUser({ username, password, expiresAt: inAMinute(), role: settings }).then(
        () => 'created',
        (e: unknown) => e,
      );
      if (hostile.outcome === 'created') {
        expect(result).toBe('created');
        await hostile.check!(username);
        await plugin.revokeUser({ username, role: settings });
        expect(await target.accountExists(username)).toBe(!(target.factory.leaseTerms?.(settings) ?? DEFAULT_LEASE_TERMS).revocable);
      } else {
        expect(result).toBeInstanceOf(PluginError);
        expect((result as PluginError).retryable).toBe(false);
        expect((result as PluginError).message).not.toContain(password);
        expect(await target.accountExists(username)).toBe(false);
      }
      expect(await target.canaryIntact()).toBe(true);
    },
  );
});
