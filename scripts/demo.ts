/**
 * The main job, end to end on this machine: prepares the `app` database, starts the broker with
 * config/tessera.yaml, leases a PostgreSQL credential as a workload, uses it, renews it, revokes it, and
 * shows that it no longer logs in. Exits non-zero if any step does not behave.
 */
import { ChildProcess, spawn } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { existsSync, mkdirSync, readFileSync, writeFileSync } from 'node:fs';
import { Client } from 'pg';
import { withPgAdmin } from '../devkit/admin';
import { mintJwtSvid } from './tokens';

const ADDR = 'http://127.0.0.1:8200';
const DEV_KEY_FILE = '.tessera/dev-master-key';
const ADMIN = 'postgres://postgres@127.0.0.1:5432';

function step(text: string): void {
  process.stdout.write(`\n==> ${text}\n`);
}

const admin = <T>(database: string, fn: (c: Client) => Promise<T>): Promise<T> => withPgAdmin(ADMIN, database, fn);

async function prepareTarget(): Promise<void> {
  await admin('postgres', async (c) => {
    const { rowCount } = await c.query(`SELECT 1 FROM pg_database WHERE datname = 'app'`);
    if (!rowCount) await c.query('CREATE DATABASE app');
  });
  await admin('app', async (c) => {
    await c.query(`DO $$ BEGIN
      IF NOT EXISTS (SELECT 1 FROM pg_roles WHERE rolname = 'app_readonly') THEN CREATE ROLE app_readonly NOLOGIN; END IF;
    END $$`);
    await c.query('CREATE TABLE IF NOT EXISTS invoices (id int PRIMARY KEY, customer text NOT NULL, amount_cents int NOT NULL)');
    await c.query(`INSERT INTO invoices VALUES (1, 'ACME', 12000), (2, 'Globex', 4550), (3, 'Initech', 990) ON CONFLICT DO NOTHING`);
    await c.query('GRANT SELECT ON invoices TO app_readonly');
  });
}

async function waitReady(server: ChildProcess): Promise<void> {
  for (let i = 0; i < 100; i++) {
    if (server.exitCode !== null) {
      throw new Error(
        `the broker exited with code ${server.exitCode} (if it says no signing key opens, the state database "tessera" was made with another master key: drop it, or set TESSERA_MASTER_KEY to that key)`,
      );
    }
    try {
      const res = await fetch(`${ADDR}/v1/health/ready`);
      if (res.ok) return;
    } catch {
      /* not listening yet */
    }
    await new Promise((r) => setTimeout(r, 200));
  }
  throw new Error('the broker did not become ready in 20 s');
}

async function api(method: string, path: string, token: string, body?: unknown): Promise<{ status: number; json: any }> {
  const res = await fetch(`${ADDR}${path}`, {
    method,
    headers: { authorization: `Bearer ${token}`, 'content-type': 'application/json' },
    body: body === undefined ? undefined : JSON.stringify(body),
  });
  return { status: res.status, json: await res.json() };
}

function expect(cond: unknown, what: string): void {
  if (!cond) throw new Error(`expected: ${what}`);
}

async function login(creds: { username: string; password: string; host: string; port: number; database: string }) {
  const client = new Client({ user: creds.username, password: creds.password, host: creds.host, port: creds.port, database: creds.database });
  await client.connect();
  try {
    return (await client.query('SELECT current_user AS me, count(*)::int AS invoices FROM invoices')).rows[0];
  } finally {
    await client.end();
  }
}

