/**
 * The operator pages: each handler parses its input, calls the services the API calls (LeaseService,
 * StaticService, AuditLog, the job producer, the target probes) and renders. No SQL here.
 */
import type { Response } from 'express';
import { AuditLog } from '../audit/audit.log';
import { AuditType } from '../audit/audit-event';
import { DomainError } from '../common/errors';
import { TesseraConfig } from '../config/config.loader';
import { TargetsReport } from '../health/target-probes';
import { toHttpError } from '../http/error.filter';
import { JobProducer } from '../jobs/job.producer';
import { LeaseService } from '../leases/lease.service';
import { BOOTSTRAP_ISSUER_NAME, X509_ISSUER_NAME } from '../identity/identity';
import { RoleSessionsService } from '../roles/role-sessions.service';
import { StaticService } from '../statics/static.service';
import { ConsoleSession } from './console-auth.service';
import { ConsoleRequest, mayConfirm } from './console-http';
import {
  auditQuery,
  bulkBody,
  bulkQuery,
  csrfBody,
  emergencyBody,
  leaseDetailQuery,
  leaseListQuery,
  parseForm,
  rolesQuery,
  rotationsQuery,
  staticsQuery,
  verifyBody,
} from './console-input';
import { Html, segment, uiUrl } from './html';
import { auditPage } from './pages/audit.page';
import { PageContext, Section, notice } from './pages/components';
import { BulkFilterInput, leaseDetailPage, leasesPage, revokedNotice } from './pages/leases.page';
import { overviewPage } from './pages/overview.page';
import { SessionRoleView, rolesPage, sessionsRevokedNotice } from './pages/roles.page';
import { RotationView, rotationsPage, staticDetailPage, staticsPage } from './pages/statics.page';

const PAGE_SIZE = 50;
const AUDIT_PAGE_SIZE = 100;

/**
 * Every event type, for the audit filter. A record over AuditType, so a type added there without being
 * added here fails to compile.
 */
const AUDIT_TYPE_SET: Record<AuditType, true> = {
  'lease.issued': true,
  'lease.issue_failed': true,
  'lease.renewed': true,
  'lease.revoked': true,
  'lease.expired': true,
  'lease.revoke_failed': true,
  'lease.abandoned': true,
  'lease.bulk_revoke': true,
  'role.sessions_revoked': true,
  'request.denied': true,
  'request.denied_summary': true,
  'audit.keyed': true,
  'audit.heartbeat': true,
  'audit.head_broken': true,
  'audit.shards': true,
  'bootstrap.created': true,
  'bootstrap.used': true,
  'static.rotated': true,
  'static.exposure_contained': true,
  'static.late_sessions_ended': true,
  'static.rotation_failed': true,
  'static.imported': true,
  'static.read': true,
  'static.rotation_requested': true,
  'event.received': true,
  'vault.token_created': true,
  'vault.token_renewed': true,
  'vault.token_revoked': true,
  'console.signed_in': true,
  'console.signed_out': true,
};
const AUDIT_TYPES = Object.keys(AUDIT_TYPE_SET) as AuditType[];

export interface ConsoleServices {
  config: TesseraConfig;
  leases: LeaseService;
  statics: StaticService;
  audit: AuditLog;
  jobs: JobProducer;
  roleSessions: RoleSessionsService;
  targets: () => TargetsReport;
}

const send = (res: Response, body: string, status = 200) => void res.status(status).type('html').send(body);
const ctx = (req: ConsoleRequest, section?: Section): PageContext => ({ session: req.consoleSession, section });
const param = (req: ConsoleRequest, key: string) => String(req.params[key]);
const identity = (req: ConsoleRequest) => (req.consoleSession as ConsoleSession).identity;
const bulkFilter = (b: BulkFilterInput) => ({ role: b.role, connection: b.connection, owner: b.owner, ownerIssuer: b.owner_issuer, runId: b.run_id });

export class ConsolePages {
  constructor(private readonly s: ConsoleServices) {}

  async overview(req: ConsoleRequest, res: Response): Promise<void> {
    const [summary, statics, queues] = await Promise.all([
      this.s.leases.summary(),
      this.s.statics.list(),
      this.queueDepth(),
    ]);
    const connections = [...this.s.config.connections.values()].map((c) => ({ name: c.name, plugin: c.plugin }));
    send(res, overviewPage(ctx(req, 'overview'), { active: summary.active, revokeFailed: summary.revoke_failed, statics: statics.items, queues, targets: this.s.targets(), connections }));
  }

  async leases(req: ConsoleRequest, res: Response): Promise<void> {
    const q = parseForm(leaseListQuery, req.query);
    const page = await this.s.leases.list(identity(req), { role: q.role, state: q.state, owner: q.owner, runId: q.run_id, limit: PAGE_SIZE, cursor: q.cursor });
    const filter = { role: q.role, state: q.state, owner: q.owner, run_id: q.run_id };
    const done = q.bulk === undefined ? undefined : notice(`${q.bulk} ${q.bulk === 1 ? 'lease is' : 'leases are'} being revoked.`);
    send(res, leasesPage(ctx(req, 'leases'), { filter, items: page.items, nextCursor: page.next_cursor, ...this.choices(), notice: done }));
  }

