import { Client } from 'pg';
import { assertPasswordsChecked, ensurePasswordsChecked } from './pg-hba';
import { prepareMysqlTarget } from './mysql';
import { PG_ADMIN_URL, TARGET_DB } from './services';

/** Once per test run: password checking on, and the target database with a group role and a table. */
export default async function globalSetup(): Promise<void> {
  await ensurePasswordsChecked(PG_ADMIN_URL);
  await assertPasswordsChecked(PG_ADMIN_URL);
  const admin = new Client({ connectionString: `${PG_ADMIN_URL}/postgres` });
  await admin.connect();
  try {
    const { rowCount } = await admin.query('SELECT 1 FROM pg_database WHERE datname = $1', [TARGET_DB]);
    if (!rowCount) await admin.query(`CREATE DATABASE ${TARGET_DB}`);
  } finally {
    await admin.end();
  }
  const target = new Client({ connectionString: `${PG_ADMIN_URL}/${TARGET_DB}` });
  await target.connect();
  try {
    await target.query(`DO $$ BEGIN
      IF NOT EXISTS (SELECT 1 FROM pg_roles WHERE rolname = 'tessera_test_readonly') THEN CREATE ROLE tessera_test_readonly NOLOGIN; END IF;
    END $$`);
    await target.query('CREATE TABLE IF NOT EXISTS widgets (id int PRIMARY KEY, name text NOT NULL)');
    await target.query(`INSERT INTO widgets VALUES (1, 'sprocket'), (2, 'gear') ON CONFLICT DO NOTHING`);
    await target.query('GRANT SELECT ON widgets TO tessera_test_readonly');
  } finally {
    await target.end();
  }
  await prepareMysqlTarget();
}
