import { randomBytes } from 'node:crypto';
import { CredentialPlugin, PluginError } from '../../plugins/contract';
import { newAccountName, newPassword } from '../../src/leases/names';
import { TARGETS, parseRole } from './targets';

/** One set of assertions that every plugin passes against its real target. */
describe.each(TARGETS)('plugin conformance: $name', (target) => {
  let plugin: CredentialPlugin;
  const created: string[] = [];
  const role = () => parseRole(target, target.role);
  const fresh = () => {
    const username = newAccountName(`conf-${randomBytes(2).toString('hex')}`, plugin.maxUsernameLength);
    created.push(username);
    return { username, password: newPassword() };
  };
  const inAMinute = () => new Date(Date.now() + 60_000);

  beforeAll(() => {
    plugin = target.factory.create('conformance', target.factory.connectionSchema.parse(target.connection));
  });
  afterAll(async () => {
    for (const username of created) await plugin.revokeUser({ username, role: role() }).catch(() => undefined);
    await plugin.close();
  });

  it('issues an account that really authenticates, renews it, revokes it, and it stops authenticating', async () => {
    const { username, password } = fresh();
    const { credentials } = await plugin.createUser({ username, password, expiresAt: inAMinute(), role: role() });
    expect(credentials).toMatchObject({ username, password });
    expect(await target.accountExists(username)).toBe(true);
    expect(await plugin.verifyLogin({ username, password })).toBe(true);
    expect(await plugin.verifyLogin({ username, password: `${password}-wrong` })).toBe(false);

    await plugin.renewUser({ username, expiresAt: new Date(Date.now() + 3_600_000), role: role() });
    expect(await plugin.verifyLogin({ username, password })).toBe(true);

    await plugin.revokeUser({ username, role: role() });
    expect(await plugin.verifyLogin({ username, password })).toBe(false);
    expect(await target.accountExists(username)).toBe(false);
  });

  it('revoke is idempotent: again, and for an account that never existed', async () => {
    const { username, password } = fresh();
    await plugin.createUser({ username, password, expiresAt: inAMinute(), role: role() });
    await plugin.revokeUser({ username, role: role() });
    await expect(plugin.revokeUser({ username, role: role() })).resolves.toBeUndefined();
    await expect(plugin.revokeUser({ username: newAccountName('never-existed', plugin.maxUsernameLength), role: role() })).resolves.toBeUndefined();
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
      expect(await plugin.verifyLogin({ username, password, keyId: target.keyIdOf?.((result as { credentials: Record<string, unknown> }).credentials) })).toBe(true);
      await plugin.revokeUser({ username, role: role() });
      expect(await target.accountExists(username)).toBe(false);
    }
    expect(await target.canaryIntact()).toBe(true);
  });

  it.each(TARGETS.find((t) => t.name === target.name)!.hostileRoles.map((r, i) => [i, r]))(
    'hostile role settings (#%i) are refused by the schema or fail cleanly, changing nothing',
    async (_i, hostile) => {
      let settings;
      try {
        settings = parseRole(target, hostile as Record<string, unknown>);
      } catch {
        return expect(await target.canaryIntact()).toBe(true); // refused at config time
      }
      const { username, password } = fresh();
      const result = await plugin.createUser({ username, password, expiresAt: inAMinute(), role: settings }).then(
        () => 'created',
        (e: unknown) => e,
      );
      expect(result).toBeInstanceOf(PluginError);
      expect((result as PluginError).retryable).toBe(false);
      expect((result as PluginError).message).not.toContain(password);
      expect(await target.accountExists(username)).toBe(false);
      expect(await target.canaryIntact()).toBe(true);
    },
  );
});
