import { CreateUserCommand, IAMClient } from '@aws-sdk/client-iam';
import { createHmac } from 'node:crypto';
import { TestBroker, eventually } from './broker';
import { withMysqlAdmin } from './mysql';
import { withAdmin } from './target';

/** Legacy accounts for static secrets: they exist before Tessera, with passwords it does not know. */
export async function createPgAccount(name: string, password: string): Promise<void> {
  await withAdmin('postgres', async (c) => {
    await c.query(`DROP ROLE IF EXISTS "${name}"`);
    await c.query(`CREATE ROLE "${name}" LOGIN PASSWORD '${password}' IN ROLE tessera_test_readonly`);
  });
}

export async function createMysqlAccount(name: string, password: string): Promise<void> {
  await withMysqlAdmin(async (c) => {
    await c.query(`DROP USER IF EXISTS '${name}'@'%'`);
    await c.query(`CREATE USER '${name}'@'%' IDENTIFIED BY '${password}'`);
    await c.query(`GRANT SELECT ON test.* TO '${name}'@'%'`);
  });
}

export async function createIamUser(endpoint: string, name: string): Promise<void> {
  const iam = new IAMClient({ region: 'us-east-1', endpoint, credentials: { accessKeyId: 'AKIDTESSERAADMIN0000', secretAccessKey: 'x' } });
  await iam.send(new CreateUserCommand({ UserName: name }));
  iam.destroy();
}

/** Polls a rotation until it settles; returns its final view. */
export async function settled(broker: TestBroker, operator: string, rotationId: string, timeoutMs = 20_000): Promise<any> {
  let last: any;
  await eventually(async () => {
    last = (await broker.api('GET', `/v1/rotations/${rotationId}`, { token: operator })).body;
    return last.status === 'succeeded' || last.status === 'failed';
  }, timeoutMs);
  return last;
}

/** Waits until Tessera owns the secret (its first version is current). */
export async function owned(broker: TestBroker, reader: string, name: string, timeoutMs = 20_000): Promise<any> {
  let last: any;
  await eventually(async () => {
    last = await broker.api('GET', `/v1/static/${name}/creds`, { token: reader });
    return last.status === 200;
  }, timeoutMs);
  return last.body;
}

/** X-Tessera-Signature for `body`, timestamped `t` (default now). */
export function sign(key: string, body: string, t = Math.floor(Date.now() / 1000)): string {
  return `t=${t},v1=${createHmac('sha256', Buffer.from(key, 'utf8')).update(`${t}.${body}`).digest('hex')}`;
}
