/**
 * Makes PostgreSQL check passwords for every role but the admin. With `trust` for everyone a wrong
 * password logs in too, and a test that checks passwords proves nothing. Same rules as .ci/run.
 */
import { readFileSync, writeFileSync } from 'node:fs';
import { Client } from 'pg';

export const HBA_MARKER = '# tessera: passwords checked for every role but postgres';
export const HBA_RULES = [
  HBA_MARKER,
  'local   all   postgres                 trust',
  'host    all   postgres   127.0.0.1/32  trust',
  'host    all   postgres   ::1/128       trust',
  'local   all   all                      scram-sha-256',
  'host    all   all        127.0.0.1/32  scram-sha-256',
  'host    all   all        ::1/128       scram-sha-256',
  '# end tessera',
].join('\n');

export async function ensurePasswordsChecked(adminUrl: string): Promise<void> {
  const client = new Client({ connectionString: `${adminUrl}/postgres` });
  await client.connect();
  try {
    const { rows } = await client.query<{ hba_file: string }>('SHOW hba_file');
    const path = rows[0].hba_file;
    const current = readFileSync(path, 'utf8');
    if (!current.startsWith(HBA_MARKER)) {
      writeFileSync(path, `${HBA_RULES}\n${current}`);
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
