import { Client } from 'pg';
import { hbaDigestReader, loginAs, observedLogin, sessionFactsReads } from '../../plugins/postgres/proofs';
import { PostgresPlugin } from '../../plugins/postgres/postgres.plugin';
import { postgresConnectionSchema, postgresRoleSchema } from '../../plugins/postgres/postgres.config';
import { newAccountName, newPassword } from '../../src/leases/names';
import { TARGET_URL } from '../support/services';
import { createPgAccount } from '../support/statics';
import { reloadPgConf } from '../support/target';
import { rolesLike, withAdmin } from '../support/target';

/** What only the postgres plugin does, beyond the shared conformance suite. */
describe('postgres plugin specifics', () => {
  const plugin = new PostgresPlugin('pg', postgresConnectionSchema.parse({ url: TARGET_URL, scram_iterations: 1 }));
  const expiresAt = () => new Date(Date.now() + 60_000);
  afterAll(() => plugin.close());

  it('revokes a role that holds privileges and owns objects: they go, the admin inherits nothing', async () => {
    const role = postgresRoleSchema.parse({
      creation_statements: ['CREATE ROLE {{name}} WITH LOGIN PASSWORD {{password}} VALID UNTIL {{expiration}}', 'GRANT SELECT ON widgets TO {{name}}', 'GRANT CREATE ON SCHEMA public TO {{name}}'],
    });
    const username = newAccountName('owner-test', 63);
    const password = newPassword();
    await plugin.createUser({ username, password, expiresAt: expiresAt(), role });
    const url = new URL(TARGET_URL);
    const session = new Client({ host: url.hostname, port: Number(url.port), database: url.pathname.slice(1), user: username, password });
    await session.connect();
    await session.query(`CREATE TABLE ${username}_scratch (x int)`);
    await session.end();

    await plugin.revokeUser({ username, role });
    expect(await rolesLike(username)).toEqual([]);
    const left = await withAdmin('tessera_target', (c) => c.query(`SELECT to_regclass($1) AS t`, [`public.${username}_scratch`]));
    expect(left.rows[0].t).toBeNull(); // dropped with its owner, not handed to the admin
  });

  it('writes a SCRAM verifier with the configured round count, never the password', async () => {
    const username = newAccountName('scram-test', 63);
    const password = newPassword();
    const fast = new PostgresPlugin('pg', postgresConnectionSchema.parse({ url: TARGET_URL, scram_iterations: 1 }));
    await fast.createUser({ username, password, expiresAt: expiresAt(), role: postgresRoleSchema.parse({}) });
    const { rows } = await withAdmin('postgres', (c) => c.query<{ rolpassword: string }>('SELECT rolpassword FROM pg_authid WHERE rolname = $1', [username]));
    expect(rows[0].rolpassword).toMatch(/^SCRAM-SHA-256\$1:/);
    expect(rows[0].rolpassword).not.toContain(password);
    expect((await fast.verifyLogin({ username, password })).ok).toBe(true);
    await fast.revokeUser({ username, role: {} });
    await fast.close();
  });

  it('by default writes a 16-round verifier (broker passwords need no stretching), which logs in', async () => {
    const username = newAccountName('scram-default', 63);
    const password = newPassword();
    const byDefault = new PostgresPlugin('pg', postgresConnectionSchema.parse({ url: TARGET_URL }));
    await byDefault.createUser({ username, password, expiresAt: expiresAt(), role: postgresRoleSchema.parse({}) });
    const { rows } = await withAdmin('postgres', (c) => c.query<{ rolpassword: string }>('SELECT rolpassword FROM pg_authid WHERE rolname = $1', [username]));
    expect(rows[0].rolpassword).toMatch(/^SCRAM-SHA-256\$16:/);
    expect((await byDefault.verifyLogin({ username, password })).ok).toBe(true);
    await byDefault.revokeUser({ username, role: {} });
    await byDefault.close();
  });

  it('issues arriving together share one statement, and one that fails does not fail the others', async () => {
    const batching = new PostgresPlugin('pg', postgresConnectionSchema.parse({ url: TARGET_URL, scram_iterations: 1 }));
    const good = postgresRoleSchema.parse({});
    const bad = postgresRoleSchema.parse({ member_of: ['no_such_group_for_batch_test'] });
    const requests = Array.from({ length: 24 }, (_, i) => ({ username: newAccountName(`batch-${i}`, 63), password: newPassword(), expiresAt: expiresAt(), role: i % 5 === 2 ? bad : good }));
    const statements: string[] = [];
    const pool = (batching as unknown as { pool: { query: (...a: unknown[]) => unknown; connect: () => Promise<{ query: (...a: unknown[]) => unknown }> } }).pool;
    const connect = pool.connect.bind(pool);
    pool.connect = async () => {
      const client = await connect();
      const query = client.query.bind(client);
      client.query = (text: unknown, ...rest: unknown[]) => (statements.push(String(text)), query(text, ...rest));
      return client;
    };
    const outcomes = await Promise.allSettled(requests.map((r) => batching.createUser(r)));
    outcomes.forEach((o, i) => expect([i, o.status]).toEqual([i, requests[i].role === bad ? 'rejected' : 'fulfilled']));
    const failed = outcomes.find((o) => o.status === 'rejected') as PromiseRejectedResult;
    expect(String(failed.reason.message)).toMatch(/no_such_group_for_batch_test/);
    // Some statement carried several CREATE ROLEs: issues were batched.
    expect(statements.some((s) => (s.match(/CREATE ROLE/g) ?? []).length > 1)).toBe(true);
    for (const r of requests) {
      const exists = (await rolesLike(r.username)).length === 1;
      expect([r.username, exists]).toEqual([r.username, r.role === good]);
      if (exists) {
        expect((await batching.verifyLogin({ username: r.username, password: r.password })).ok).toBe(true);
        await batching.revokeUser({ username: r.username, role: {} });
      }
    }
    await batching.close();
  });

  it('a password set with endSessions names its late logins; endSessionsStartedBefore ends only sessions begun before then', async () => {
    const role = 'tess_late_plugin';
    await createPgAccount(role, 'legacy-late-plugin');
    const url = new URL(TARGET_URL);
    const session = (password: string) => {
      const c = new Client({ host: url.hostname, port: Number(url.port), database: url.pathname.slice(1), user: role, password });
      c.on('error', () => undefined);
      return c.connect().then(() => c);
    };
    const alive = (c: Client) => c.query('SELECT 1').then(() => true, () => false);
    const old = await session('legacy-late-plugin');
    const password = newPassword();
    const { lateLogins } = await plugin.setStaticSecret({ account: role, password, endSessions: true });
    const { rows } = await withAdmin('postgres', (c) => c.query<{ s: number }>(`SELECT setting::int AS s FROM pg_settings WHERE name = 'authentication_timeout'`));
    expect(lateLogins).toEqual({ before: expect.stringMatching(/^\d{16}$/), withinMs: rows[0].s * 1000 + 2000 });
    expect(await alive(old)).toBe(false);
    // A session that started before the cutoff (here: opened before the password change, and still open
    // because it was not ended) stands in for a late login; one opened after is left alone.
    const before = await session(password);
    await new Promise((r) => setTimeout(r, 5));
    const { lateLogins: none } = await plugin.setStaticSecret({ account: role, password });
    expect(none).toBeUndefined(); // no endSessions, no late logins
    const { rows: now } = await withAdmin('postgres', (c) => c.query<{ t: string }>(`SELECT (extract(epoch FROM clock_timestamp()) * 1000000)::bigint::text AS t`));
    const after = await session(password);
    // An admin that may not see when other roles' sessions started cannot tell late from new: it refuses.
    await withAdmin('postgres', (c) => c.query(`DROP ROLE IF EXISTS tess_plain_admin; CREATE ROLE tess_plain_admin LOGIN CREATEROLE PASSWORD 'plain-admin' IN ROLE pg_signal_backend`));
    const adminUrl = new URL(TARGET_URL);
    [adminUrl.username, adminUrl.password] = ['tess_plain_admin', 'plain-admin'];
    const plain = new PostgresPlugin('pg-plain', postgresConnectionSchema.parse({ url: adminUrl.toString() }));
    // Sweeps asked together go in one query, and each gets its own answer.
    const [hidden, nothing] = await Promise.allSettled([
      plain.endSessionsStartedBefore({ account: role, before: now[0].t }),
      plain.endSessionsStartedBefore({ account: 'tess_no_such_role', before: now[0].t }),
    ]);
    expect(hidden).toMatchObject({ status: 'rejected', reason: { message: expect.stringMatching(/cannot see when 2 session\(s\) of tess_late_plugin started.*pg_read_all_stats/) } });
    expect(nothing).toEqual({ status: 'fulfilled', value: { ended: 0 } });
    expect([await alive(before), await alive(after)]).toEqual([true, true]);
    await plain.close();

    // Two sweeps of one role (two rotations) are made once, with the later cutoff, and the session
    // counted once; here the earlier cutoff is before either session began.
    const earlier = (BigInt(now[0].t) - 60_000_000n).toString();
    expect(
      await Promise.all([
        plugin.endSessionsStartedBefore({ account: role, before: earlier }),
        plugin.endSessionsStartedBefore({ account: role, before: now[0].t }),
        plugin.endSessionsStartedBefore({ account: 'tess_no_such_role', before: now[0].t }),
      ]),
    ).toEqual([{ ended: 1 }, { ended: 0 }, { ended: 0 }]);
    const deadline = Date.now() + 5000;
    while ((await alive(before)) && Date.now() < deadline) await new Promise((r) => setTimeout(r, 20));
    expect([await alive(before), await alive(after)]).toEqual([false, true]);
    await Promise.all([old, before, after].map((c) => c.end().catch(() => undefined)));
    await withAdmin('postgres', (c) => c.query('DROP ROLE tess_plain_admin'));
  });

  it("late-login sweeps asked together: one account's sessions the admin may not end never keep another's alive", async () => {
    const [a, b] = ['tess_sweep_a', 'tess_sweep_b'];
    for (const role of [a, b]) await createPgAccount(role, `legacy-${role}`);
    const url = new URL(TARGET_URL);
    const session = async (role: string) => {
      const c = new Client({ host: url.hostname, port: Number(url.port), database: url.pathname.slice(1), user: role, password: `legacy-${role}` });
      c.on('error', () => undefined);
      await c.connect();
      return c;
    };
    const [sa, sb] = [await session(a), await session(b)];
    // An admin that sees every session's start but may signal only b's (a member of b, not of pg_signal_backend).
    await withAdmin('postgres', (c) =>
      c.query(`DROP ROLE IF EXISTS tess_sweep_admin; CREATE ROLE tess_sweep_admin LOGIN CREATEROLE PASSWORD 'sweep-admin' IN ROLE pg_read_all_stats; GRANT ${b} TO tess_sweep_admin`),
    );
    const adminUrl = new URL(TARGET_URL);
    [adminUrl.username, adminUrl.password] = ['tess_sweep_admin', 'sweep-admin'];
    const limited = new PostgresPlugin('pg-limited', postgresConnectionSchema.parse({ url: adminUrl.toString() }));
    try {
      const { rows } = await withAdmin('postgres', (c) => c.query<{ t: string }>(`SELECT (extract(epoch FROM clock_timestamp()) * 1000000)::bigint::text AS t`));
      const [ofA, ofB] = await Promise.allSettled([a, b].map((account) => limited.endSessionsStartedBefore({ account, before: rows[0].t })));
      expect(ofA).toMatchObject({ status: 'rejected', reason: { message: expect.stringMatching(/may not end 1 late session\(s\) of tess_sweep_a.*pg_signal_backend/) } });
      expect(ofB).toEqual({ status: 'fulfilled', value: { ended: 1 } });
      const alive = (c: Client) => c.query('SELECT 1').then(() => true, () => false);
      const deadline = Date.now() + 5000;
      while ((await alive(sb)) && Date.now() < deadline) await new Promise((r) => setTimeout(r, 20));
      expect([await alive(sa), await alive(sb)]).toEqual([true, false]);
    } finally {
      await limited.close();
      await Promise.all([sa, sb].map((c) => c.end().catch(() => undefined)));
      await withAdmin('postgres', (c) => c.query('DROP ROLE tess_sweep_admin'));
    }
  });

  describe('checkStoredPasswords: judging passwords from pg_authid instead of logging in', () => {
    const role = 'tess_stored_check';
    beforeAll(() => createPgAccount(role, 'set-by-someone-else'));
    const check = (p: PostgresPlugin, ...passwords: string[]) =>
      p.checkStoredPasswords({ checks: passwords.map((password) => ({ account: role, password })) }).then((r) => r.results);

    it('a role this plugin never set is unknown: the caller logs in instead', async () => {
      expect(await check(plugin, 'set-by-someone-else', 'anything')).toEqual(['unknown', 'unknown']);
      expect(await plugin.checkStoredPasswords({ checks: [{ account: 'tess_no_such_role', password: 'x' }] })).toEqual({ results: ['unknown'] });
    });

    it('after setting: the new password is accepted and every other refused, which logging in confirms', async () => {
      const [oldPassword, newPw, other] = [newPassword(), newPassword(), newPassword()];
      await plugin.setStaticSecret({ account: role, password: oldPassword });
      await plugin.setStaticSecret({ account: role, password: newPw });
      // No login checked by the new verifier seen yet: nothing is vouched for.
      expect(await check(plugin, oldPassword, newPw, other)).toEqual(['unknown', 'unknown', 'unknown']);
      expect((await plugin.verifyLogin({ username: role, password: oldPassword })).ok).toBe(false);
      expect((await plugin.verifyLogin({ username: role, password: newPw })).ok).toBe(true);
      expect(await check(plugin, oldPassword, newPw, other)).toEqual(['refused', 'accepted', 'refused']);
      // Retiring with a random password: the one set before is now refused too.
      await plugin.retireStaticSecret({ account: role, password: other });
      expect(await check(plugin, newPw, other)).toEqual(['unknown', 'unknown']);
      expect((await plugin.verifyLogin({ username: role, password: other })).ok).toBe(true);
      expect(await check(plugin, newPw, other)).toEqual(['refused', 'accepted']);
    });

    it('once_per_configuration: unknown until one login is seen checked by SCRAM; then every later verifier set is vouched for without a login, until the server reloads its configuration or the role is created anew', async () => {
      const [oldPassword, newPw, other, fourth] = [newPassword(), newPassword(), newPassword(), newPassword()];
      const fresh = new PostgresPlugin('pg', postgresConnectionSchema.parse({ url: TARGET_URL, scram_iterations: 1, verify_logins: 'once_per_configuration' }));
      try {
        await fresh.setStaticSecret({ account: role, password: oldPassword });
        await fresh.setStaticSecret({ account: role, password: newPw });
        // No login as the role seen by this plugin yet: nothing is vouched for.
        expect(await check(fresh, oldPassword, newPw, other)).toEqual(['unknown', 'unknown', 'unknown']);
        expect((await fresh.verifyLogin({ username: role, password: oldPassword })).ok).toBe(false);
        expect(await check(fresh, oldPassword, newPw, other)).toEqual(['unknown', 'unknown', 'unknown']);
        expect((await fresh.verifyLogin({ username: role, password: newPw })).ok).toBe(true);
        expect(await check(fresh, oldPassword, newPw, other)).toEqual(['refused', 'accepted', 'refused']);
        // Retiring with a random password: vouched for at once (same role, same configuration), and a
        // real login agrees with each verdict.
        await fresh.retireStaticSecret({ account: role, password: other });
        expect(await check(fresh, newPw, other)).toEqual(['refused', 'accepted']);
        expect((await loginAs(TARGET_URL, { username: role, password: newPw }, 5000)).ok).toBe(false);
        expect((await loginAs(TARGET_URL, { username: role, password: other }, 5000)).ok).toBe(true);
        // A configuration reload may have changed the pg_hba line for the role: unknown until a login.
        await reloadPgConf();
        await fresh.setStaticSecret({ account: role, password: fourth });
        expect(await check(fresh, other, fourth)).toEqual(['unknown', 'unknown']);
        expect((await fresh.verifyLogin({ username: role, password: fourth })).ok).toBe(true);
        expect(await check(fresh, other, fourth)).toEqual(['refused', 'accepted']);
        // The same name, another role: what a login showed of the old one says nothing of it.
        await createPgAccount(role, 'set-by-someone-else');
        await fresh.setStaticSecret({ account: role, password: other });
        expect(await check(fresh, fourth, other)).toEqual(['unknown', 'unknown']);
        expect((await fresh.verifyLogin({ username: role, password: other })).ok).toBe(true);
        expect(await check(fresh, fourth, other)).toEqual(['refused', 'accepted']);
      } finally {
        await fresh.close();
      }
    });

    it('every_password: a login vouches only for the verifier it logged in against (the same password set again needs a new login), and a refused login undoes it', async () => {
      const pw = newPassword();
      await plugin.setStaticSecret({ account: role, password: pw });
      expect((await plugin.verifyLogin({ username: role, password: pw })).ok).toBe(true);
      expect(await check(plugin, pw)).toEqual(['accepted']);
      await plugin.setStaticSecret({ account: role, password: pw });
      expect(await check(plugin, pw)).toEqual(['unknown']);
      expect((await plugin.verifyLogin({ username: role, password: pw })).ok).toBe(true);
      expect(await check(plugin, pw)).toEqual(['accepted']);
      expect((await plugin.verifyLogin({ username: role, password: newPassword() })).ok).toBe(false);
      expect(await check(plugin, pw)).toEqual(['unknown']);
    });

    it('a role that logs in as another (ALTER ROLE … SET role) hides when its session started from itself; the admin reads it, and it is vouched for like any role', async () => {
      const setter = 'tess_set_role';
      await createPgAccount(setter, 'x');
      await withAdmin('postgres', (c) => c.query(`ALTER ROLE ${setter} SET role = tessera_test_readonly`));
      const pw = newPassword();
      await plugin.setStaticSecret({ account: setter, password: pw });
      // Its session row hides when it started (the current role is another): the session alone gives no facts.
      const login = await loginAs(TARGET_URL, { username: setter, password: pw }, 5000);
      expect(login).toMatchObject({ ok: true, session: undefined });
      // The plugin's verify login has the admin read them while it is connected (logged in as: this role).
      expect((await plugin.verifyLogin({ username: setter, password: pw })).ok).toBe(true);
      expect((await plugin.checkStoredPasswords({ checks: [{ account: setter, password: pw }, { account: setter, password: 'not-it' }] })).results).toEqual(['accepted', 'refused']);
    });

    it("the admin's read of a login still connected gives the facts its session reports of itself; a peer that is not that connection gets none", async () => {
      const role = 'tess_facts_peer';
      await createPgAccount(role, 'x');
      const pw = newPassword();
      await plugin.setStaticSecret({ account: role, password: pw });
      const reads = sessionFactsReads((fn) => withAdmin('tessera_target', (c) => fn(c as never)));
      const seen: { [k in 'right' | 'otherPort' | 'otherAddress' | 'otherPid' | 'otherServer']?: unknown } = {};
      // A facts reader that answers nothing makes loginAs ask its own session: both readings of one backend.
      const own = await loginAs(TARGET_URL, { username: role, password: pw }, 5000, async (peer) => {
        [seen.right, seen.otherPort, seen.otherAddress, seen.otherPid, seen.otherServer] = await Promise.all([
          reads.submit(peer),
          reads.submit({ ...peer, port: peer.port === 65535 ? 1024 : peer.port + 1 }),
          reads.submit({ ...peer, address: peer.address === '127.0.0.2' ? '127.0.0.3' : '127.0.0.2' }),
          reads.submit({ ...peer, pid: peer.pid + 1 }),
          reads.submit({ ...peer, server: '127.0.0.9:5432' }), // the login went elsewhere than the admin
        ]);
        return undefined;
      });
      expect(own.session).toEqual({ startedAt: expect.any(BigInt), roleOid: expect.stringMatching(/^\d+$/), server: expect.any(String) });
      expect(seen).toEqual({ right: own.session, otherPort: undefined, otherAddress: undefined, otherPid: undefined, otherServer: undefined });
    });

    it("operators a role could plant in the admin's search_path do not change what the proofs read", async () => {
      await withAdmin('tessera_target', (c) =>
        c.query(`
          CREATE FUNCTION public.tess_forged_times(numeric, integer) RETURNS numeric LANGUAGE sql AS 'SELECT 42::numeric';
          CREATE OPERATOR public.* (LEFTARG = numeric, RIGHTARG = integer, FUNCTION = public.tess_forged_times);
          CREATE FUNCTION public.tess_forged_cat(text, integer) RETURNS text LANGUAGE sql AS $$SELECT 'forged'$$;
          CREATE OPERATOR public.|| (LEFTARG = text, RIGHTARG = integer, FUNCTION = public.tess_forged_cat);`),
      );
      try {
        // Unqualified SQL on the admin's default search_path picks them (exact matches beat built-ins reached by a cast).
        const { rows } = await withAdmin('tessera_target', (c) => c.query(`SELECT (extract(epoch FROM now()) * 1000000)::bigint::text AS x, 'a'::text || 1 AS y`));
        expect(rows[0]).toEqual({ x: '42', y: 'forged' });
        const role = 'tess_forged_ops';
        await createPgAccount(role, 'x');
        const pw = newPassword();
        const { lateLogins } = await plugin.setStaticSecret({ account: role, password: pw, endSessions: true });
        expect(Math.abs(Number(BigInt(lateLogins!.before) / 1000n) - Date.now())).toBeLessThan(60_000);
        const reads = sessionFactsReads((fn) => withAdmin('tessera_target', (c) => fn(c as never)));
        let facts: unknown;
        await loginAs(TARGET_URL, { username: role, password: pw }, 5000, async (peer) => (facts = await reads.submit(peer)) as never);
        expect(facts).toEqual({ startedAt: expect.any(BigInt), roleOid: expect.any(String), server: expect.not.stringContaining('forged') });
        expect(Math.abs(Number((facts as { startedAt: bigint }).startedAt / 1000n) - Date.now())).toBeLessThan(60_000);
        // The whole proof still holds: the login's facts and the pg_authid read agree.
        expect((await plugin.verifyLogin({ username: role, password: pw })).ok).toBe(true);
        expect((await plugin.checkStoredPasswords({ checks: [{ account: role, password: pw }] })).results).toEqual(['accepted']);
      } finally {
        await withAdmin('tessera_target', (c) =>
          c.query(`DROP OPERATOR public.* (numeric, integer); DROP OPERATOR public.|| (text, integer);
                   DROP FUNCTION public.tess_forged_times(numeric, integer); DROP FUNCTION public.tess_forged_cat(text, integer)`),
        );
      }
    });

    it('a role that shadows the functions of the login\'s query on its own search_path cannot fake when its session started', async () => {
      const shadow = 'tess_shadow_path';
      await createPgAccount(shadow, 'x');
      await withAdmin('tessera_target', async (c) => {
        await c.query(`DROP SCHEMA IF EXISTS ${shadow} CASCADE`);
        await c.query(`CREATE SCHEMA ${shadow} AUTHORIZATION ${shadow}`);
        await c.query(
          `CREATE FUNCTION ${shadow}.pg_stat_get_activity(pid integer) RETURNS TABLE (backend_start timestamptz, usesysid oid)
           LANGUAGE sql AS $$ SELECT timestamptz '2100-01-01', (SELECT oid FROM pg_catalog.pg_roles WHERE rolname = current_user) $$`,
        );
        await c.query(`ALTER FUNCTION ${shadow}.pg_stat_get_activity(integer) OWNER TO ${shadow}`);
      });
      await withAdmin('postgres', (c) => c.query(`ALTER ROLE ${shadow} SET search_path = ${shadow}, pg_catalog`));
      try {
        const pw = newPassword();
        await plugin.setStaticSecret({ account: shadow, password: pw });
        const login = await loginAs(TARGET_URL, { username: shadow, password: pw }, 5000);
        expect(login.ok).toBe(true);
        const startedMs = Number(login.session!.startedAt / 1000n);
        expect(Math.abs(startedMs - Date.now())).toBeLessThan(60_000);
      } finally {
        await withAdmin('tessera_target', (c) => c.query(`DROP SCHEMA IF EXISTS ${shadow} CASCADE`));
      }
    });

    it('a pg_hba digest the admin may not read is not asked for again for ten minutes (no refusal in the server log at every login)', async () => {
      let reads = 0;
      const read = hbaDigestReader((async () => {
        reads++;
        return 'refused'; // what hbaDigestOf answers for SQLSTATE 42501
      }) as never);
      const begun = performance.now();
      expect(await read.fresh()).toBeUndefined();
      expect(await read.fresh()).toBeUndefined();
      expect(await read.recent()).toBeUndefined();
      expect(reads).toBe(1);
      // A read begun before the refusal (the facts query's) does not make the rules readable again.
      read.seen({ digest: 'from-before', server: 'server-a' }, begun);
      expect(read.readable()).toBe(false);
      expect(await read.recent()).toBeUndefined();
    });

    it('a digest read that fails otherwise (a timeout, a lost connection) gives nothing this time, and does not pause the reads', async () => {
      let reads = 0;
      const read = hbaDigestReader((async () => {
        if (++reads === 1) throw new Error('Connection terminated unexpectedly');
        return { digest: 'rules', server: 'server-a' };
      }) as never);
      expect(await read.fresh()).toBeUndefined();
      expect(await read.fresh()).toEqual({ digest: 'rules', server: 'server-a' });
      expect(reads).toBe(2);
    });

    it('a digest before a login may be one read up to a second earlier; one after it is always read after', async () => {
      let reads = 0;
      const at = (digest: string, server = 'server-a') => ({ digest, server });
      const read = hbaDigestReader((async () => at(`digest-${++reads}`)) as never);
      expect(read.readable()).toBe(false); // nothing read yet: not asked along with the session facts
      expect(await read.recent()).toEqual(at('digest-1'));
      expect(read.readable()).toBe(true);
      expect(await read.recent()).toEqual(at('digest-1')); // reused
      expect(await read.fresh()).toEqual(at('digest-2')); // never reused
      read.seen(at('digest-with-facts'), performance.now());
      expect(await read.recent()).toEqual(at('digest-with-facts'));
      read.seen(at('older'), performance.now() - 5000); // an older read never replaces a newer one
      expect(await read.recent()).toEqual(at('digest-with-facts'));
      const late = hbaDigestReader((async () => at('now')) as never);
      late.seen(at('stale'), performance.now() - 1500);
      expect(await late.recent()).toEqual(at('now')); // older than a second: read again
    });

    it('a login is recorded only between digests of the rules of the server it reached', async () => {
      const role = 'tess_hba_server';
      await createPgAccount(role, 'x');
      const pw = newPassword();
      await plugin.setStaticSecret({ account: role, password: pw });
      const run = (fn: (c: never) => Promise<unknown>) => withAdmin('tessera_target', (c) => fn(c as never));
      const real = hbaDigestReader(run as never);
      const facts = sessionFactsReads(run as never, real);
      const login = { username: role, password: pw };
      const ok = await observedLogin(TARGET_URL, login, 5000, real, (p) => facts.submit(p));
      expect(ok.seen).toEqual(expect.objectContaining({ hba: (await real.fresh())!.digest }));
      // The same rules' digest, said to be another server's: nothing recorded.
      const digest = (await real.fresh())!;
      const elsewhere = { ...real, recent: async () => ({ ...digest, server: 'another-server' }) };
      expect((await observedLogin(TARGET_URL, login, 5000, elsewhere, (p) => facts.submit(p))).seen).toBeUndefined();
      // Rules that read differently after the login than before it: nothing recorded.
      const changed = { ...real, recent: async () => ({ ...digest, digest: 'other-rules' }) };
      expect((await observedLogin(TARGET_URL, login, 5000, changed, (p) => facts.submit(p))).seen).toBeUndefined();
    });

    it('changed behind its back (even back to an older verifier of its own) is unknown; NOLOGIN makes accepted unknown', async () => {
      const [first, second] = [newPassword(), newPassword()];
      await plugin.setStaticSecret({ account: role, password: first });
      const firstVerifier = await storedVerifier(role);
      await plugin.setStaticSecret({ account: role, password: second });
      await withAdmin('postgres', (c) => c.query(`ALTER ROLE ${role} PASSWORD '${first}'`));
      expect(await check(plugin, first, second)).toEqual(['unknown', 'unknown']);
      await withAdmin('postgres', (c) => c.query(`ALTER ROLE ${role} PASSWORD '${firstVerifier}'`));
      expect(await check(plugin, first, second)).toEqual(['unknown', 'unknown']);

      await plugin.setStaticSecret({ account: role, password: second });
      expect((await plugin.verifyLogin({ username: role, password: second })).ok).toBe(true);
      await withAdmin('postgres', (c) => c.query(`ALTER ROLE ${role} NOLOGIN`));
      try {
        expect(await check(plugin, first, second)).toEqual(['refused', 'unknown']);
      } finally {
        await withAdmin('postgres', (c) => c.query(`ALTER ROLE ${role} LOGIN`));
      }
    });

    it('a role whose logins pg_hba does not check by password (trust here) is never vouched for, though its logins succeed', async () => {
      const trusted = 'tess_hba_trusted';
      await createPgAccount(trusted, 'anything');
      const [first, second] = [newPassword(), newPassword()];
      await plugin.setStaticSecret({ account: trusted, password: first });
      await plugin.setStaticSecret({ account: trusted, password: second });
      expect((await plugin.verifyLogin({ username: trusted, password: second })).ok).toBe(true);
      expect((await plugin.verifyLogin({ username: trusted, password: first })).ok).toBe(true); // trust: any password
      const results = await plugin.checkStoredPasswords({ checks: [first, second].map((password) => ({ account: trusted, password })) });
      expect(results).toEqual({ results: ['unknown', 'unknown'] });
    });

    it('another plugin instance (another broker process) does not vouch for what this one set', async () => {
      const password = newPassword();
      await plugin.setStaticSecret({ account: role, password });
      const other = new PostgresPlugin('pg', postgresConnectionSchema.parse({ url: TARGET_URL, scram_iterations: 1 }));
      try {
        expect(await check(other, password)).toEqual(['unknown']);
      } finally {
        await other.close();
      }
    });
  });
});


async function storedVerifier(role: string): Promise<string> {
  const { rows } = await withAdmin('postgres', (c) => c.query<{ rolpassword: string }>('SELECT rolpassword FROM pg_authid WHERE rolname = $1', [role]));
  return rows[0].rolpassword;
}
