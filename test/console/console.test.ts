import { Browser, BrowserContext, Page, Response } from 'playwright-core';
import { TestBroker, eventually, startBroker } from '../support/broker';
import { spiffe } from '../support/identity';
import { TestOpenIdProvider, freePort, startOpenIdProvider } from '../support/oidc-provider';
import { createPgAccount, owned } from '../support/statics';
import { pgLogin } from '../support/target';
import { launchChromium, loopbackContext, screenshot, signIn, waitForText } from './browser';

const CLIENT_ID = 'tessera-console';
const CLIENT_SECRET = 'console-client-secret-for-tests-0123';

/**
 * The operator console (DESIGN §12) in a real browser (Debian's Chromium) against a real OpenID
 * Provider (the oidc-provider package) and a broker issuing real PostgreSQL credentials.
 */
describe('operator console', () => {
  let idp: TestOpenIdProvider;
  let broker: TestBroker;
  let browser: Browser;
  let context: BrowserContext;
  let page: Page;
  let operatorToken: string;
  let reader: string;
  let url: string;
  /** Every password the broker handed out or that a static secret ever had: none may reach a console page. */
  const secrets = new Set<string>(['legacy-con-single', 'legacy-con-alt-a', 'legacy-con-alt-b']);
  /** Every console response body the browsers received, and the console JSON fetched directly. */
  const bodies: Array<{ url: string; body: string }> = [];

  /** Errors the console's own pages logged in the browser (a CSP violation would be one). */
  const pageErrors: string[] = [];
  const watch = (p: Page) => {
    p.on('response', record);
    p.on('console', (msg) => {
      // Refusals the tests cause on purpose (403, 409) are logged as failed loads; anything else counts.
      if (msg.type() === 'error' && p.url().startsWith(`${url}/ui/`) && !msg.text().startsWith('Failed to load resource: the server responded with a status of')) {
        pageErrors.push(`${p.url()}: ${msg.text()}`);
      }
    });
    p.on('pageerror', (err) => pageErrors.push(`${p.url()}: ${err.message}`));
  };

  const record = (response: Response) => {
    if (!response.url().startsWith(`${url}/ui/`) || (response.status() >= 300 && response.status() < 400)) return;
    void response.text().then((body) => bodies.push({ url: response.url(), body }), () => undefined);
  };

  async function issue(runId?: string): Promise<{ lease_id: string; credentials: { username: string; password: string } }> {
    const token = await broker.token('ns/app/worker');
    const res = await broker.api('POST', `/v1/creds/${broker.role}`, { token, body: runId ? { run_id: runId } : {} });
    expect(res.status).toBe(201);
    secrets.add(res.body.credentials.password);
    return res.body;
  }

  const leaseState = async (id: string) => (await broker.state<{ state: string }>('SELECT state FROM leases WHERE id = $1', [id]))[0]?.state;

  async function newSignedInPage(login: string): Promise<{ context: BrowserContext; page: Page }> {
    const ctx = await loopbackContext(browser);
    const p = await ctx.newPage();
    watch(p);
    await signIn(p, url, login);
    return { context: ctx, page: p };
  }

  beforeAll(async () => {
    await createPgAccount('tess_con_single', 'legacy-con-single');
    await createPgAccount('tess_con_alt_a', 'legacy-con-alt-a');
    await createPgAccount('tess_con_alt_b', 'legacy-con-alt-b');
    const port = await freePort();
    url = `http://127.0.0.1:${port}`;
    // The provider is reached as `localhost`, the broker as 127.0.0.1: two sites, as in production.
    idp = await startOpenIdProvider({ client_id: CLIENT_ID, client_secret: CLIENT_SECRET, redirect_uri: `${url}/ui/callback`, host: 'localhost' });
    broker = await startBroker('console', (doc) => {
      doc.server.port = port;
      doc.identity.issuers.push({ name: 'sso', type: 'oidc', issuer: idp.issuer });
      doc.operators.push({ issuer: 'sso', subject: 'alice' });
      doc.ui = { public_url: url, oidc: { issuer: 'sso', client_id: CLIENT_ID, client_secret: CLIENT_SECRET }, max_pending_sign_ins: 4 };
      doc.static_secrets = {
        'con-single': { connection: 'target', username: 'tess_con_single', strategy: 'single' },
        'con-alt': { connection: 'target', usernames: ['tess_con_alt_a', 'tess_con_alt_b'], strategy: 'alternating' },
      };
      doc.policies.push({ name: 'legacy', subjects: [spiffe('ns/legacy/*')], allow: [{ static: ['con-single', 'con-alt'] }] });
    });
    operatorToken = await broker.token('ops/olga');
    reader = await broker.token('ns/legacy/app');
    browser = await launchChromium();
  });

  afterAll(async () => {
    await browser?.close();
    await broker?.close();
    await idp?.stop();
  });

  test('a subject that is not an operator is refused with a 403 page and gets no session', async () => {
    const ctx = await loopbackContext(browser);
    const p = await ctx.newPage();
    watch(p);
    const callback = p.waitForResponse((r) => r.url().startsWith(`${url}/ui/callback`));
    await signIn(p, url, 'mallory');
    expect((await callback).status()).toBe(403);
    await waitForText(p.locator('main'), 'mallory (issuer sso) is not an operator');
    expect(await p.getByRole('heading', { level: 1 }).textContent()).toBe('Not an operator');
    expect((await ctx.cookies()).some((c) => c.name === 'tessera_console')).toBe(false);
    await screenshot(p, 'not-an-operator');
    await p.goto(`${url}/ui/`);
    expect(p.url()).toBe(`${url}/ui/signin`);
    await screenshot(p, 'sign-in');
    const denied = await broker.state(`SELECT actor, body FROM audit_events WHERE type = 'request.denied' AND actor = 'mallory'`);
    expect(denied.length).toBeGreaterThan(0);
    expect(JSON.parse(denied[0].body).detail).toMatchObject({ action: 'console.sign_in', issuer: 'sso' });
    await ctx.close();
  });

  test('an operator signs in through the OpenID Provider; the session cookie is HttpOnly and SameSite=Strict; pages carry a strict CSP', async () => {
    context = await loopbackContext(browser);
    page = await context.newPage();
    watch(page);
    const overview = page.waitForResponse((r) => r.url() === `${url}/ui/` && r.status() === 200);
    await signIn(page, url, 'alice');
    const response = await overview;
    await waitForText(page.getByRole('heading', { level: 1 }), 'Overview');
    const csp = response.headers()['content-security-policy'];
    expect(csp).toContain("default-src 'self'");
    expect(csp).toContain("script-src 'self'");
    expect(csp).toContain("style-src 'self'");
    expect(csp).toContain("frame-ancestors 'none'");
    expect(csp).not.toContain('unsafe-inline');
    const cookie = (await context.cookies()).find((c) => c.name === 'tessera_console')!;
    expect(cookie).toMatchObject({ httpOnly: true, sameSite: 'Strict', path: '/' });
    for (const name of ['Overview', 'Leases', 'Static secrets', 'Audit']) expect(await page.getByRole('link', { name, exact: true }).count()).toBe(1);
    expect(await page.getByRole('button', { name: 'Sign out' }).count()).toBe(1);
    const stored = await broker.state(`SELECT subject, issuer FROM console_sessions`);
    expect(stored).toEqual([{ subject: 'alice', issuer: 'sso' }]);
    // Only a hash of the session id is stored.
    expect((await broker.state(`SELECT encode(id_hash, 'escape') AS h FROM console_sessions`))[0].h).not.toContain(cookie.value);
  });

  test('leases issued through the API appear, with their ids and a Revoke button each', async () => {
    const leases = [await issue('run-list'), await issue('run-list')];
    await page.getByRole('link', { name: 'Leases', exact: true }).click();
    await waitForText(page.getByRole('heading', { level: 1 }), 'Leases');
    for (const lease of leases) {
      const row = page.getByRole('row').filter({ hasText: lease.lease_id });
      expect(await row.count()).toBe(1);
      expect(await row.getByRole('button', { name: 'Revoke', exact: true }).count()).toBe(1);
      expect(await row.textContent()).toContain(lease.credentials.username);
    }
    await page.getByRole('link', { name: 'Overview', exact: true }).click();
    await waitForText(page.locator('main'), 'Active leases by role');
    await screenshot(page, 'overview');
  });

  test('revoking a lease in the browser makes its credential stop logging in', async () => {
    const lease = await issue('run-single');
    expect(await pgLogin(lease.credentials)).toMatchObject({ ok: true });
    await page.goto(`${url}/ui/leases?run_id=run-single`);
    await page.getByRole('row').filter({ hasText: lease.lease_id }).getByRole('button', { name: 'Revoke', exact: true }).click();
    const dialog = page.getByRole('dialog');
    await waitForText(dialog, lease.lease_id);
    // Cancel has the focus: Enter alone does not revoke.
    expect(await page.evaluate('document.activeElement && document.activeElement.textContent')).toBe('Cancel');
    await screenshot(page, 'lease-revoke');
    await dialog.getByRole('button', { name: 'Revoke', exact: true }).click();
    await waitForText(page.getByRole('status'), 'The lease is revoked.');
    expect(await leaseState(lease.lease_id)).toBe('revoked');
    expect(await pgLogin(lease.credentials)).toMatchObject({ ok: false, code: '28P01' });
  });

  test('bulk revoke by run id shows the count first, then revokes exactly those leases', async () => {
    const batch = [await issue('run-bulk'), await issue('run-bulk'), await issue('run-bulk')];
    const bystander = await issue('run-other');
    await page.getByRole('link', { name: 'Leases', exact: true }).click();
    await screenshot(page, 'leases');
    const form = page.getByRole('form', { name: 'Bulk revoke' });
    await form.getByLabel('Run id').fill('run-bulk');
    await form.getByRole('button', { name: 'Bulk revoke' }).click();
    const dialog = page.getByRole('dialog');
    await waitForText(dialog, '3 leases match');
    await screenshot(page, 'bulk-revoke');
    // Nothing is revoked before the operator confirms.
    for (const lease of batch) expect(await leaseState(lease.lease_id)).toBe('active');
    await dialog.getByRole('button', { name: 'Bulk revoke', exact: true }).click();
    await waitForText(page.getByRole('status'), '3 leases are being revoked.');
    for (const lease of batch) {
      expect(await eventually(async () => (await leaseState(lease.lease_id)) === 'revoked')).toBe(true);
      expect(await pgLogin(lease.credentials)).toMatchObject({ ok: false, code: '28P01' });
    }
    expect(await leaseState(bystander.lease_id)).toBe('active');
    expect(await pgLogin(bystander.credentials)).toMatchObject({ ok: true });
    const events = await broker.state(`SELECT body FROM audit_events WHERE type = 'lease.bulk_revoke'`);
    expect(events.map((e) => JSON.parse(e.body))).toEqual([expect.objectContaining({ actor: 'alice', detail: expect.objectContaining({ matched: 3, filter: expect.objectContaining({ run_id: 'run-bulk' }) }) })]);
  });

  test('a bulk revoke confirmed for a count that no longer matches revokes nothing and shows the new count', async () => {
    await issue('run-race');
    await page.goto(`${url}/ui/leases`);
    const form = page.getByRole('form', { name: 'Bulk revoke' });
    await form.getByLabel('Run id').fill('run-race');
    await form.getByRole('button', { name: 'Bulk revoke' }).click();
    await waitForText(page.getByRole('dialog'), '1 lease matches');
    const late = await issue('run-race');
    await page.getByRole('dialog').getByRole('button', { name: 'Bulk revoke', exact: true }).click();
    await waitForText(page.getByRole('dialog'), '2 leases match');
    expect(await leaseState(late.lease_id)).toBe('active');
    await page.getByRole('dialog').getByRole('link', { name: 'Cancel' }).click();
    await waitForText(page.getByRole('heading', { level: 1 }), 'Leases');
    expect(await page.getByRole('dialog').count()).toBe(0);
    expect(await leaseState(late.lease_id)).toBe('active');
  });

  test('emergency rotate of a connection shows each secret\'s steps until they succeed, and the exposed passwords stop working', async () => {
    const before = { single: await owned(broker, reader, 'con-single'), alt: await owned(broker, reader, 'con-alt') };
    for (const c of Object.values(before)) secrets.add(c.password);
    await page.getByRole('link', { name: 'Static secrets', exact: true }).click();
    await waitForText(page.getByRole('row').filter({ hasText: 'con-alt' }).first(), 'alternating');
    expect(await page.getByRole('row').filter({ hasText: 'con-single' }).first().getByRole('button', { name: 'Rotate now' }).count()).toBe(1);
    await screenshot(page, 'static-secrets');
    await page.getByRole('row').filter({ hasText: 'con-single, con-alt' }).getByRole('button', { name: 'Emergency rotate' }).click();
    const dialog = page.getByRole('dialog');
    await waitForText(dialog, 'con-single');
    await dialog.getByRole('button', { name: 'Emergency rotate', exact: true }).click();
    const table = page.getByRole('table', { name: 'Rotations' });
    for (const name of ['con-single', 'con-alt']) {
      const row = table.getByRole('row').filter({ has: page.getByRole('rowheader', { name, exact: true }) });
      await waitForText(row.locator('[data-field="status"]'), 'succeeded');
      await waitForText(row.locator('[data-field="steps"]'), 'verified');
    }
    await waitForText(page.locator('#rotations-progress'), 'All rotations have ended.');
    await screenshot(page, 'rotations');
    for (const [name, old] of Object.entries(before)) {
      expect(await pgLogin({ username: old.username, password: old.password })).toMatchObject({ ok: false });
      const now = await owned(broker, reader, `con-${name}`);
      secrets.add(now.password);
      expect(now.version).toBeGreaterThan(old.version);
      expect(await pgLogin(now)).toMatchObject({ ok: true });
    }
    // The console's JSON for the live steps, fetched as the page does: status and steps, no secret.
    const ids = new URL(page.url()).searchParams.getAll('id');
    const cookie = (await context.cookies()).find((c) => c.name === 'tessera_console')!;
    const res = await fetch(`${url}/ui/api/rotations?${ids.map((i) => `id=${i}`).join('&')}`, { headers: { cookie: `tessera_console=${cookie.value}` } });
    const text = await res.text();
    bodies.push({ url: res.url, body: text });
    expect(JSON.parse(text)).toMatchObject({ done: true, items: [expect.objectContaining({ status: 'succeeded' }), expect.objectContaining({ status: 'succeeded' })] });
  });

  test('Rotate now rotates one secret and follows it', async () => {
    await page.getByRole('link', { name: 'Static secrets', exact: true }).click();
    await page.getByRole('row').filter({ hasText: 'con-single' }).first().getByRole('button', { name: 'Rotate now' }).click();
    await waitForText(page.getByRole('table', { name: 'Rotations' }).locator('[data-field="status"]'), 'succeeded');
    secrets.add((await owned(broker, reader, 'con-single')).password);

    // The page follows a rotation while it runs, without reloading: put this one back to running,
    // open its page, then let it finish.
    const id = new URL(page.url()).searchParams.get('id')!;
    await broker.state(`UPDATE rotations SET status = 'running', finished_at = NULL WHERE id = $1`, [id]);
    await page.goto(`${url}/ui/rotations?id=${id}`);
    await waitForText(page.locator('#rotations-progress'), 'Rotations are running');
    await page.evaluate('window.stayed = true');
    const step = JSON.stringify([{ step: 'finished-by-test', at: new Date().toISOString() }]);
    await broker.state(`UPDATE rotations SET status = 'succeeded', finished_at = now(), steps = steps || $2::jsonb WHERE id = $1`, [id, step]);
    const table = page.getByRole('table', { name: 'Rotations' });
    await waitForText(table.locator('[data-field="steps"]'), 'finished-by-test');
    await waitForText(table.locator('[data-field="status"]'), 'succeeded');
    await waitForText(page.locator('#rotations-progress'), 'All rotations have ended.');
    expect(await page.evaluate('window.stayed')).toBe(true);
    await page.goto(`${url}/ui/static/con-alt`);
    await waitForText(page.locator('main'), 'Rotation history');
    await screenshot(page, 'static-secret');
  });

  test('the audit page lists the actions newest first, attributed to the operator, and Verify chain passes', async () => {
    await page.getByRole('link', { name: 'Audit', exact: true }).click();
    await page.getByLabel('Subject').fill('alice');
    await page.getByRole('button', { name: 'Filter' }).click();
    const rows = page.locator('table.audit tbody tr');
    await waitForText(rows.first(), 'alice');
    const texts = await rows.allTextContents();
    const types = texts.map((t) => /(lease|static|console|request)\.[a-z_]+/.exec(t)?.[0]);
    for (const type of ['console.signed_in', 'lease.revoked', 'lease.bulk_revoke', 'static.rotation_requested']) expect(types).toContain(type);
    for (const t of texts) expect(t).toContain('alice');
    const ids = texts.map((t) => Number(/^\s*(\d+)/.exec(t)![1]));
    expect(ids).toEqual([...ids].sort((a, b) => b - a));
    await page.getByRole('button', { name: 'Verify chain' }).click();
    await waitForText(page.getByRole('status'), 'Chain verified');
    await screenshot(page, 'audit');
    // The filter stays; then by type.
    for (const t of await rows.allTextContents()) expect(t).toContain('alice');
    await page.getByLabel('Type').selectOption('lease.bulk_revoke');
    await page.getByRole('button', { name: 'Filter' }).click();
    await waitForText(rows.first(), 'lease.bulk_revoke');
    expect(await rows.count()).toBe(1);
    expect(await rows.first().textContent()).toContain('run-bulk');
  });

  test('a state-changing request without the CSRF token, or from another origin, is refused', async () => {
    const lease = await issue('run-csrf');
    const cookie = `tessera_console=${(await context.cookies()).find((c) => c.name === 'tessera_console')!.value}`;
    const html = await (await fetch(`${url}/ui/leases/${lease.lease_id}`, { headers: { cookie } })).text();
    const csrf = /name="_csrf" value="([^"]+)"/.exec(html)![1];
    const post = (body: string, headers: Record<string, string> = {}) =>
      fetch(`${url}/ui/leases/${lease.lease_id}/revoke`, { method: 'POST', redirect: 'manual', headers: { cookie, 'content-type': 'application/x-www-form-urlencoded', origin: url, ...headers }, body });
    expect((await post('')).status).toBe(403);
    expect((await post('_csrf=forged-token-forged-token-forged-token-00')).status).toBe(403);
    expect((await post(`_csrf=${csrf}`, { origin: 'http://evil.example' })).status).toBe(403);
    // The refusal names the operator whose session the request carried (nothing was done as them).
    const refused = await broker.state(`SELECT actor, body::jsonb->'detail' AS detail FROM audit_events WHERE type = 'request.denied' AND body::jsonb->'detail'->>'reason' LIKE '%evil.example%'`);
    expect(refused).toEqual([{ actor: 'alice', detail: expect.objectContaining({ issuer: 'sso', reason: expect.stringContaining('cross-site request') }) }]);
    expect((await post(`_csrf=${csrf}`, { 'sec-fetch-site': 'cross-site' })).status).toBe(403);
    expect((await post(JSON.stringify({ _csrf: csrf }), { 'content-type': 'application/json' })).status).toBe(400);
    expect(await leaseState(lease.lease_id)).toBe('active');
    // The same request with the token, from the console's origin, goes through.
    expect((await post(`_csrf=${csrf}`)).status).toBe(303);
    expect(await leaseState(lease.lease_id)).toBe('revoked');
  });

  test('a forged or stale session cookie is refused; the API does not take the cookie, nor the console a bearer token', async () => {
    const pageFor = (cookie?: string, headers: Record<string, string> = {}) =>
      fetch(`${url}/ui/leases`, { redirect: 'manual', headers: { ...(cookie && { cookie }), ...headers } });
    // A callback that no sign-in of this browser started is refused, whatever it carries.
    const stray = await fetch(`${url}/ui/callback?code=x&state=y`, { redirect: 'manual' });
    expect(stray.status).toBe(401);
    expect(stray.headers.get('set-cookie') ?? '').not.toMatch(/tessera_console=[^;]/);
    const forgedLogin = await fetch(`${url}/ui/callback?code=x&state=y`, { redirect: 'manual', headers: { cookie: `tessera_console_login=${'B'.repeat(43)}` } });
    expect(forgedLogin.status).toBe(401);
    const forged = `tessera_console=${'A'.repeat(43)}`;
    expect((await pageFor(forged)).headers.get('location')).toBe('/ui/signin');
    expect((await fetch(`${url}/ui/api/rotations?id=rot_AAAAAAAAAAAAAAAA`, { headers: { cookie: forged } })).status).toBe(401);
    expect((await pageFor(undefined, { authorization: `Bearer ${operatorToken}` })).status).toBe(303);
    const live = `tessera_console=${(await context.cookies()).find((c) => c.name === 'tessera_console')!.value}`;
    expect((await pageFor(live)).status).toBe(200);
    expect((await broker.api('GET', '/v1/leases', { headers: { cookie: live } })).status).toBe(401);

    // A second session, made stale in the database: refused like a forged one.
    const second = await newSignedInPage('alice');
    await waitForText(second.page.getByRole('heading', { level: 1 }), 'Overview');
    const stale = `tessera_console=${(await second.context.cookies()).find((c) => c.name === 'tessera_console')!.value}`;
    expect((await pageFor(stale)).status).toBe(200);
    await broker.state(`UPDATE console_sessions SET expires_at = now() - interval '1 second' WHERE created_at = (SELECT max(created_at) FROM console_sessions)`);
    expect((await pageFor(stale)).headers.get('location')).toBe('/ui/signin');
    expect((await pageFor(live)).status).toBe(200);
    await second.context.close();
  });

  test('a confirmation dialog opens only for a navigation from the console itself, never from another site\'s link', async () => {
    const lease = await issue('run-link');
    const cookie = `tessera_console=${(await context.cookies()).find((c) => c.name === 'tessera_console')!.value}`;
    const get = async (path: string, site?: string) => {
      const res = await fetch(`${url}${path}`, { headers: { cookie, ...(site && { 'sec-fetch-site': site }) } });
      expect(res.status).toBe(200);
      return res.text();
    };
    for (const path of [`/ui/leases/${lease.lease_id}?confirm=revoke`, '/ui/static?emergency=target', '/ui/leases/bulk-revoke?run_id=run-link']) {
      // A link on another port of this host (same-site), another site, or the address bar: no dialog.
      for (const site of ['same-site', 'cross-site', 'none']) expect(await get(path, site)).not.toContain('<dialog');
      expect(await get(path, 'same-origin')).toContain('<dialog');
      expect(await get(path)).toContain('<dialog');
    }
    expect(await get('/ui/leases/bulk-revoke?run_id=run-link', 'same-site')).toContain(lease.lease_id);
    expect(await leaseState(lease.lease_id)).toBe('active');
  });

  test('a cookie of the same name set at Path=/ui by another service on the host does not sign the operator out', async () => {
    await context.addCookies([{ name: 'tessera_console', value: 'junk', domain: '127.0.0.1', path: '/ui', httpOnly: true, sameSite: 'Lax' }]);
    const sent = page.waitForRequest((r) => r.url() === `${url}/ui/leases`);
    await page.goto(`${url}/ui/leases`);
    // The browser sends the longer path's cookie first.
    expect((await (await sent).allHeaders()).cookie).toMatch(/^tessera_console=junk; tessera_console=/);
    await waitForText(page.getByRole('heading', { level: 1 }), 'Leases');
    expect(page.url()).toBe(`${url}/ui/leases`);
    await context.clearCookies({ name: 'tessera_console', path: '/ui' });
  });

  test('pending sign-ins are bounded by dropping the oldest (a new one is never refused), starts are limited per address, the callback is not', async () => {
    await broker.state('DELETE FROM console_logins');
    const login = () => fetch(`${url}/ui/login`, { redirect: 'manual' });
    const statuses: number[] = [];
    for (let i = 0; i < 4; i++) statuses.push((await login()).status);
    expect(statuses).toEqual([303, 303, 303, 303]);
    const [oldest] = await broker.state<{ id_hash: Buffer }>('SELECT id_hash FROM console_logins ORDER BY created_at LIMIT 1');
    expect((await login()).status).toBe(303);
    const kept = await broker.state<{ id_hash: Buffer }>('SELECT id_hash FROM console_logins');
    expect(kept).toHaveLength(4);
    expect(kept.some((r) => r.id_hash.equals(oldest.id_hash))).toBe(false);
    // Expired ones are deleted when a sign-in starts, which then goes through.
    await broker.state(`UPDATE console_logins SET expires_at = now() - interval '1 second'`);
    expect((await login()).status).toBe(303);
    expect((await broker.state('SELECT count(*)::int AS n FROM console_logins'))[0].n).toBe(1);
    await broker.state('DELETE FROM console_logins');
    // Spend this address's bucket of sign-in starts.
    let limited = false;
    for (let i = 0; i < 20 && !limited; i++) {
      const res = await login();
      limited = res.status === 429;
      await broker.state('DELETE FROM console_logins');
    }
    expect(limited).toBe(true);
    // The callback still answers (401: no sign-in of this browser), not 429.
    for (let i = 0; i < 5; i++) expect((await fetch(`${url}/ui/callback?code=x&state=y`, { redirect: 'manual' })).status).toBe(401);
    await broker.state('DELETE FROM console_logins');
  });

  test('Sign out ends the session on the server', async () => {
    const cookie = `tessera_console=${(await context.cookies()).find((c) => c.name === 'tessera_console')!.value}`;
    const sessions = (await broker.state('SELECT count(*)::int AS n FROM console_sessions WHERE expires_at > now()'))[0].n;
    await page.getByRole('button', { name: 'Sign out' }).click();
    await waitForText(page.getByRole('heading', { level: 1 }), 'Signed out');
    expect((await broker.state('SELECT count(*)::int AS n FROM console_sessions WHERE expires_at > now()'))[0].n).toBe(sessions - 1);
    const res = await fetch(`${url}/ui/`, { redirect: 'manual', headers: { cookie } });
    expect(res.status).toBe(303);
    expect(res.headers.get('location')).toBe('/ui/signin');
    expect((await broker.state(`SELECT count(*)::int AS n FROM audit_events WHERE type = 'console.signed_out' AND actor = 'alice'`))[0].n).toBe(1);
  });

  test('no plaintext secret appears in any console page or console API response', async () => {
    await context.close();
    expect(secrets.size).toBeGreaterThan(10);
    expect(bodies.length).toBeGreaterThan(10);
    for (const { url: where, body } of bodies) {
      for (const secret of secrets) {
        if (body.includes(secret)) throw new Error(`a secret appears in ${where}`);
      }
    }
    for (const { body } of bodies) expect(body).not.toContain(CLIENT_SECRET);
    // And the pages ran under their CSP without a violation or a script error.
    expect(pageErrors).toEqual([]);
  });
});
