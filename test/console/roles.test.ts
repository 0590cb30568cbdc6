import { IAMClient, ListRolesCommand } from '@aws-sdk/client-iam';
import { Browser, BrowserContext, Page } from 'playwright-core';
import { TestBroker, startBroker } from '../support/broker';
import { IamTestServer } from '../support/iam-server';
import { TestOpenIdProvider, freePort, startOpenIdProvider } from '../support/oidc-provider';
import { launchChromium, loopbackContext, screenshot, signIn, waitForText } from './browser';

const CLIENT_ID = 'tessera-console';
const CLIENT_SECRET = 'console-client-secret-for-tests-0123';

/** "Revoke sessions" of an STS role (DESIGN §14) from the console, against the IAM test server. */
describe('operator console: roles with STS sessions', () => {
  const iam = new IamTestServer();
  let idp: TestOpenIdProvider;
  let broker: TestBroker;
  let browser: Browser;
  let context: BrowserContext;
  let page: Page;
  let workload: string;
  let endpoint = '';
  let url = '';

  /** A signed call that the deny policy refuses (as in test/integration/aws-sts.test.ts). */
  const listRoles = async (c: Record<string, string>) => {
    const client = new IAMClient({ region: 'us-east-1', endpoint, maxAttempts: 1, credentials: { accessKeyId: c.access_key_id, secretAccessKey: c.secret_access_key, sessionToken: c.session_token } });
    try {
      await client.send(new ListRolesCommand({}));
      return 'ok';
    } catch (err) {
      return (err as Error).name;
    } finally {
      client.destroy();
    }
  };
  const issue = async (role: string) => {
    const res = await broker.api('POST', `/v1/creds/${role}`, { token: workload, body: {} });
    expect(res.status).toBe(201);
    return res.body.credentials as Record<string, string>;
  };

  beforeAll(async () => {
    endpoint = await iam.start();
    const deployArn = iam.createRole('deploy', { externalId: 'tessera-test' });
    const port = await freePort();
    url = `http://127.0.0.1:${port}`;
    idp = await startOpenIdProvider({ client_id: CLIENT_ID, client_secret: CLIENT_SECRET, redirect_uri: `${url}/ui/callback`, host: 'localhost' });
    broker = await startBroker('consolests', (doc) => {
      doc.server.port = port;
      doc.identity.issuers.push({ name: 'sso', type: 'oidc', issuer: idp.issuer });
      doc.operators.push({ issuer: 'sso', subject: 'alice' });
      doc.ui = { public_url: url, oidc: { issuer: 'sso', client_id: CLIENT_ID, client_secret: CLIENT_SECRET } };
      doc.connections.aws = { plugin: 'aws-iam', region: 'us-east-1', endpoint, access_key_id: 'AKIDTESSERAADMIN0000', secret_access_key: 'admin-secret', max_attempts: 1 };
      doc.roles['deploy-sts'] = { connection: 'aws', credential_type: 'assumed_role', role_arns: [deployArn], external_id: 'tessera-test', default_ttl: '15m', max_ttl: '1h' };
      doc.roles['deploy-foreign'] = { connection: 'aws', credential_type: 'assumed_role', role_arns: ['arn:aws:iam::210987654321:role/deploy'], default_ttl: '15m', max_ttl: '1h' };
      doc.policies[0].allow.push({ creds: ['deploy-sts'] });
    });
    workload = await broker.token('ns/app/api');
    browser = await launchChromium();
    context = await loopbackContext(browser);
    page = await context.newPage();
    await signIn(page, url, 'alice');
    await waitForText(page.getByRole('heading', { level: 1 }), 'Overview');
  });

  afterAll(async () => {
    await browser?.close();
    await broker?.close();
    await idp?.stop();
    await iam.stop();
  });

  test('Revoke sessions, confirmed in the browser, makes a credential issued before fail its next signed call; audited with the operator', async () => {
    const before = await issue('deploy-sts');
    expect(await listRoles(before)).toBe('ok');
    for (const name of ['Overview', 'Leases', 'Static secrets', 'Audit']) expect(await page.getByRole('link', { name, exact: true }).count()).toBe(1);
    await page.getByRole('link', { name: 'Roles', exact: true }).click();
    await waitForText(page.getByRole('heading', { level: 1 }), 'Roles');
    // Only assumed_role roles are listed (the broker's own postgres role is not).
    expect(await page.getByRole('row').filter({ hasText: broker.role }).count()).toBe(0);
    const row = page.getByRole('row').filter({ has: page.getByRole('rowheader', { name: 'deploy-sts', exact: true }) });
    await row.getByRole('button', { name: 'Revoke sessions', exact: true }).click();
    const dialog = page.getByRole('dialog');
    await waitForText(dialog, 'deploy-sts');
    // The focus is on Cancel: a stray Enter does not confirm.
    expect(await page.evaluate('document.activeElement && document.activeElement.textContent')).toBe('Cancel');
    await screenshot(page, 'revoke-sessions');
    expect(await listRoles(before)).toBe('ok');
    await dialog.getByRole('button', { name: 'Revoke sessions', exact: true }).click();
    const shown = await waitForText(page.getByRole('status'), 'no longer work');
    const [event] = await broker.state<{ actor: string; detail: { role: string; revoked_before: string; outcome: string } }>(
      `SELECT actor, body::jsonb->'detail' AS detail FROM audit_events WHERE type = 'role.sessions_revoked'`,
    );
    expect(event).toMatchObject({ actor: 'alice', detail: { role: 'deploy-sts', outcome: 'revoked' } });
    expect(shown).toContain(event.detail.revoked_before);
    expect(await listRoles(before)).toBe('AccessDenied');
    expect(await listRoles(await issue('deploy-sts'))).toBe('ok');
    // The result came by a redirect: reloading it shows it again and revokes nothing more.
    expect(new URL(page.url()).pathname).toBe('/ui/roles');
    await page.reload();
    await waitForText(page.getByRole('status'), 'no longer work');
    expect(await broker.state(`SELECT 1 FROM audit_events WHERE type = 'role.sessions_revoked'`)).toHaveLength(1);
  });

  test('a refusal of the target is shown with its message and changes nothing', async () => {
    const was = JSON.stringify(iam.rolePolicy('deploy', 'AWSRevokeOlderSessions'));
    await page.getByRole('row').filter({ has: page.getByRole('rowheader', { name: 'deploy-foreign', exact: true }) }).getByRole('button', { name: 'Revoke sessions', exact: true }).click();
    const response = page.waitForResponse((r) => r.url().endsWith('/ui/roles/deploy-foreign/revoke-sessions'));
    await page.getByRole('dialog').getByRole('button', { name: 'Revoke sessions', exact: true }).click();
    expect((await response).status()).toBe(409);
    const shown = await waitForText(page.getByRole('status'), 'role_not_in_account');
    expect(shown).toContain("in another account than the connection's credentials");
    expect(JSON.stringify(iam.rolePolicy('deploy', 'AWSRevokeOlderSessions'))).toBe(was);
  });

  test('a dialog is not opened by a link from another site; without the CSRF token nothing is revoked', async () => {
    const res = await fetch(`${url}/ui/roles?confirm=deploy-sts`, { headers: { cookie: await sessionCookie(), 'sec-fetch-site': 'same-site' } });
    expect(res.status).toBe(200);
    const body = await res.text();
    expect(body).toContain('Revoke sessions');
    expect(body).not.toContain('<dialog');
    const events = (await broker.state(`SELECT 1 FROM audit_events WHERE type = 'role.sessions_revoked'`)).length;
    const post = await fetch(`${url}/ui/roles/deploy-sts/revoke-sessions`, { method: 'POST', redirect: 'manual', headers: { cookie: await sessionCookie(), origin: url, 'content-type': 'application/x-www-form-urlencoded' }, body: '' });
    expect(post.status).toBe(403);
    expect((await broker.state(`SELECT 1 FROM audit_events WHERE type = 'role.sessions_revoked'`)).length).toBe(events);
  });

  const sessionCookie = async () => `tessera_console=${(await context.cookies()).find((c) => c.name === 'tessera_console')!.value}`;
});
