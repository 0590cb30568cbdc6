import { Database, StatementNames } from '../../src/storage/database';
import { TARGET_URL } from '../support/services';

/**
 * The state database's statements as named prepared statements (Database), on real PostgreSQL: the
 * parameterized ones are prepared once per connection, a `*` keeps a statement unnamed so a column
 * added by another replica's migration cannot break it, and the option turns it all off.
 */
describe('prepared statements on the state database', () => {
  const table = 'tess_prepared_probe';
  const prepared = (db: Database) =>
    db.tx(async (c) => (await c.query<{ name: string; statement: string }>('SELECT name, statement FROM pg_prepared_statements')).rows);

  beforeAll(async () => {
    const db = new Database(TARGET_URL, 1);
    await db.query(`DROP TABLE IF EXISTS ${table}; CREATE TABLE ${table} (id int PRIMARY KEY, v text)`);
    await db.query(`INSERT INTO ${table} VALUES (1, 'one'), (2, 'two')`);
    await db.close();
  });
  afterAll(async () => {
    const db = new Database(TARGET_URL, 1);
    await db.query(`DROP TABLE IF EXISTS ${table}`);
    await db.close();
  });

  it('a parameterized statement is prepared once on the connection and answers each call with its own values', async () => {
    const db = new Database(TARGET_URL, 1);
    try {
      const sql = `SELECT v FROM ${table} WHERE id = $1`;
      expect((await db.query(sql, [1])).rows).toEqual([{ v: 'one' }]);
      expect((await db.query(sql, [2])).rows).toEqual([{ v: 'two' }]);
      await db.tx(async (c) => expect((await c.query(sql, [1])).rows).toEqual([{ v: 'one' }]));
      const names = (await prepared(db)).filter((p) => p.statement === sql);
      expect(names).toHaveLength(1);
      expect(names[0].name).toMatch(/^tessera_\d+$/);
    } finally {
      await db.close();
    }
  });

  it('a statement with a * stays unnamed, and keeps working after a column is added', async () => {
    const db = new Database(TARGET_URL, 1);
    try {
      const sql = `SELECT * FROM ${table} WHERE id = $1`;
      expect((await db.query(sql, [1])).rows).toEqual([{ id: 1, v: 'one' }]);
      expect((await prepared(db)).map((p) => p.statement)).not.toContain(sql);
      await db.query(`ALTER TABLE ${table} ADD COLUMN extra int`);
      expect((await db.query(sql, [1])).rows).toEqual([{ id: 1, v: 'one', extra: null }]);
      await db.query(`ALTER TABLE ${table} DROP COLUMN extra`);
    } finally {
      await db.close();
    }
  });

  it('with prepared: false nothing is prepared', async () => {
    const db = new Database(TARGET_URL, 1, { prepared: false });
    try {
      expect((await db.query(`SELECT v FROM ${table} WHERE id = $1`, [2])).rows).toEqual([{ v: 'two' }]);
      expect(await prepared(db)).toEqual([]);
    } finally {
      await db.close();
    }
  });

  it('only a * that is a result list keeps a statement unnamed', () => {
    const names = new StatementNames();
    for (const sql of ['SELECT * FROM t WHERE id = $1', 'UPDATE t SET v = $1 RETURNING *', 'SELECT t.* FROM t WHERE id = $1', 'SELECT id, * FROM t WHERE id = $1']) {
      expect(names.of(sql)).toBeUndefined();
    }
    expect(names.of('SELECT count(*) FROM t WHERE id = $1')).toMatch(/^tessera_/);
    expect(names.of('SELECT 2 * $1::int')).toMatch(/^tessera_/);
  });

  it('names are bounded: past the limit, new texts run unnamed', () => {
    const names = new StatementNames(2);
    expect(names.of('SELECT $1')).toBe('tessera_1');
    expect(names.of('SELECT $1, 2')).toBe('tessera_2');
    expect(names.of('SELECT $1, 3')).toBeUndefined();
    expect(names.of('SELECT $1')).toBe('tessera_1');
  });
});
