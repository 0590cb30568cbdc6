import Redis from 'ioredis';
import { createHash } from 'node:crypto';
import { AccountNotFoundError, PluginError } from '../../plugins/contract';
import { RedisPlugin } from '../../plugins/redis/redis.plugin';
import { redisConnectionSchema, redisRoleSchema } from '../../plugins/redis/redis.config';
import { newAccountName, newPassword } from '../../src/leases/names';
import { TestBroker, eventually, startBroker } from '../support/broker';
import { owned, settled } from '../support/statics';
import { REDIS_TARGET_URL, aclUser, redisRelay, redisSession, redisUsersLike, sessionAlive, withRedisAdmin } from '../support/redis';

const sha256 = (s: string) => createHash('sha256').update(s, 'utf8').digest('hex');
const replyTo = (p: Promise<unknown>) => p.then(
  (v) => `ok:${String(v)}`,
  (e: Error) => e.message,
);

/** What only the redis plugin does, beyond the shared conformance suite. */
describe('redis plugin specifics', () => {
  const plugin = new RedisPlugin('cache', redisConnectionSchema.parse({ url: REDIS_TARGET_URL }));
  const expiresAt = () => new Date(Date.now() + 60_000);
  const role = (acl: string, allow_admin = false) => redisRoleSchema.parse({ acl, allow_admin });
  const sessions: Redis[] = [];
  const created: string[] = [];
  const issue = async (acl: string, allowAdmin = false) => {
    const username = newAccountName('redis-spec', plugin.maxUsernameLength);
    const password = newPassword();
    created.push(username);
    await plugin.createUser({ username, password, expiresAt: expiresAt(), role: role(acl, allowAdmin) });
    const session = await redisSession(username, password);
    sessions.push(session);
    return { username, password, session };
  };
  /** A connection as the broker's queue has one: the `default` user, opened before any lease exists. */
  let brokerSide: Redis;
  let brokerSideId: number;

  beforeAll(async () => {
    brokerSide = new Redis(REDIS_TARGET_URL, { maxRetriesPerRequest: 0, retryStrategy: () => null });
    brokerSideId = Number(await brokerSide.client('ID'));
  });
  afterAll(async () => {
    for (const s of sessions) s.disconnect();
    await plugin.revokeUsers({ users: created.map((username) => ({ username, role: {} })) });
    brokerSide.disconnect();
    await plugin.close();
  });

  it('a lease is bound by its ACL: its keys and commands work, others fail with NOPERM', async () => {
    const { session } = await issue('~tessera:spec:* +get +set');
    expect(await session.set('tessera:spec:a', '1')).toBe('OK');
    expect(await session.get('tessera:spec:a')).toBe('1');
    expect(await replyTo(session.set('other:key', '1'))).toMatch(/^NOPERM/);
    expect(await replyTo(session.del('tessera:spec:a'))).toMatch(/^NOPERM/);
    expect(await replyTo(session.call('ACL', 'SETUSER', 'default', 'off'))).toMatch(/^NOPERM/);
    expect(await replyTo(session.flushall())).toMatch(/^NOPERM/);
    expect(await replyTo(session.subscribe('any-channel'))).toMatch(/^NOPERM/); // resetchannels
  });

  it('a broad category never brings administration in without allow_admin; with it, it does', async () => {
    const plain = await issue('~tessera:spec:* +@write +@read');
    expect(await plain.session.set('tessera:spec:b', '1')).toBe('OK');
    for (const attempt of [plain.session.flushall(), plain.session.keys('*'), plain.session.call('CONFIG', 'GET', 'maxmemory'), plain.session.call('ACL', 'LIST')]) {
      expect(await replyTo(attempt)).toMatch(/^NOPERM/);
    }
    const admin = await issue('+acl|list +config|get', true);
    expect(await replyTo(admin.session.call('CONFIG', 'GET', 'maxmemory'))).toMatch(/^ok:/);
  });

  it('no broad category lets a lease change the server\'s functions or scripts, which other users run with their own rights', async () => {
    const library = `tessera_spec_${newPassword().slice(1, 11).toLowerCase().replace(/[^a-z0-9]/g, 'x')}`;
    const code = `#!lua name=${library}\nredis.register_function('${library}_f', function() return 1 end)`;
    const dryrun = (username: string, ...command: string[]) => replyTo(withRedisAdmin((a) => a.call('ACL', 'DRYRUN', username, ...command)));
    try {
      for (const acl of ['~tessera:spec:* +@write', '~tessera:spec:* +@slow', '~tessera:spec:* +@scripting', '~tessera:spec:* +@write +@slow +@scripting +function|list']) {
        const { username, session } = await issue(acl);
        expect(await replyTo(session.call('FUNCTION', 'LOAD', 'REPLACE', code))).toMatch(/^NOPERM/);
        expect(await replyTo(session.call('FUNCTION', 'LOAD', code))).toMatch(/^NOPERM/);
        expect(await replyTo(session.call('FUNCTION', 'DELETE', library))).toMatch(/^NOPERM/);
        expect(await replyTo(session.call('FUNCTION', 'RESTORE', 'not-a-dump'))).toMatch(/^NOPERM/);
        expect(await replyTo(session.call('FUNCTION', 'KILL'))).toMatch(/^NOPERM/);
        expect(await replyTo(session.call('SCRIPT', 'KILL'))).toMatch(/^NOPERM/);
        // Flushing the shared server's functions or scripts is only asked of Redis's permission check.
        for (const command of [['FUNCTION', 'FLUSH'], ['SCRIPT', 'FLUSH'], ['SCRIPT', 'FLUSH', 'ASYNC']]) {
          expect(await dryrun(username, ...command)).toMatch(/no permissions to run the '(function|script)\|flush' command/);
        }
      }
      expect(await withRedisAdmin((a) => a.call('FUNCTION', 'LIST', 'LIBRARYNAME', library))).toEqual([]);
      // What the categories are for still works: scripts run, functions are read and called.
      const scripting = await issue('~tessera:spec:* +@scripting +@slow +get');
      expect(await scripting.session.call('EVAL', "return redis.call('GET', KEYS[1])", '1', 'tessera:spec:none')).toBeNull();
      expect(await replyTo(scripting.session.call('SCRIPT', 'LOAD', 'return 1'))).toMatch(/^ok:/);
      expect(await replyTo(scripting.session.call('FUNCTION', 'LIST'))).toMatch(/^ok/);
      await withRedisAdmin((a) => a.call('FUNCTION', 'LOAD', code));
      expect(await scripting.session.call('FCALL', `${library}_f`, '0')).toBe(1);
      // With allow_admin, the role's own rules decide.
      const admin = await issue('~tessera:spec:* +@scripting', true);
      expect(await dryrun(admin.username, 'FUNCTION', 'FLUSH')).toBe('ok:OK');
    } finally {
      await withRedisAdmin((a) => a.call('FUNCTION', 'DELETE', library)).catch(() => undefined);
    }
  });

  it('key names outside the patterns: SCAN shows them unless the role takes the listing commands away, as the README advises', async () => {
    const open = await issue('~tessera:spec:* +@read');
    expect(await replyTo(open.session.scan('0', 'COUNT', '1'))).toMatch(/^ok:/); // Redis cannot filter SCAN by pattern
    const closed = await issue('~tessera:spec:* +@read +@slow -scan -randomkey -dbsize -memory|stats -pubsub|channels');
    for (const command of [['SCAN', '0'], ['RANDOMKEY'], ['DBSIZE'], ['MEMORY', 'STATS'], ['PUBSUB', 'CHANNELS']]) {
      expect(await replyTo(closed.session.call(command[0], ...command.slice(1)))).toMatch(/^NOPERM/);
    }
    expect(await closed.session.get('tessera:spec:none')).toBeNull();
  });

  it('a timed-out ACL SETUSER is never sent again after the connection comes back', async () => {
    const relay = await redisRelay();
    const through = new RedisPlugin('relay', redisConnectionSchema.parse({ url: relay.url, command_timeout: 1 }));
    const username = newAccountName('redis-spec', through.maxUsernameLength);
    created.push(username);
    try {
      await through.ping();
      relay.hold(true);
      const err = await through.createUser({ username, password: newPassword(), expiresAt: expiresAt(), role: role('+get') }).catch((e) => e);
      expect(err).toMatchObject({ retryable: true });
      relay.hold(false);
      relay.drop();
      expect(await eventually(async () => relay.received.length === 2 && through.ping().then(() => true, () => false))).toBe(true);
      // The new connection carried only PINGs: the SETUSER and its cleanup were not replayed.
      expect(relay.received[1]).toMatch(/PING/i);
      expect(relay.received[1]).not.toMatch(/SETUSER|DELUSER/i);
      expect(await aclUser(username)).toBeNull();
    } finally {
      await through.close();
      await relay.close();
    }
  });

  it('Redis holds only the SHA-256 of the password, for leases and for rotated static secrets', async () => {
    const { username, password } = await issue('~tessera:spec:* +get');
    const user = await aclUser(username);
    expect(user?.passwords).toEqual([sha256(password)]);
    expect(user?.flags).toEqual(expect.arrayContaining(['on']));
    const list = (await withRedisAdmin((a) => a.call('ACL', 'LIST'))) as string[];
    const line = list.find((l) => l.startsWith(`user ${username} `))!;
    expect(line).toContain(`#${sha256(password)}`);
    expect(line).not.toContain(password);

    const next = newPassword();
    await plugin.setStaticSecret({ account: username, password: next });
    const rotated = await aclUser(username);
    expect(rotated?.passwords).toEqual([sha256(next)]);
    expect(rotated?.keys).toBe(user?.keys); // resetpass changes the password only
    expect(rotated?.commands).toBe(user?.commands);
    expect((await plugin.verifyLogin({ username, password })).ok).toBe(false);
    expect((await plugin.verifyLogin({ username, password: next })).ok).toBe(true);
  });

  it('revoke closes the open connection, the user cannot log in, and the broker-side connection is untouched', async () => {
    const { username, password, session } = await issue('~tessera:spec:* +get');
    const other = await issue('~tessera:spec:* +get');
    expect(await sessionAlive(session)).toBe(true);
    await plugin.revokeUser({ username, role: {} });
    expect(await sessionAlive(session)).toBe(false);
    // The refused PING can come between the server's close and the client noticing it (stream ended, status not yet 'end').
    expect(await eventually(async () => session.status === 'end', 5_000, 20)).toBe(true);
    expect((await plugin.verifyLogin({ username, password })).ok).toBe(false);
    await expect(redisSession(username, password)).rejects.toThrow();
    expect(await aclUser(username)).toBeNull();
    // Another lease's session and the default user's connection live on, the latter never reconnected.
    expect(await sessionAlive(other.session)).toBe(true);
    expect(await brokerSide.ping()).toBe('PONG');
    expect(Number(await brokerSide.client('ID'))).toBe(brokerSideId);
    expect(await aclUser('default')).toMatchObject({ flags: expect.arrayContaining(['on']) });
  });

  it('renew is a no-op on Redis: the user is unchanged', async () => {
    const { username } = await issue('~tessera:spec:* +get');
    const before = await aclUser(username);
    await plugin.renewUser({ username, expiresAt: new Date(Date.now() + 3_600_000), role: {} });
    expect(await aclUser(username)).toEqual(before);
  });

  it('never acts on users outside its namespace: default, the admin, or a name without the prefix', async () => {
    const outsider = `spec_outsider_${newPassword().slice(1, 9).toLowerCase().replace(/[^a-z0-9]/g, 'x')}`;
    await withRedisAdmin((a) => a.call('ACL', 'SETUSER', outsider, 'on', `#${sha256('outsider-pw')}`, '+ping'));
    try {
      for (const username of ['default', outsider]) {
        const attempts = [
          plugin.createUser({ username, password: newPassword(), expiresAt: expiresAt(), role: role('+get') }),
          plugin.revokeUser({ username, role: {} }),
          plugin.renewUser({ username, expiresAt: expiresAt(), role: {} }),
        ];
        for (const attempt of attempts) await expect(attempt).rejects.toMatchObject({ retryable: false, message: expect.stringContaining('lease users are named tsr_') });
        const { results } = await plugin.revokeUsers({ users: [{ username, role: {} }] });
        expect(results[0]).toMatchObject({ ok: false, error: { retryable: false } });
      }
      await expect(plugin.setStaticSecret({ account: 'default', password: newPassword() })).rejects.toMatchObject({ retryable: false });
      await expect(plugin.retireStaticSecret({ account: 'default', password: newPassword(), endSessions: true })).rejects.toBeInstanceOf(PluginError);
      expect((await aclUser(outsider))?.passwords).toEqual([sha256('outsider-pw')]);
      expect(await aclUser('default')).toMatchObject({ flags: expect.arrayContaining(['on', 'nopass']) });
      expect(await brokerSide.ping()).toBe('PONG');
      // A static secret for a user that does not exist fails, and does not create it.
      const missing = `spec_missing_${Date.now()}`;
      await expect(plugin.setStaticSecret({ account: missing, password: newPassword() })).rejects.toBeInstanceOf(AccountNotFoundError);
      expect(await aclUser(missing)).toBeNull();
    } finally {
      await withRedisAdmin((a) => a.call('ACL', 'DELUSER', outsider));
    }
  });

  it('a namespace that would cover default or the admin user is refused at start-up', () => {
    expect(redisConnectionSchema.safeParse({ url: REDIS_TARGET_URL, user_prefix: 'def' }).success).toBe(false);
    expect(redisConnectionSchema.safeParse({ url: 'redis://tsr_admin:x@127.0.0.1:6379' }).success).toBe(false);
    expect(redisConnectionSchema.safeParse({ url: REDIS_TARGET_URL, protected_users: ['tsr_queue'] }).success).toBe(false);
    expect(redisConnectionSchema.safeParse({ url: 'http://127.0.0.1:6379' }).success).toBe(false);
  });

  it('hostile or administrative ACLs are refused with an error naming the rule, and nothing is created', async () => {
    const cases: [string, RegExp][] = [
      ['~cache:* +get +acl', /"\+acl" grants an administration command: set allow_admin: true/],
      ['~cache:* +@admin', /"\+@admin" grants administration commands/],
      ['+@dangerous', /"\+@dangerous" grants administration/],
      ['allcommands', /"allcommands" grants every command/],
      ['+config|set', /"\+config\|set" grants an administration command/],
      ['+client', /"\+client" grants an administration command/],
      ['+get >secret', /">secret" sets or removes a password/],
      ['+get #0123abcd', /sets or removes a password/],
      ['+get nopass', /"nopass" sets or removes a password/],
      ['+get off', /"off" changes whether the user is enabled/],
      ['reset +get', /"reset" changes whether the user is enabled/],
      ['(+get ~x)', /selectors are not supported/],
      ['+get;flushall', /is not an ACL rule the plugin accepts/],
      ['~cache:*\u0000+@all', /is not an ACL rule|key pattern of printable/],
    ];
    const before = await redisUsersLike('tsr_');
    for (const [acl, message] of cases) {
      const parsed = redisRoleSchema.safeParse({ acl });
      expect(parsed.success).toBe(false);
      expect(parsed.error!.issues[0]).toMatchObject({ path: ['acl'], message: expect.stringMatching(message) });
    }
    // Accepted only when the role says so.
    expect(redisRoleSchema.safeParse({ acl: '+acl|whoami +client|setname -acl' }).success).toBe(true);
    expect(redisRoleSchema.safeParse({ acl: '+@admin +config|set', allow_admin: true }).success).toBe(true);
    expect(redisRoleSchema.safeParse({ acl: '+get reset', allow_admin: true }).success).toBe(false);
    // Unparsed settings reaching the plugin are refused the same way.
    const username = newAccountName('redis-spec', plugin.maxUsernameLength);
    await expect(plugin.createUser({ username, password: newPassword(), expiresAt: expiresAt(), role: { acl: '+@all', allow_admin: false } })).rejects.toMatchObject({
      retryable: false,
      message: expect.stringContaining('allow_admin'),
    });
    expect(await aclUser(username)).toBeNull();
    expect(await redisUsersLike('tsr_')).toEqual(expect.arrayContaining(before));
  });

  it('a create Redis refuses holds neither the password nor its hash in its error', async () => {
    const username = newAccountName('redis-spec', plugin.maxUsernameLength);
    const password = newPassword();
    const err = await plugin.createUser({ username, password, expiresAt: expiresAt(), role: role('+get +no_such_command_x') }).catch((e) => e);
    expect(err).toBeInstanceOf(PluginError);
    expect(err.retryable).toBe(false);
    expect(err.message).toContain('no_such_command_x');
    expect(err.message).not.toContain(password);
    expect(err.message).not.toContain(sha256(password));
    expect(await aclUser(username)).toBeNull();
  });

  it('an unreachable Redis is a retryable error that names no secret', async () => {
    const down = new RedisPlugin('down', redisConnectionSchema.parse({ url: 'redis://default@127.0.0.1:1', connect_timeout: 1 }));
    const password = newPassword();
    const err = await down.createUser({ username: newAccountName('redis-spec', 64), password, expiresAt: expiresAt(), role: role('+get') }).catch((e) => e);
    expect(err).toMatchObject({ retryable: true });
    expect(err.message).not.toContain(password);
    await expect(down.verifyLogin({ username: 'tsr_x', password })).rejects.toMatchObject({ retryable: true });
    await down.close();
  });
});

