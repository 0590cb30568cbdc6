import { Html, html, segment, uiUrl } from '../html';
import { PageContext, confirmDialog, csrfField, dash, layout, state, time } from './components';

export interface StaticListItem {
  name: string;
  connection: string;
  strategy: string | null;
  status: string;
  version: number | null;
  rotated_at: string | null;
  next_rotation_at: string | null;
}

export interface ConnectionItem {
  name: string;
  plugin: string;
  secrets: string[];
}

export interface RotationView {
  rotation_id: string;
  name: string;
  version: number;
  trigger: string;
  reason: string | null;
  status: string;
  steps: unknown;
  error?: string;
  created_at: string;
  finished_at: string | null;
}

function rotateNowForm(ctx: PageContext, name: string): Html {
  return html`<form method="post" action="${uiUrl(`/ui/static/${segment(name)}/rotate`)}">${csrfField(ctx.session!)}<button type="submit" class="small">Rotate now</button></form>`;
}

export function staticsPage(ctx: PageContext, d: { items: StaticListItem[]; connections: ConnectionItem[]; emergency?: ConnectionItem }): string {
  return layout(
    'Static secrets',
    ctx,
    html`<section class="panel">
<table class="statics">
  <thead><tr><th scope="col">Name</th><th scope="col">Connection</th><th scope="col">Strategy</th><th scope="col" class="num">Version</th><th scope="col">Last rotation</th><th scope="col">Next rotation</th><th scope="col">State</th><th scope="col"><span class="sr-only">Actions</span></th></tr></thead>
  <tbody>
  ${d.items.map(
    (s) => html`<tr data-secret="${s.name}">
    <td><a href="${uiUrl(`/ui/static/${segment(s.name)}`)}">${s.name}</a></td>
    <td>${s.connection}</td>
    <td>${dash(s.strategy)}</td>
    <td class="num">${dash(s.version)}</td>
    <td>${time(s.rotated_at)}</td>
    <td>${time(s.next_rotation_at)}</td>
    <td>${state(s.status)}</td>
    <td>${rotateNowForm(ctx, s.name)}</td>
  </tr>`,
  )}
  </tbody>
</table>
${d.items.length ? '' : html`<p class="muted">No static secret is registered yet.</p>`}
</section>
<section class="panel">
<h2>Connections</h2>
<p class="muted">Emergency rotate treats every credential of a connection's static secrets as exposed: each gets a new one, every earlier one stops working, and sessions opened with them are ended.</p>
<table class="connections">
  <thead><tr><th scope="col">Connection</th><th scope="col">Plugin</th><th scope="col">Static secrets</th><th scope="col"><span class="sr-only">Actions</span></th></tr></thead>
  <tbody>
  ${d.connections.map(
    (c) => html`<tr data-connection="${c.name}">
    <td>${c.name}</td><td>${c.plugin}</td><td>${c.secrets.length ? c.secrets.join(', ') : html`<span class="muted">none</span>`}</td>
    <td><form method="get" action="/ui/static"><input type="hidden" name="emergency" value="${c.name}"><button type="submit" class="small danger"${c.secrets.length ? '' : html` disabled`}>Emergency rotate</button></form></td>
  </tr>`,
  )}
  </tbody>
</table>
</section>
${d.emergency &&
confirmDialog({
  id: 'emergency',
  title: `Emergency rotate ${d.emergency.name}?`,
  body: html`<p>${d.emergency.secrets.length} static ${d.emergency.secrets.length === 1 ? 'secret' : 'secrets'} on connection <code>${d.emergency.name}</code> (${d.emergency.secrets.join(', ')}) ${d.emergency.secrets.length === 1 ? 'is' : 'are'} rotated now on the emergency queue.</p>
    <p>Every credential of ${d.emergency.secrets.length === 1 ? 'it' : 'them'} known before now stops working, and the sessions opened with ${d.emergency.secrets.length === 1 ? 'it' : 'them'} are ended. Applications must read their credential again.</p>`,
  action: '/ui/static/emergency',
  confirm: 'Emergency rotate',
  fields: html`${csrfField(ctx.session!)}<input type="hidden" name="connection" value="${d.emergency.name}">`,
  cancelHref: '/ui/static',
  danger: true,
})}`,
  );
}