  /** The bulk revoke's confirmation: the count the same filter matches now, shown before anything happens. */
  async bulkPreview(req: ConsoleRequest, res: Response): Promise<void> {
    const f = parseForm(bulkQuery, req.query);
    const bulk = { role: f.role, connection: f.connection, owner: f.owner, owner_issuer: f.owner_issuer, run_id: f.run_id };
    // Opened from another site's link, the page shows the leases without the dialog.
    send(res, await this.bulkPage(req, bulk, mayConfirm(req)));
  }

  async bulkRevoke(req: ConsoleRequest, res: Response): Promise<void> {
    const b = parseForm(bulkBody, req.body);
    const bulk = { role: b.role, connection: b.connection, owner: b.owner, owner_issuer: b.owner_issuer, run_id: b.run_id };
    try {
      const { matched } = await this.s.leases.bulkRevoke(identity(req), bulkFilter(bulk), { expected: b.expected });
      res.redirect(303, uiUrl('/ui/leases', { run_id: b.run_id, owner: b.owner, role: b.role, bulk: matched }));
    } catch (err) {
      if (!(err instanceof DomainError && err.code === 'bulk_revoke_changed')) throw err;
      // The leases changed since the count was shown: show the new count and ask again.
      send(res, await this.bulkPage(req, bulk, true, notice(err.message, 'warn')), 409);
    }
  }

  /** The leases a bulk revoke matches now (exactly its filter and states), and the count to confirm. */
  private async bulkPage(req: ConsoleRequest, bulk: BulkFilterInput, confirm: boolean, shown?: Html): Promise<string> {
    const { matched, items } = await this.s.leases.previewBulkRevoke(bulkFilter(bulk), PAGE_SIZE);
    const filter = { role: bulk.role, owner: bulk.owner, run_id: bulk.run_id };
    return leasesPage(ctx(req, 'leases'), { filter, items, nextCursor: null, ...this.choices(), bulk: confirm ? { filter: bulk, matched } : undefined, notice: shown });
  }

  async lease(req: ConsoleRequest, res: Response): Promise<void> {
    const q = parseForm(leaseDetailQuery, req.query);
    const lease = await this.s.leases.get(identity(req), param(req, 'id'));
    const done = q.revoked === undefined ? undefined : revokedNotice(q.revoked);
    send(res, leaseDetailPage(ctx(req, 'leases'), lease, { confirmRevoke: q.confirm === 'revoke' && mayConfirm(req), notice: done }));
  }

  async revokeLease(req: ConsoleRequest, res: Response): Promise<void> {
    parseForm(csrfBody, req.body);
    const { state } = await this.s.leases.revoke(identity(req), param(req, 'id'));
    res.redirect(303, uiUrl(`/ui/leases/${segment(param(req, 'id'))}`, { revoked: state }));
  }

  /** Roles whose credentials are STS sessions, each with "Revoke sessions" (DESIGN §14). */
  async roles(req: ConsoleRequest, res: Response): Promise<void> {
    const q = parseForm(rolesQuery, req.query);
    const roles = this.sessionRoles();
    let confirm: SessionRoleView | undefined;
    if (q.confirm !== undefined) {
      confirm = roles.find((r) => r.name === q.confirm);
      if (!confirm) throw new DomainError('not_found', 'role_not_found', `no role named ${JSON.stringify(q.confirm)} issues STS sessions`);
      if (!mayConfirm(req)) confirm = undefined;
    }
    // The result of a revoke just made (after its 303), shown only to a page of the console itself.
    const done = q.revoked !== undefined && q.before !== undefined && mayConfirm(req) ? sessionsRevokedNotice(q.revoked, q.before) : undefined;
    send(res, rolesPage(ctx(req, 'roles'), { roles, confirm, notice: done }));
  }

  /** The API's revoke-sessions (the same service, so the same checks and audit event, with the operator as actor). */
  async revokeSessions(req: ConsoleRequest, res: Response): Promise<void> {
    parseForm(csrfBody, req.body);
    const role = param(req, 'role');
    try {
      const { revoked_before } = await this.s.roleSessions.revokeSessions(identity(req), role);
      // A redirect, so that reloading the result page does not revoke again (moving the cut-off later).
      res.redirect(303, uiUrl('/ui/roles', { revoked: role, before: revoked_before }));
    } catch (err) {
      if (!(err instanceof DomainError)) throw err;
      const { status } = toHttpError(err);
      send(res, rolesPage(ctx(req, 'roles'), { roles: this.sessionRoles(), notice: notice(`${err.message} (${err.code})`, 'error') }), status);
    }
  }

