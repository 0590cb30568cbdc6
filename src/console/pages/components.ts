/** Pieces every console page uses: the layout, dialogs, notices, times and states. */
import { ConsoleSession } from '../console-auth.service';
import { Html, HtmlValue, html } from '../html';

export type Section = 'overview' | 'leases' | 'static' | 'audit' | 'roles';

export interface PageContext {
  session?: ConsoleSession;
  section?: Section;
}

const SECTIONS: Array<{ id: Section; label: string; href: string }> = [
  { id: 'overview', label: 'Overview', href: '/ui/' },
  { id: 'leases', label: 'Leases', href: '/ui/leases' },
  { id: 'static', label: 'Static secrets', href: '/ui/static' },
  { id: 'audit', label: 'Audit', href: '/ui/audit' },
  { id: 'roles', label: 'Roles', href: '/ui/roles' },
];

/** The whole document. Scripts and styles only from /ui/assets/: the CSP allows nothing else. */
export function layout(title: string, ctx: PageContext, body: Html, opts: { head?: Html } = {}): string {
  const session = ctx.session;
  return html`<!doctype html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>${title} · Tessera</title>
<link rel="stylesheet" href="/ui/assets/console.css">
<script src="/ui/assets/console.js" defer></script>
${opts.head}
</head>
<body>
<header class="top">
  <a class="brand" href="/ui/">Tessera <span>operator console</span></a>
  ${session &&
  html`<nav aria-label="Console">
    <ul>
      ${SECTIONS.map((s) => html`<li><a href="${s.href}"${s.id === ctx.section ? html` aria-current="page"` : ''}>${s.label}</a></li>`)}
    </ul>
  </nav>
  <div class="who">
    <span title="${session.identity.subject}">${session.displayName ?? session.identity.subject} <small>(${session.identity.issuer})</small></span>
    <form method="post" action="/ui/logout">${csrfField(session)}<button type="submit" class="quiet">Sign out</button></form>
  </div>`}
</header>
<main>
<h1>${title}</h1>
${body}
</main>
</body>
</html>
`.text;
}

export const csrfField = (session: ConsoleSession) => html`<input type="hidden" name="_csrf" value="${session.csrfToken}">`;

/**
 * A confirmation (DESIGN §12: its confirming button repeats the action's name). Rendered open, so it
 * works without scripts; console.js makes it modal. Cancel goes back to `cancelHref` and has the
 * focus: a stray Enter cancels, it never confirms. Pages render a dialog only for a request from the
 * console itself (see mayConfirm).
 */
export function confirmDialog(opts: { id: string; title: string; body: HtmlValue; action: string; confirm: string; fields: HtmlValue; cancelHref: string; danger?: boolean }): Html {
  return html`<dialog open data-modal data-cancel="${opts.cancelHref}" aria-labelledby="${opts.id}-title" id="${opts.id}">
  <h2 id="${opts.id}-title">${opts.title}</h2>
  ${opts.body}
  <form method="post" action="${opts.action}" class="dialog-actions">
    ${opts.fields}
    <a class="button quiet" href="${opts.cancelHref}" autofocus>Cancel</a>
    <button type="submit" class="${opts.danger ? 'danger' : ''}">${opts.confirm}</button>
  </form>
</dialog>`;
}

/** A notice after an action (role=status, so it is announced). */
export const notice = (text: HtmlValue, kind: 'ok' | 'warn' | 'error' = 'ok') => html`<p class="notice ${kind}" role="status">${text}</p>`;

/** A time in UTC, to the second (`clock`: without the date). */
export function time(iso: string | null | undefined, opts: { clock?: boolean } = {}): Html {
  if (!iso) return html`<span class="muted">—</span>`;
  const d = new Date(iso);
  const text = opts.clock ? d.toISOString().slice(11, 19) : `${d.toISOString().slice(0, 10)} ${d.toISOString().slice(11, 19)}`;
  return html`<time datetime="${iso}">${text}</time>`;
}

const STATE_TONE: Record<string, string> = {
  active: 'ok',
  current: 'ok',
  previous: 'info',
  succeeded: 'ok',
  ok: 'ok',
  up: 'ok',
  pending: 'info',
  queued: 'info',
  running: 'info',
  revoking: 'info',
  starting: 'info',
  revoked: 'muted',
  failed: 'bad',
  revoke_failed: 'bad',
  rotation_failed: 'bad',
  degraded: 'bad',
  down: 'bad',
};

export const state = (value: string) => html`<span class="state ${STATE_TONE[value] ?? 'muted'}">${value}</span>`;

export const dash = (value: HtmlValue) => (value === null || value === undefined || value === '' ? html`<span class="muted">—</span>` : html`${value}`);