export function staticDetailPage(
  ctx: PageContext,
  s: {
    name: string;
    connection: string;
    strategy: string;
    accounts: unknown[];
    status: string;
    version: number | null;
    rotated_at: string | null;
    next_rotation_at: string | null;
    last_error_detail: string | null;
    versions: Array<{ version: number; account: string; state: string; created_at: string; promoted_at: string | null }>;
    rotations: RotationView[];
  },
): string {
  const row = (label: string, value: Html | string | number | null) => html`<dt>${label}</dt><dd>${dash(value)}</dd>`;
  return layout(
    s.name,
    { ...ctx, section: 'static' },
    html`<section class="panel">
  <dl class="facts">
    ${row('Connection', s.connection)}
    ${row('Strategy', s.strategy)}
    ${row('Accounts', s.accounts.map(String).join(', '))}
    ${row('State', state(s.status))}
    ${row('Version', s.version)}
    ${row('Last rotation', time(s.rotated_at))}
    ${row('Next rotation', time(s.next_rotation_at))}
    ${row('Last error', s.last_error_detail)}
  </dl>
  ${rotateNowForm(ctx, s.name)}
</section>
<section class="panel">
  <h2>Versions</h2>
  <table><thead><tr><th scope="col" class="num">Version</th><th scope="col">Account</th><th scope="col">State</th><th scope="col">Created</th><th scope="col">Promoted</th></tr></thead><tbody>
  ${s.versions.map((v) => html`<tr><td class="num">${v.version}</td><td class="mono">${v.account}</td><td>${state(v.state)}</td><td>${time(v.created_at)}</td><td>${time(v.promoted_at)}</td></tr>`)}
  </tbody></table>
  <h2>Rotation history</h2>
  ${rotationsTable(s.rotations, false)}
</section>`,
  );
}

function steps(r: RotationView): Html {
  const list = Array.isArray(r.steps) ? (r.steps as Array<{ step?: unknown; at?: unknown; error?: unknown }>) : [];
  return html`<ol class="steps">${list.map(
    (s) => html`<li><span class="step">${String(s.step ?? '')}</span> ${typeof s.at === 'string' ? time(s.at, { clock: true }) : ''}${typeof s.error === 'string' ? html` <span class="error-text">${s.error}</span>` : ''}</li>`,
  )}</ol>`;
}

export function rotationsTable(rotations: RotationView[], live: boolean): Html {
  return html`<table class="rotations" aria-label="Rotations"${live ? html` data-rotations="${rotations.map((r) => r.rotation_id).join(',')}"` : ''}>
  <thead><tr><th scope="col">Secret</th><th scope="col">Rotation</th><th scope="col">Trigger</th><th scope="col">Status</th><th scope="col">Steps</th><th scope="col">Started</th><th scope="col">Finished</th></tr></thead>
  <tbody>
  ${rotations.map(
    (r) => html`<tr data-rotation-id="${r.rotation_id}">
    <th scope="row">${r.name}</th>
    <td class="mono small">${r.rotation_id}<br><span class="muted">version ${r.version}</span></td>
    <td>${r.trigger}</td>
    <td data-field="status">${state(r.status)}</td>
    <td data-field="steps">${steps(r)}${r.error ? html`<p class="error-text" data-field="error">${r.error}</p>` : ''}</td>
    <td>${time(r.created_at)}</td>
    <td data-field="finished">${time(r.finished_at)}</td>
  </tr>`,
  )}
  </tbody>
</table>`;
}

export function rotationsPage(ctx: PageContext, rotations: RotationView[]): string {
  const done = rotations.every((r) => r.status === 'succeeded' || r.status === 'failed');
  return layout(
    rotations.length === 1 ? `Rotation of ${rotations[0].name}` : 'Rotations',
    { ...ctx, section: 'static' },
    html`<section class="panel">
  <p id="rotations-progress" role="status" aria-live="polite">${done ? 'All rotations have ended.' : 'Rotations are running; this page follows their steps.'}</p>
  ${rotationsTable(rotations, !done)}
  <p><a href="/ui/static">Back to the list</a></p>
</section>`,
  );
}
