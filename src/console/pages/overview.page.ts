import { TargetsReport } from '../../health/target-probes';
import { html, uiUrl } from '../html';
import { PageContext, layout, state, time } from './components';

export interface OverviewData {
  active: Array<{ role: string; plugin: string; count: number }>;
  revokeFailed: number;
  statics: Array<{ name: string; status: string }>;
  /** Null when Redis could not be asked. */
  queues: Array<{ queue: string; waiting: number; delayed: number; active: number; failed: number }> | null;
  targets: TargetsReport;
  connections: Array<{ name: string; plugin: string }>;
}

export function overviewPage(ctx: PageContext, d: OverviewData): string {
  const activeTotal = d.active.reduce((n, r) => n + r.count, 0);
  const rotationFailed = d.statics.filter((s) => s.status === 'rotation_failed');
  const depth = d.queues?.reduce((n, q) => n + q.waiting + q.delayed + q.active, 0);
  const targetState = (name: string) => (d.targets.state === 'starting' ? 'starting' : d.targets.degraded.includes(name) ? 'down' : 'up');
  return layout(
    'Overview',
    ctx,
    html`<section class="cards" aria-label="Summary">
  <div class="card"><span class="figure">${activeTotal}</span><span class="label">active leases</span></div>
  <div class="card ${d.revokeFailed ? 'alert' : ''}"><span class="figure">${d.revokeFailed}</span><span class="label">leases revoke_failed</span></div>
  <div class="card ${rotationFailed.length ? 'alert' : ''}"><span class="figure">${rotationFailed.length}</span><span class="label">secrets rotation_failed</span></div>
  <div class="card"><span class="figure">${depth ?? '?'}</span><span class="label">jobs in the queues</span></div>
  <div class="card ${d.targets.degraded.length ? 'alert' : ''}"><span class="figure">${d.connections.length - d.targets.degraded.length}/${d.connections.length}</span><span class="label">targets up</span></div>
</section>
<div class="columns">
<section class="panel">
  <h2>Active leases by role</h2>
  ${d.active.length
    ? html`<table><thead><tr><th scope="col">Role</th><th scope="col">Plugin</th><th scope="col" class="num">Active</th></tr></thead><tbody>
      ${d.active.map((r) => html`<tr><td><a href="${uiUrl('/ui/leases', { role: r.role, state: 'active' })}">${r.role}</a></td><td>${r.plugin}</td><td class="num">${r.count}</td></tr>`)}
    </tbody></table>`
    : html`<p class="muted">No active leases.</p>`}
  <h2>Needs attention</h2>
  <ul class="plain">
    <li>${d.revokeFailed ? html`<a href="${uiUrl('/ui/leases', { state: 'revoke_failed' })}">${d.revokeFailed} revoke_failed</a> (retried by the reconciler)` : html`No lease is revoke_failed.`}</li>
    <li>${rotationFailed.length ? html`rotation_failed: ${rotationFailed.map((s, i) => html`${i ? ', ' : ''}<a href="${uiUrl(`/ui/static/${encodeURIComponent(s.name)}`)}">${s.name}</a>`)}` : html`No static secret is rotation_failed.`}</li>
  </ul>
</section>
<section class="panel">
  <h2>Queues</h2>
  ${d.queues
    ? html`<table><thead><tr><th scope="col">Queue</th><th scope="col" class="num">Waiting</th><th scope="col" class="num">Delayed</th><th scope="col" class="num">Active</th><th scope="col" class="num">Failed</th></tr></thead><tbody>
      ${d.queues.map((q) => html`<tr><td>${q.queue}</td><td class="num">${q.waiting}</td><td class="num">${q.delayed}</td><td class="num">${q.active}</td><td class="num">${q.failed}</td></tr>`)}
    </tbody></table>`
    : html`<p class="notice error">The queue (Redis) could not be asked.</p>`}
  <h2>Targets</h2>
  <table><thead><tr><th scope="col">Connection</th><th scope="col">Plugin</th><th scope="col">State</th></tr></thead><tbody>
    ${d.connections.map((c) => html`<tr><td>${c.name}</td><td>${c.plugin}</td><td>${state(targetState(c.name))}</td></tr>`)}
  </tbody></table>
  <p class="muted small">Probed in the background; last round ${time(d.targets.checked_at)}.</p>
</section>
</div>`,
  );
}
