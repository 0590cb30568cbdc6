import { LEASE_STATES, LeaseView } from '../../leases/lease.model';
import { Html, html, segment, uiUrl } from '../html';
import { PageContext, confirmDialog, csrfField, dash, layout, notice, state, time } from './components';

export interface LeaseFilterInput {
  role?: string;
  state?: string;
  owner?: string;
  run_id?: string;
}

/** What a bulk revoke matches by: any of these, at least one. */
export interface BulkFilterInput {
  role?: string;
  connection?: string;
  owner?: string;
  /** Required with owner: a subject means something only with its issuer. */
  owner_issuer?: string;
  run_id?: string;
}

export interface LeasesPageData {
  filter: LeaseFilterInput;
  items: LeaseView[];
  nextCursor: string | null;
  roles: string[];
  connections: string[];
  /** Issuer names an owner can be qualified by. */
  issuers: string[];
  notice?: Html;
  /** The bulk revoke being confirmed: its filter and how many leases it matches now. */
  bulk?: { filter: BulkFilterInput; matched: number };
}

const REVOCABLE = new Set(['pending', 'active', 'revoking', 'revoke_failed']);

function describeBulk(f: BulkFilterInput): Html {
  const parts: Html[] = [];
  if (f.role) parts.push(html`role <code>${f.role}</code>`);
  if (f.connection) parts.push(html`connection <code>${f.connection}</code>`);
  if (f.owner) parts.push(html`owner <code>${f.owner}</code> (issuer ${f.owner_issuer})`);
  if (f.run_id) parts.push(html`run id <code>${f.run_id}</code>`);
  return html`${parts.map((p, i) => html`${i ? ' and ' : ''}${p}`)}`;
}

function select(name: string, label: string, options: readonly string[], selected: string | undefined): Html {
  return html`<label>${label}<select name="${name}"><option value="">any</option>${options.map(
    (o) => html`<option${o === selected ? html` selected` : ''}>${o}</option>`,
  )}</select></label>`;
}

function bulkDialog(ctx: PageContext, bulk: { filter: BulkFilterInput; matched: number }): Html {
  const f = bulk.filter;
  const fields = html`${csrfField(ctx.session!)}
    ${Object.entries(f).map(([k, v]) => (v ? html`<input type="hidden" name="${k}" value="${v}">` : ''))}
    <input type="hidden" name="expected" value="${bulk.matched}">`;
  const body = bulk.matched
    ? html`<p><strong class="count">${bulk.matched} ${bulk.matched === 1 ? 'lease matches' : 'leases match'}</strong> ${describeBulk(f)}.</p>
      <p>Each is revoked: its account is removed from the target and its credential stops working.</p>`
    : html`<p><strong class="count">0 leases match</strong> ${describeBulk(f)}: there is nothing to revoke.</p>`;
  if (!bulk.matched) {
    return html`<dialog open data-modal data-cancel="/ui/leases" aria-labelledby="bulk-title"><h2 id="bulk-title">Bulk revoke</h2>${body}
      <div class="dialog-actions"><a class="button quiet" href="/ui/leases">Close</a></div></dialog>`;
  }
  return confirmDialog({ id: 'bulk', title: 'Bulk revoke', body, action: '/ui/leases/bulk-revoke', confirm: 'Bulk revoke', fields, cancelHref: '/ui/leases', danger: true });
}

