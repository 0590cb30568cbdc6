import { Inject, Injectable } from '@nestjs/common';
import { AuditDenials } from '../audit/audit-denials';
import { AuditLog } from '../audit/audit.log';
import { DomainError } from '../common/errors';
import { CONFIG } from '../config/config.module';
import { TesseraConfig } from '../config/config.loader';
import { Identity } from '../identity/identity';
import { PolicyService } from '../policy/policy.service';
import { RotationService } from './rotation.service';
import { staticConfig, strategyOf } from './static-secrets';
import { StaticRepository } from './static.repository';

const notFound = (name: string) => new DomainError('not_found', 'static_not_found', `no static secret named ${JSON.stringify(name)}`);

/** Reading static secrets and asking for their rotation. */
@Injectable()
export class StaticService {
  constructor(
    @Inject(CONFIG) private readonly config: TesseraConfig,
    private readonly statics: StaticRepository,
    private readonly rotations: RotationService,
    private readonly policy: PolicyService,
    private readonly audit: AuditLog,
    private readonly denials: AuditDenials,
  ) {}

  /** The current credentials, for workloads the policy allows (409 until Tessera owns the secret). */
  async creds(identity: Identity, name: string) {
    await this.authorize(identity, name, 'static.creds');
    const row = await this.statics.get(name);
    if (!row) throw new DomainError('conflict', 'rotation_pending', 'the secret is not registered yet; try again shortly');
    const current = await this.statics.version(name, 'current');
    if (!current) throw new DomainError('conflict', 'rotation_pending', 'Tessera does not own this secret yet (its first rotation is pending)');
    const { credentials } = this.statics.open(current);
    await this.audit.append({ type: 'static.read', actor: identity.subject, detail: { name, version: current.version } });
    return {
      name,
      plugin: this.config.connections.get(row.connection)?.plugin ?? null,
      ...credentials,
      version: current.version,
      rotated_at: row.rotated_at?.toISOString() ?? null,
      next_rotation_at: row.next_rotation_at?.toISOString() ?? null,
    };
  }

  /** Metadata and rotation history; never a secret. */
  async describe(identity: Identity, name: string) {
    if (!identity.operator) await this.authorize(identity, name, 'static.describe');
    const secret = staticConfig(this.config, name);
    if (!secret) throw notFound(name);
    const row = await this.statics.get(name);
    if (!row) throw notFound(name);
    const { versions, rotations } = await this.statics.history(name);
    return {
      name,
      connection: secret.connection,
      strategy: strategyOf(secret),
      accounts: secret.usernames ?? [secret.username ?? secret.iam_user],
      status: row.status,
      version: row.current_version,
      rotated_at: row.rotated_at?.toISOString() ?? null,
      next_rotation_at: row.next_rotation_at?.toISOString() ?? null,
      // A target's error text can name hosts, users and internals: policy readers get a stable code,
      // operators also the text (as with a lease's last_error / last_error_detail).
      last_error: row.last_error === null ? null : 'rotation_failed',
      last_error_detail: identity.operator ? row.last_error : null,
      versions: versions.map((v) => ({ version: v.version, account: v.account, state: v.state, created_at: v.created_at.toISOString(), promoted_at: v.promoted_at?.toISOString() ?? null })),
      rotations: rotations.map((r) => this.rotationView(r, identity.operator)),
    };
  }

  async list() {
    return {
      items: (await this.statics.list()).map((r) => {
        const secret = staticConfig(this.config, r.name);
        return {
          name: r.name,
          connection: r.connection,
          strategy: secret ? strategyOf(secret) : null,
          status: r.status,
          version: r.current_version,
          rotated_at: r.rotated_at?.toISOString() ?? null,
          next_rotation_at: r.next_rotation_at?.toISOString() ?? null,
        };
      }),
    };
  }

  async rotate(identity: Identity, name: string, reason: string | undefined, emergency = false) {
    if (!staticConfig(this.config, name)) throw notFound(name);
    const result = await this.rotations.request(name, emergency ? 'emergency' : 'manual', { reason, actor: identity.subject });
    await this.audit.append({ type: 'static.rotation_requested', actor: identity.subject, detail: { name, rotation_id: result.rotation_id, reason: reason ?? null } });
    return result;
  }

  async rotateFromEvent(actor: string, name: string) {
    if (!staticConfig(this.config, name)) throw notFound(name);
    return this.rotations.request(name, 'event', { reason: 'secret.exposed', actor });
  }

  /** Emergency: every static secret on a connection, on the emergency queue. */
  async rotateConnection(actor: string, connection: string, trigger: 'emergency' | 'event', reason?: string) {
    if (!this.config.connections.has(connection)) throw new DomainError('not_found', 'connection_not_found', `no connection named ${JSON.stringify(connection)}`);
    const names = Object.entries(this.config.static_secrets).filter(([, s]) => s.connection === connection).map(([n]) => n);
    // Audited once the rotations are recorded and queued, also when one secret is then reported
    // missing or a job could not be queued: the rotations that were requested run either way.
    const rotation_ids = await this.rotations.requestMany(names, trigger, {
      reason,
      actor,
      requested: (ids) => this.audit.append({ type: 'static.rotation_requested', actor, detail: { connection, trigger, rotation_ids: ids } }),
    });
    return { rotation_ids };
  }

  async rotationStatus(id: string) {
    const r = /^rot_[A-Za-z0-9_-]{16}$/.test(id) ? await this.statics.rotation(id) : undefined;
    if (!r) throw new DomainError('not_found', 'rotation_not_found', 'no such rotation');
    return this.rotationView(r, true);
  }

  /**
   * Operators (the only callers of GET /v1/rotations/{id}) see the target's error text; policy readers
   * of GET /v1/static/{name} see stable codes instead: `rotation_failed` for a rotation that gave up,
   * `attempt_failed` for a failed attempt that is retried, and for each failed step.
   */
  private rotationView(
    r: { id: string; name: string; target_version: number; trigger: string; reason: string | null; status: string; steps: unknown; error: string | null; created_at: Date; finished_at: Date | null },
    operator: boolean,
  ) {
    const code = r.error === null ? undefined : r.status === 'failed' ? 'rotation_failed' : 'attempt_failed';
    const steps = operator || !Array.isArray(r.steps) ? r.steps : r.steps.map((s: Record<string, unknown>) => (s && s.error !== undefined ? { ...s, error: 'attempt_failed' } : s));
    return {
      rotation_id: r.id,
      name: r.name,
      version: r.target_version,
      trigger: r.trigger,
      reason: r.reason,
      status: r.status,
      steps,
      error: operator ? (r.error ?? undefined) : code,
      created_at: r.created_at.toISOString(),
      finished_at: r.finished_at?.toISOString() ?? null,
    };
  }

  private async authorize(identity: Identity, name: string, action: string): Promise<void> {
    if (this.policy.canReadStatic(identity, name).allowed) return;
    await this.denials.denied({ status: 403, action, target: name, identity });
    throw new DomainError('forbidden', 'policy_denied', `policy does not allow ${identity.subject} to read ${JSON.stringify(name)}`);
  }
}
