import { Html, html, segment, uiUrl } from '../html';
import { PageContext, confirmDialog, csrfField, layout, time } from './components';

/** A role whose credentials are STS sessions (assumed_role): its sessions can only be revoked all at once. */
export interface SessionRoleView {
  name: string;
  connection: string;
  roleArns: string[];
}

export interface RolesPageData {
  roles: SessionRoleView[];
  /** The role whose "Revoke sessions" is being confirmed. */
  confirm?: SessionRoleView;
  notice?: Html;
}

export function rolesPage(ctx: PageContext, d: RolesPageData): string {
  return layout(
    'Roles',
    ctx,
    html`${d.notice}
<section class="panel">
  <h2>Roles with STS sessions</h2>
  <p class="muted">Sessions of these roles cannot be revoked one lease at a time. <em>Revoke sessions</em> makes every session the role issued so far stop working; sessions leased afterwards work.</p>
  ${d.roles.length
    ? html`<table class="roles"><thead><tr><th scope="col">Role</th><th scope="col">Connection</th><th scope="col">Role ARNs</th><th scope="col"><span class="sr-only">Actions</span></th></tr></thead><tbody>
      ${d.roles.map(
        (r) => html`<tr>
        <th scope="row" class="nowrap">${r.name}</th>
        <td class="nowrap">${r.connection}</td>
        <td class="mono wrap">${r.roleArns.map((a, i) => html`${i ? html`<br>` : ''}${a}`)}</td>
        <td><form method="get" action="/ui/roles"><input type="hidden" name="confirm" value="${r.name}"><button type="submit" class="small danger">Revoke sessions</button></form></td>
      </tr>`,
      )}
    </tbody></table>`
    : html`<p class="muted">No role issues STS sessions (credential_type: assumed_role).</p>`}
</section>
${d.confirm &&
confirmDialog({
  id: 'revoke-sessions',
  title: `Revoke every session of ${d.confirm.name}?`,
  body: html`<p>Every session role <code>${d.confirm.name}</code> issued until now stops working at its next call (${d.confirm.roleArns.length} role ${d.confirm.roleArns.length === 1 ? 'ARN' : 'ARNs'} on connection ${d.confirm.connection}). Workloads must lease new credentials.</p>`,
  action: uiUrl(`/ui/roles/${segment(d.confirm.name)}/revoke-sessions`),
  confirm: 'Revoke sessions',
  fields: csrfField(ctx.session!),
  cancelHref: '/ui/roles',
  danger: true,
})}`,
  );
}

export const sessionsRevokedNotice = (role: string, before: string) =>
  html`<p class="notice ok" role="status">Sessions of role <code>${role}</code> issued before ${time(before)} (UTC) no longer work: revoked_before ${before}.</p>`;