async function run(): Promise<void> {
  step('Preparing the target database "app" (role app_readonly, table invoices)');
  await prepareTarget();

  const env = { ...process.env };
  if (!env.TESSERA_MASTER_KEY) {
    // The state database keeps what the key sealed (the broker's signing key, the audit chain's key
    // id), so every run of the demo must use the same key: it is made once and kept, unreadable to
    // others, in .tessera/ (ignored by git).
    if (!existsSync(DEV_KEY_FILE)) {
      mkdirSync('.tessera', { recursive: true, mode: 0o700 });
      writeFileSync(DEV_KEY_FILE, randomBytes(32).toString('base64'), { mode: 0o600 });
      process.stdout.write(`TESSERA_MASTER_KEY was not set: made a development key in ${DEV_KEY_FILE}\n`);
    }
    env.TESSERA_MASTER_KEY = readFileSync(DEV_KEY_FILE, 'utf8').trim();
  }
  step('Starting the broker: tessera server --config config/tessera.yaml');
  const server = spawn(process.execPath, ['bin/tessera.js', 'server', '--config', 'config/tessera.yaml'], {
    env,
    stdio: ['ignore', 'ignore', 'inherit'],
  });
  try {
    await waitReady(server);
    const key = JSON.parse(readFileSync('config/dev/signing-key.jwk.json', 'utf8'));
    const subject = 'spiffe://dev.example/ns/payments/api';
    const token = await mintJwtSvid(key, { subject, ttlSeconds: 600 });
    process.stdout.write(`broker ready at ${ADDR}; workload identity ${subject}\n`);

    step('POST /v1/creds/payments-ro {"ttl":"2m"}');
    const issued = await api('POST', '/v1/creds/payments-ro', token, { ttl: '2m', run_id: 'demo' });
    expect(issued.status === 201, `201 from creds, got ${issued.status} ${JSON.stringify(issued.json)}`);
    const { credentials, ...lease } = issued.json;
    process.stdout.write(`${JSON.stringify({ ...lease, credentials: { ...credentials, password: `${credentials.password.slice(0, 4)}… (${credentials.password.length} chars)` } }, null, 2)}\n`);

    step('Logging in to PostgreSQL with the leased credential');
    const row = await login(credentials);
    process.stdout.write(`connected as ${row.me}; SELECT count(*) FROM invoices = ${row.invoices}\n`);
    expect(row.me === credentials.username, 'current_user is the leased account');

    step('POST /v1/leases/{id}/renew {"increment":"10m"}');
    const renewed = await api('POST', `/v1/leases/${lease.lease_id}/renew`, token, { increment: '10m' });
    expect(renewed.status === 200, `200 from renew, got ${renewed.status}`);
    process.stdout.write(`expires_at ${lease.expires_at} -> ${renewed.json.expires_at} (max ${renewed.json.max_expires_at})\n`);

    step('POST /v1/leases/{id}/revoke');
    const revoked = await api('POST', `/v1/leases/${lease.lease_id}/revoke`, token);
    expect(revoked.status === 200 && revoked.json.state === 'revoked', `revoked, got ${revoked.status} ${JSON.stringify(revoked.json)}`);
    process.stdout.write(`${JSON.stringify(revoked.json)}\n`);

    step('Logging in again with the revoked credential');
    const refused = await login(credentials).then(
      () => undefined,
      (err: Error & { code?: string }) => err,
    );
    expect(refused, 'the revoked credential no longer logs in');
    process.stdout.write(`refused as expected: ${refused!.code} ${refused!.message}\n`);
    const exists = await admin('postgres', (c) => c.query('SELECT 1 FROM pg_roles WHERE rolname = $1', [credentials.username]));
    expect(exists.rowCount === 0, 'the role is gone');
    process.stdout.write(`role ${credentials.username} no longer exists\n`);

    const audit = await api('GET', '/v1/leases?run_id=demo&limit=5', token);
    process.stdout.write(`\nlease history for run "demo": ${audit.json.items.map((l: { lease_id: string; state: string }) => `${l.lease_id}=${l.state}`).join(', ')}\n`);
    step('Done: a real PostgreSQL credential was leased, used, renewed and revoked through Tessera.');
  } finally {
    server.kill('SIGTERM');
    await new Promise((r) => server.once('exit', r));
  }
}

run().catch((err) => {
  process.stderr.write(`demo failed: ${err instanceof Error ? err.message : err}\n`);
  process.exit(1);
});
