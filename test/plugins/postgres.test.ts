import { Client } from 'pg';
import { PostgresPlugin } from '../../plugins/postgres/postgres.plugin';
import { postgresConnectionSchema, postgresRoleSchema } from '../../plugins/postgres/postgres.config';
import { newAccountName, newPassword } from '../../src/leases/names';
import { TARGET_URL } from '../support/services';
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
});
