import type { Request } from 'express';
import { mayConfirm } from '../../src/console/console-http';
import { bulkBody, bulkQuery, parseForm } from '../../src/console/console-input';
import { confirmDialog } from '../../src/console/pages/components';
import { leaseDetailPage, leasesPage } from '../../src/console/pages/leases.page';
import { LeaseView } from '../../src/leases/lease.model';
import { html } from '../../src/console/html';

const request = (headers: Record<string, string>) => ({ headers }) as unknown as Request;
const session = { identity: { subject: 'alice', issuer: 'sso', operator: true, claims: {} }, displayName: null, csrfToken: 'csrf', expiresAt: new Date() };
const lease: LeaseView = {
  lease_id: 'lse_0123456789abcdef',
  role: 'app',
  plugin: 'postgres',
  account: 'tess_x',
  owner: 'spiffe://test.example/ns/app/api',
  owner_issuer: 'spire',
  run_id: null,
  state: 'active',
  created_at: '2026-01-01T00:00:00.000Z',
  expires_at: '2026-01-01T01:00:00.000Z',
  max_expires_at: '2026-01-01T02:00:00.000Z',
  revoked_at: null,
  last_error: null,
  last_error_detail: null,
};

describe('confirmation dialogs', () => {
  it('open only for a navigation from the console itself, or from a client that does not say', () => {
    expect(mayConfirm(request({}))).toBe(true);
    expect(mayConfirm(request({ 'sec-fetch-site': 'same-origin' }))).toBe(true);
    expect(mayConfirm(request({ 'sec-fetch-site': 'same-site' }))).toBe(false);
    expect(mayConfirm(request({ 'sec-fetch-site': 'cross-site' }))).toBe(false);
    expect(mayConfirm(request({ 'sec-fetch-site': 'none' }))).toBe(false);
  });

  it('focus Cancel, never the destructive button', () => {
    const text = confirmDialog({ id: 'x', title: 'T', body: html`<p>b</p>`, action: '/ui/x', confirm: 'Revoke', fields: '', cancelHref: '/ui/', danger: true }).text;
    expect(text).toMatch(/<a [^>]*autofocus[^>]*>Cancel<\/a>/);
    expect(text).toMatch(/<button type="submit" class="danger">Revoke<\/button>/);
    expect(text.match(/autofocus/g)).toHaveLength(1);
  });
});

describe('bulk revoke by owner', () => {
  it('takes the owner only with its issuer', () => {
    expect(parseForm(bulkQuery, { owner: 'bob', owner_issuer: 'sso' })).toMatchObject({ owner: 'bob', owner_issuer: 'sso' });
    expect(() => parseForm(bulkQuery, { owner: 'bob' })).toThrow("owner_issuer: give the owner together with the owner's issuer");
    expect(() => parseForm(bulkQuery, { run_id: 'r', owner_issuer: 'sso' })).toThrow('owner_issuer');
    expect(() => parseForm(bulkBody, { _csrf: 'c', owner: 'bob', expected: '1' })).toThrow('owner_issuer');
    expect(parseForm(bulkBody, { _csrf: 'c', owner: 'bob', owner_issuer: 'sso', expected: '1' })).toMatchObject({ owner_issuer: 'sso', expected: 1 });
  });

  it('the lease list and detail show the owner\'s issuer; the bulk form offers the issuers; the dialog carries the issuer', () => {
    const ctx = { session, section: 'leases' as const };
    const list = leasesPage(ctx, { filter: {}, items: [lease], nextCursor: null, roles: ['app'], connections: ['db'], issuers: ['spire', 'sso'] });
    expect(list).toContain('<small class="muted">spire</small>');
    expect(list).toMatch(/<select name="owner_issuer"><option value="">any<\/option><option>spire<\/option><option>sso<\/option><\/select>/);
    expect(leaseDetailPage(ctx, lease, { confirmRevoke: false })).toMatch(/<dt>Owner&#39;s issuer<\/dt><dd>spire<\/dd>/);
    const bulk = leasesPage(ctx, { filter: {}, items: [lease], nextCursor: null, roles: [], connections: [], issuers: ['spire'], bulk: { filter: { owner: lease.owner, owner_issuer: 'spire' }, matched: 1 } });
    expect(bulk).toContain('<input type="hidden" name="owner_issuer" value="spire">');
    expect(bulk).toContain('(issuer spire)');
  });
});