  async statics(req: ConsoleRequest, res: Response): Promise<void> {
    const q = parseForm(staticsQuery, req.query);
    const { items } = await this.s.statics.list();
    const connections = [...this.s.config.connections.values()].map((c) => ({
      name: c.name,
      plugin: c.plugin,
      secrets: Object.entries(this.s.config.static_secrets).filter(([, sec]) => sec.connection === c.name).map(([n]) => n),
    }));
    let emergency;
    if (q.emergency !== undefined) {
      emergency = connections.find((c) => c.name === q.emergency);
      if (!emergency) throw new DomainError('not_found', 'connection_not_found', `no connection named ${JSON.stringify(q.emergency)}`);
      if (!mayConfirm(req)) emergency = undefined;
    }
    send(res, staticsPage(ctx(req, 'static'), { items, connections, emergency }));
  }

  async staticSecret(req: ConsoleRequest, res: Response): Promise<void> {
    const d = await this.s.statics.describe(identity(req), param(req, 'name'));
    send(res, staticDetailPage(ctx(req, 'static'), { ...d, rotations: d.rotations as RotationView[] }));
  }

  async rotateNow(req: ConsoleRequest, res: Response): Promise<void> {
    parseForm(csrfBody, req.body);
    const { rotation_id } = await this.s.statics.rotate(identity(req), param(req, 'name'), 'operator console', false);
    res.redirect(303, uiUrl('/ui/rotations', { id: rotation_id }));
  }

  async emergencyRotate(req: ConsoleRequest, res: Response): Promise<void> {
    const b = parseForm(emergencyBody, req.body);
    const { rotation_ids } = await this.s.statics.rotateConnection(identity(req).subject, b.connection, 'emergency', 'operator console');
    if (!rotation_ids.length) throw new DomainError('conflict', 'nothing_to_rotate', `connection ${b.connection} has no static secrets`);
    res.redirect(303, uiUrl('/ui/rotations', { id: rotation_ids }));
  }

  async rotations(req: ConsoleRequest, res: Response): Promise<void> {
    send(res, rotationsPage(ctx(req, 'static'), await this.rotationViews(req)));
  }

  /** The rotations page's live updates: status and steps, never a secret. */
  async rotationsJson(req: ConsoleRequest, res: Response): Promise<void> {
    const items = await this.rotationViews(req);
    const done = items.every((r) => r.status === 'succeeded' || r.status === 'failed');
    res.json({
      done,
      items: items.map((r) => ({ rotation_id: r.rotation_id, name: r.name, status: r.status, steps: r.steps, error: r.error ?? null, finished_at: r.finished_at })),
    });
  }

  async audit(req: ConsoleRequest, res: Response, verify = false): Promise<void> {
    const q: { type?: string; subject?: string; before?: string } = verify ? parseForm(verifyBody, req.body) : parseForm(auditQuery, req.query);
    const verification = verify ? await this.s.audit.verify() : undefined;
    const filter = { type: q.type, actor: q.subject, beforeId: q.before };
    const items = await this.s.audit.search(filter, AUDIT_PAGE_SIZE + 1);
    const shown = items.slice(0, AUDIT_PAGE_SIZE);
    const olderThan = items.length > AUDIT_PAGE_SIZE ? shown[shown.length - 1].id : null;
    send(res, auditPage(ctx(req, 'audit'), { filter: { type: q.type, subject: q.subject }, items: shown, olderThan, types: AUDIT_TYPES, verification }));
  }

  private async rotationViews(req: ConsoleRequest): Promise<RotationView[]> {
    const { id } = parseForm(rotationsQuery, req.query);
    return Promise.all([...new Set(id)].map((one) => this.s.statics.rotationStatus(one) as Promise<RotationView>));
  }

  /** Jobs per queue and state; null when Redis cannot be asked (the page says so). */
  private async queueDepth(): Promise<Array<{ queue: string; waiting: number; delayed: number; active: number; failed: number }> | null> {
    try {
      return (await this.s.jobs.counts()).map(({ queue, counts }) => ({
        queue,
        waiting: counts.waiting ?? 0,
        delayed: counts.delayed ?? 0,
        active: counts.active ?? 0,
        failed: counts.failed ?? 0,
      }));
    } catch {
      return null;
    }
  }

  private choices(): { roles: string[]; connections: string[]; issuers: string[] } {
    return {
      roles: [...this.s.config.roles.keys()].sort(),
      connections: [...this.s.config.connections.keys()].sort(),
      issuers: [...this.s.config.identity.issuers.map((i) => i.name), X509_ISSUER_NAME, BOOTSTRAP_ISSUER_NAME],
    };
  }

  private sessionRoles(): SessionRoleView[] {
    return [...this.s.config.roles.values()]
      .filter((r) => (r.settings as { credential_type?: unknown }).credential_type === 'assumed_role')
      .map((r) => ({ name: r.name, connection: r.connection, roleArns: [...((r.settings as { role_arns?: string[] }).role_arns ?? [])] }))
      .sort((a, b) => a.name.localeCompare(b.name));
  }
}