describe('redis leases and static secrets through the broker', () => {
  let broker: TestBroker;
  let workload: string;
  let reader: string;
  let operator: string;
  /** Existing users Tessera takes over: outside its lease namespace, with passwords it does not know. */
  const legacy = ['spec_legacy_single', 'spec_legacy_a', 'spec_legacy_b'];

  beforeAll(async () => {
    await withRedisAdmin(async (a) => {
      for (const user of legacy) await a.call('ACL', 'SETUSER', user, 'reset', 'on', `>${user}-legacy-password`, '~legacy:*', '+get');
    });
    broker = await startBroker('redisacl', (doc) => {
      doc.connections.cache = { plugin: 'redis', url: REDIS_TARGET_URL };
      doc.roles['cache-ro'] = { connection: 'cache', default_ttl: '5m', max_ttl: '1h', acl: '~tessera:broker:* +get' };
      doc.policies[0].allow.push({ creds: ['cache-ro'] });
      doc.static_secrets = {
        'cache-single': { connection: 'cache', username: legacy[0], strategy: 'single' },
        'cache-alt': { connection: 'cache', usernames: [legacy[1], legacy[2]], strategy: 'alternating' },
      };
      doc.policies.push({ name: 'legacy', subjects: ['spiffe://test.example/ns/legacy/*'], allow: [{ static: ['cache-single', 'cache-alt'] }] });
    });
    workload = await broker.token('ns/app/api');
    reader = await broker.token('ns/legacy/app');
    operator = await broker.token('ops/erin');
  });
  afterAll(async () => {
    await broker.close();
    await withRedisAdmin((a) => a.call('ACL', 'DELUSER', ...legacy));
  });

  const emergency = async (name: string) => {
    const res = await broker.api('POST', `/v1/static/${name}/rotate`, { token: operator, body: { emergency: true } });
    expect(res.status).toBe(202);
    return settled(broker, operator, res.body.rotation_id);
  };
  const logsIn = async (username: string, password: string) =>
    redisSession(username, password).then(
      (s) => (s.disconnect(), true),
      () => false,
    );

  it('static secrets, single and alternating: taken over, rotated by hash only, and an emergency ends the old sessions', async () => {
    for (const [name, users] of [['cache-single', [legacy[0]]], ['cache-alt', [legacy[1], legacy[2]]]] as const) {
      const before = await owned(broker, reader, name);
      expect(users).toContain(before.username);
      expect(before).toMatchObject({ host: '127.0.0.1', port: 6379 });
      expect((await aclUser(before.username))?.passwords).toEqual([sha256(before.password)]);
      const session = await redisSession(before.username, before.password);
      expect(await session.get('legacy:x')).toBeNull();

      expect(await emergency(name)).toMatchObject({ status: 'succeeded', trigger: 'emergency' });
      expect(await sessionAlive(session)).toBe(false);
      expect(await logsIn(before.username, before.password)).toBe(false);
      for (const user of users) expect(await logsIn(user, `${user}-legacy-password`)).toBe(false);
      const after = (await broker.api('GET', `/v1/static/${name}/creds`, { token: reader })).body;
      expect(await logsIn(after.username, after.password)).toBe(true);
      const stored = await aclUser(after.username);
      expect(stored?.passwords).toEqual([sha256(after.password)]);
      expect(stored).toMatchObject({ keys: '~legacy:*', commands: '-@all +get' }); // its rules untouched
    }
  });

  it('issues a Redis user, revoke ends its session, and the broker keeps using its own Redis (expiry still fires)', async () => {
    const issued = await broker.api('POST', '/v1/creds/cache-ro', { token: workload, body: { ttl: '10m' } });
    expect(issued.status).toBe(201);
    expect(issued.body.plugin).toBe('redis');
    const { username, password, host, port } = issued.body.credentials;
    expect(username).toMatch(/^tsr_cache_ro_/);
    expect([host, port]).toEqual(['127.0.0.1', 6379]);
    expect(issued.body.renewable).toBe(true);
    const session = await redisSession(username, password);
    expect(await session.get('tessera:broker:x')).toBeNull();
    expect(await replyTo(session.set('tessera:broker:x', '1'))).toMatch(/^NOPERM/);

    const renewed = await broker.api('POST', `/v1/leases/${issued.body.lease_id}/renew`, { token: workload, body: { increment: '20m' } });
    expect(renewed.status).toBe(200);
    const revoked = await broker.api('POST', `/v1/leases/${issued.body.lease_id}/revoke`, { token: workload });
    expect(revoked.status).toBe(200);
    expect(await sessionAlive(session)).toBe(false);
    expect(await aclUser(username)).toBeNull();

    // The queue (BullMQ on the default user) still works: a short lease expires through its delayed job.
    const short = await broker.api('POST', '/v1/creds/cache-ro', { token: workload, body: { ttl: '1s' } });
    expect(short.status).toBe(201);
    expect(await aclUser(short.body.credentials.username)).not.toBeNull();
    expect(await eventually(async () => (await aclUser(short.body.credentials.username)) === null, 15_000)).toBe(true);
  });
});
