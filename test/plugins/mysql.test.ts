import { MysqlPlugin } from '../../plugins/mysql/mysql.plugin';
import { mysqlConnectionSchema, mysqlRoleSchema } from '../../plugins/mysql/mysql.config';
import { newAccountName, newPassword } from '../../src/leases/names';
import { mysqlLogin, mysqlUsersLike, prepareMysqlTarget, withMysqlAdmin } from '../support/mysql';
import { MYSQL_ADMIN_URL } from '../support/services';

/** What only the mysql plugin does, beyond the shared conformance suite. */
describe('mysql plugin specifics', () => {
  beforeAll(() => prepareMysqlTarget());

  it('issues arriving together share one query, and one that fails does not fail the others or leave its account', async () => {
    const plugin = new MysqlPlugin('my', mysqlConnectionSchema.parse({ url: MYSQL_ADMIN_URL }));
    const good = mysqlRoleSchema.parse({ grants: ['SELECT ON test.*'] });
    const bad = mysqlRoleSchema.parse({ grants: ['SELECT ON test.table_that_does_not_exist'] });
    const requests = Array.from({ length: 24 }, (_, i) => ({ username: newAccountName(`mb${i}`, 32), password: newPassword(), expiresAt: new Date(Date.now() + 60_000), role: i % 5 === 2 ? bad : good }));
    const queries = batchQueries(plugin);
    try {
      const outcomes = await Promise.allSettled(requests.map((r) => plugin.createUser(r)));
      outcomes.forEach((o, i) => expect([i, o.status]).toEqual([i, requests[i].role === bad ? 'rejected' : 'fulfilled']));
      const failed = outcomes.find((o) => o.status === 'rejected') as PromiseRejectedResult;
      expect(String(failed.reason.message)).toMatch(/table_that_does_not_exist/);
      for (const r of requests) expect(String(failed.reason.message)).not.toContain(r.password);
      // Batched: one CREATE USER naming several accounts, and one GRANT to several.
      expect(queries.some((q) => /^CREATE USER [^;]* IDENTIFIED BY [^;]*, [^;]* IDENTIFIED BY /.test(q))).toBe(true);
      expect(queries.some((q) => /\nGRANT SELECT ON test\.\* TO [^;\n]*, /.test(q))).toBe(true);
      for (const r of requests) {
        const exists = (await mysqlUsersLike(r.username)).includes(r.username);
        expect([r.username, exists]).toEqual([r.username, r.role === good]);
        if (exists) {
          expect(await mysqlLogin(r.username, r.password)).toEqual({ ok: true, rows: 3 });
          await plugin.revokeUser({ username: r.username, role: good });
        }
      }
    } finally {
      await plugin.close();
    }
  });

  it('a grant ends at its object: words after it (another grantee, an AS clause) are refused at config time', () => {
    for (const g of ['SELECT ON test.* TO bob', 'SELECT ON test.* AS x', 'SELECT ON test.* WITH GRANT OPTION']) {
      expect(() => mysqlRoleSchema.parse({ grants: [g] })).toThrow(/must look like/);
    }
    expect(mysqlRoleSchema.parse({ grants: ['SELECT, SHOW VIEW ON reporting.*', 'INSERT ON `app`.`t`'] }).grants).toHaveLength(2);
  });

  it('a batch whose roles grant nothing is one CREATE USER that stands (not undone and redone alone)', async () => {
    const plugin = new MysqlPlugin('my', mysqlConnectionSchema.parse({ url: MYSQL_ADMIN_URL }));
    const bare = mysqlRoleSchema.parse({ grants: [] });
    const twice = mysqlRoleSchema.parse({ grants: ['SELECT ON test.*', 'SELECT ON test.*'] });
    const requests = Array.from({ length: 8 }, (_, i) => ({ username: newAccountName(`mn${i}`, 32), password: newPassword(), expiresAt: new Date(Date.now() + 60_000), role: i < 4 ? bare : twice }));
    const queries = batchQueries(plugin);
    try {
      await Promise.all(requests.slice(0, 4).map((r) => plugin.createUser(r)));
      // A role listing a grant twice: each account is named once in its GRANT.
      await Promise.all(requests.slice(4).map((r) => plugin.createUser(r)));
      expect(queries.filter((q) => q.startsWith('CREATE USER')).length).toBeGreaterThanOrEqual(2);
      expect(queries.filter((q) => q.startsWith('DROP USER'))).toEqual([]);
      for (const r of requests) {
        expect(await mysqlLogin(r.username, r.password)).toEqual(r.role === bare ? { ok: false, code: 'ER_DBACCESS_DENIED_ERROR' } : { ok: true, rows: 3 }); // bare: the password is right, the database is not granted
        expect((await mysqlUsersLike(r.username)).includes(r.username)).toBe(true);
        await plugin.revokeUser({ username: r.username, role: r.role });
      }
    } finally {
      await plugin.close();
    }
  });

  it('a batch of roles with different grants gives each account exactly its own', async () => {
    const plugin = new MysqlPlugin('my', mysqlConnectionSchema.parse({ url: MYSQL_ADMIN_URL }));
    const reader = mysqlRoleSchema.parse({ grants: ['SELECT ON test.*'] });
    const writer = mysqlRoleSchema.parse({ grants: ['SELECT ON test.*', 'INSERT ON test.*'] });
    const requests = Array.from({ length: 12 }, (_, i) => ({ username: newAccountName(`mg${i}`, 32), password: newPassword(), expiresAt: new Date(Date.now() + 60_000), role: i % 2 ? writer : reader }));
    try {
      await Promise.all(requests.map((r) => plugin.createUser(r)));
      for (const r of requests) {
        const grants = await withMysqlAdmin(async (c) => ((await c.query(`SHOW GRANTS FOR ${c.escape(r.username)}@'%'`))[0] as Record<string, string>[]).map((row) => Object.values(row)[0]).join('\n'));
        expect([r.username, /GRANT SELECT, INSERT ON `test`/.test(grants)]).toEqual([r.username, r.role === writer]);
        expect(grants).toMatch(/ON `test`\.\*/);
        expect(await mysqlLogin(r.username, r.password)).toEqual({ ok: true, rows: 3 });
        await plugin.revokeUser({ username: r.username, role: r.role });
      }
    } finally {
      await plugin.close();
    }
  });
});

/** The text of every query the plugin's batch pool sends from now on. */
function batchQueries(plugin: MysqlPlugin): string[] {
  const queries: string[] = [];
  const batchPool = (plugin as unknown as { creates: { pool: { getConnection: () => Promise<{ query: (...a: unknown[]) => unknown }> } } }).creates.pool;
  const getConnection = batchPool.getConnection.bind(batchPool);
  batchPool.getConnection = async () => {
    const conn = await getConnection();
    const query = conn.query.bind(conn);
    conn.query = (text: unknown, ...rest: unknown[]) => (queries.push(String(text)), query(text, ...rest));
    return conn;
  };
  return queries;
}
