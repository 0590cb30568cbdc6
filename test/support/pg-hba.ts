/**
 * Makes PostgreSQL check passwords for every role but the admin. With `trust` for everyone a wrong
 * password logs in too, and a test that checks passwords proves nothing. Same rules as .ci/run.
 */
import { readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { Client } from 'pg';

/** The rules, shared with .ci/run: the admin trusted, every other role asked for its password. */
export const HBA_RULES = readFileSync(join(__dirname, 'pg_hba.tessera.conf'), 'utf8');
export const HBA_MARKER = HBA_RULES.split('\n')[0];

export async function ensurePasswordsChecked(adminUrl: string): Promise<void> {
  const client = new Client({ connectionString: `${adminUrl}/postgres` });
  await client.connect();
  try {
    const { rows } = await client.query<{ hba_file: string }>('SHOW hba_file');
    const path = rows[0].hba_file;
    const current = readFileSync(path, 'utf8');
    if (!current.startsWith(HBA_MARKER)) {
      writeFileSync(path, `${HBA_RULES}${current}`);
      await client.query('SELECT pg_reload_conf()');
      await new Promise((r) => setTimeout(r, 300));
    }
  } finally {
    await client.end();
  }
}

/** Proves the rules are in force: a role with a password cannot log in with another one. */
export async function assertPasswordsChecked(adminUrl: string): Promise<void> {
  const admin = new Client({ connectionString: `${adminUrl}/postgres` });
  await admin.connect();
  const name = `tessera_hba_probe_${process.pid}`;
  try {
    await admin.query(`DROP ROLE IF EXISTS ${name}`);
    await admin.query(`CREATE ROLE ${name} LOGIN PASSWORD 'right-password'`);
    const url = new URL(`${adminUrl}/postgres`);
    const probe = new Client({ host: url.hostname, port: Number(url.port || 5432), database: 'postgres', user: name, password: 'wrong-password' });
    const loggedIn = await probe.connect().then(
      () => true,
      () => false,
    );
    await probe.end().catch(() => undefined);
    if (loggedIn) throw new Error('PostgreSQL accepted a wrong password: pg_hba.conf trusts every login, so password tests would prove nothing');
  } finally {
    await admin.query(`DROP ROLE IF EXISTS ${name}`);
    await admin.end();
  }
}
