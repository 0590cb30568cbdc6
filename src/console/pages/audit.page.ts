import { AuditRecord, AuditVerification } from '../../audit/audit.log';
import { Html, html, uiUrl } from '../html';
import { PageContext, csrfField, dash, layout, notice, time } from './components';

export interface AuditPageData {
  filter: { type?: string; subject?: string };
  items: AuditRecord[];
  olderThan: string | null;
  types: readonly string[];
  verification?: AuditVerification;
}

function verificationNotice(v: AuditVerification): Html {
  if (v.ok) return notice(html`Chain verified: ${v.events_checked} events checked, none edited, inserted or removed.`);
  return notice(html`The chain does not verify: ${v.reason ?? 'broken'} at event ${v.first_bad_id ?? '?'} (${v.events_checked} events checked).`, 'error');
}

/** An event's detail, one key per line. Audit details hold names, ids, counts and reasons only. */
function detail(d: Record<string, unknown> | null | undefined): Html {
  const entries = Object.entries(d ?? {});
  if (!entries.length) return html`<span class="muted">—</span>`;
  return html`<dl class="detail">${entries.map(([k, v]) => html`<dt>${k}</dt><dd>${typeof v === 'string' ? v : JSON.stringify(v)}</dd>`)}</dl>`;
}

export function auditPage(ctx: PageContext, d: AuditPageData): string {
  const f = d.filter;
  return layout(
    'Audit',
    ctx,
    html`${d.verification && verificationNotice(d.verification)}
<div class="toolbar">
<form method="get" action="/ui/audit" class="filters" aria-label="Filter events">
  <label>Type<select name="type"><option value="">any</option>${d.types.map((t) => html`<option${t === f.type ? html` selected` : ''}>${t}</option>`)}</select></label>
  <label>Subject<input name="subject" value="${f.subject ?? ''}" autocomplete="off" size="40"></label>
  <button type="submit">Filter</button>
  <a href="/ui/audit" class="button quiet">Clear</a>
</form>
<form method="post" action="/ui/audit/verify">${csrfField(ctx.session!)}${f.type && html`<input type="hidden" name="type" value="${f.type}">`}${f.subject && html`<input type="hidden" name="subject" value="${f.subject}">`}<button type="submit">Verify chain</button></form>
</div>
<table class="audit">
  <colgroup><col class="id"><col class="at"><col class="type"><col class="subject"><col class="lease"><col></colgroup>
  <thead><tr><th scope="col" class="num">Event</th><th scope="col">Time</th><th scope="col">Type</th><th scope="col">Subject</th><th scope="col">Lease</th><th scope="col">Detail</th></tr></thead>
  <tbody>
  ${d.items.map(
    (e) => html`<tr>
    <td class="num">${e.id}</td>
    <td class="nowrap">${time(e.at)}</td>
    <td class="nowrap"><code>${e.type}</code></td>
    <td class="wrap">${dash(e.actor)}</td>
    <td class="mono small">${dash(e.lease_id)}</td>
    <td>${detail(e.detail)}</td>
  </tr>`,
  )}
  </tbody>
</table>
${d.items.length ? '' : html`<p class="muted">No events match.</p>`}
${d.olderThan && html`<p><a href="${uiUrl('/ui/audit', { type: f.type, subject: f.subject, before: d.olderThan })}">Older events</a></p>`}`,
  );
}