export function leasesPage(ctx: PageContext, d: LeasesPageData): string {
  const f = d.filter;
  return layout(
    'Leases',
    ctx,
    html`${d.notice}
<div class="toolbar">
<form method="get" action="/ui/leases" class="filters" aria-label="Filter leases">
  <span class="form-title">Filter</span>
  ${select('role', 'Role', d.roles, f.role)}
  ${select('state', 'State', LEASE_STATES, f.state)}
  <label>Owner<input name="owner" value="${f.owner ?? ''}" autocomplete="off"></label>
  <label>Run id<input name="run_id" value="${f.run_id ?? ''}" autocomplete="off"></label>
  <button type="submit">Filter</button>
  <a href="/ui/leases" class="button quiet">Clear</a>
</form>
<form method="get" action="/ui/leases/bulk-revoke" class="filters bulk" aria-label="Bulk revoke">
  <span class="form-title">Revoke every lease of</span>
  ${select('role', 'Role', d.roles, undefined)}
  ${select('connection', 'Connection', d.connections, undefined)}
  <label>Owner<input name="owner" autocomplete="off"></label>
  ${select('owner_issuer', "Owner's issuer", d.issuers, undefined)}
  <label>Run id<input name="run_id" autocomplete="off"></label>
  <button type="submit" class="danger">Bulk revoke</button>
</form>
</div>
<table class="leases">
  <thead><tr><th scope="col">Lease</th><th scope="col">Role</th><th scope="col">Account</th><th scope="col">Owner</th><th scope="col">Run id</th><th scope="col">State</th><th scope="col">Expires</th><th scope="col"><span class="sr-only">Actions</span></th></tr></thead>
  <tbody>
  ${d.items.map(
    (l) => html`<tr data-lease-id="${l.lease_id}">
    <td class="nowrap"><a class="mono" href="${uiUrl(`/ui/leases/${segment(l.lease_id)}`)}">${l.lease_id}</a></td>
    <td class="nowrap">${l.role}<br><small class="muted">${l.plugin}</small></td>
    <td class="mono nowrap">${l.account}</td>
    <td class="wrap">${l.owner}<br><small class="muted">${l.owner_issuer}</small></td>
    <td class="nowrap">${dash(l.run_id)}</td>
    <td>${state(l.state)}</td>
    <td class="nowrap">${time(l.expires_at)}</td>
    <td><form method="get" action="${uiUrl(`/ui/leases/${segment(l.lease_id)}`)}"><input type="hidden" name="confirm" value="revoke"><button type="submit" class="small danger"${REVOCABLE.has(l.state) ? '' : html` disabled`}>Revoke</button></form></td>
  </tr>`,
  )}
  </tbody>
</table>
${d.items.length ? '' : html`<p class="muted">No leases match.</p>`}
${d.nextCursor && html`<p><a href="${uiUrl('/ui/leases', { ...f, cursor: d.nextCursor })}">Next page</a></p>`}
${d.bulk && bulkDialog(ctx, d.bulk)}`,
  );
}

export function leaseDetailPage(ctx: PageContext, l: LeaseView, opts: { confirmRevoke: boolean; notice?: Html }): string {
  const self = uiUrl(`/ui/leases/${segment(l.lease_id)}`);
  const row = (label: string, value: Html | string | null) => html`<dt>${label}</dt><dd>${dash(value)}</dd>`;
  return layout(
    'Lease',
    { ...ctx, section: 'leases' },
    html`${opts.notice}
<section class="panel">
  <dl class="facts">
    ${row('Lease id', html`<span class="mono">${l.lease_id}</span>`)}
    ${row('State', state(l.state))}
    ${row('Role', l.role)}
    ${row('Plugin', l.plugin)}
    ${row('Account', html`<span class="mono">${l.account}</span>`)}
    ${row('Owner', l.owner)}
    ${row("Owner's issuer", l.owner_issuer)}
    ${row('Run id', l.run_id)}
    ${row('Created', time(l.created_at))}
    ${row('Expires', time(l.expires_at))}
    ${row('Max expiry', time(l.max_expires_at))}
    ${row('Revoked', l.revoked_at ? time(l.revoked_at) : null)}
    ${row('Last error', l.last_error)}
    ${row('Error detail', l.last_error_detail)}
  </dl>
  <form method="get" action="${self}"><input type="hidden" name="confirm" value="revoke"><button type="submit" class="danger"${REVOCABLE.has(l.state) ? '' : html` disabled`}>Revoke</button></form>
  <p><a href="/ui/leases">Back to the list</a></p>
</section>
${opts.confirmRevoke &&
confirmDialog({
  id: 'revoke',
  title: 'Revoke this lease?',
  body: html`<p>Lease <code>${l.lease_id}</code> (role ${l.role}, account <code>${l.account}</code>) is revoked now: its credential stops working.</p>`,
  action: uiUrl(`/ui/leases/${segment(l.lease_id)}/revoke`),
  confirm: 'Revoke',
  fields: csrfField(ctx.session!),
  cancelHref: self,
  danger: true,
})}`,
  );
}

export const revokedNotice = (state: string) =>
  state === 'revoked' ? notice('The lease is revoked.') : notice(`The target could not be reached: the lease is ${state} and workers keep retrying.`, 'warn');
