import { Inject, Injectable, Logger } from '@nestjs/common';
import { PluginError, RevokeSessionsResponse } from '../../plugins/contract';
import { AuditLog } from '../audit/audit.log';
import { Clock } from '../common/clock';
import { DomainError } from '../common/errors';
import { CONFIG } from '../config/config.module';
import { TesseraConfig } from '../config/config.loader';
import { Identity } from '../identity/identity';
import { PluginHost } from '../plugin-host/plugin-host';

/** The plugin's code for a role naming a target outside the connection's reach (see the contract's revokeSessions). */
const ROLE_NOT_IN_ACCOUNT = 'role_not_in_account';

/**
 * The emergency lever for credentials that cannot be revoked one by one (STS sessions): every session a
 * role issued so far stops working. The cut-off is the next whole second (AWS records token issue
 * times to the second, so a session issued in the second of the request is cut off too), and the answer
 * waits until it has passed, so a credential leased after the answer works.
 * Every attempt that reaches the target is audited, with the targets changed and those not (each with
 * the target's error code); an answer that is not 200 names what was not done.
 */
@Injectable()
export class RoleSessionsService {
  private readonly log = new Logger(RoleSessionsService.name);

  constructor(
    @Inject(CONFIG) private readonly config: TesseraConfig,
    private readonly plugins: PluginHost,
    private readonly audit: AuditLog,
    @Inject(Clock) private readonly clock: Clock,
  ) {}

  async revokeSessions(identity: Identity, roleName: string): Promise<{ role: string; revoked_before: string }> {
    const role = this.config.roles.get(roleName);
    if (!role) throw new DomainError('not_found', 'role_not_found', `no role named ${JSON.stringify(roleName)}`);
    const notRevocable = () =>
      new DomainError('conflict', 'sessions_not_revocable', `role ${role.name} has no sessions to revoke: only aws-iam roles with credential_type: assumed_role do`);
    const plugin = this.plugins.for(role.connection);
    if (!plugin.revokeSessions) throw notRevocable();
    const before = new Date(Math.floor(this.clock.now().getTime() / 1000) * 1000 + 1000);
    const audited = { role: role.name, connection: role.connection, revoked_before: before.toISOString() };
    let done: RevokeSessionsResponse;
    try {
      done = await plugin.revokeSessions({ role: role.settings, before });
    } catch (err) {
      if (err instanceof PluginError && err.code === 'not_supported') throw notRevocable();
      // Nothing was changed (the plugin returns once something was): audited all the same.
      const code = err instanceof PluginError ? err.code : 'target_unavailable';
      await this.audit.append({ type: 'role.sessions_revoked', actor: identity.subject, detail: { ...audited, outcome: 'failed', error: code, targets: [], failed: [] } });
      this.log.warn(`revoking the sessions of role ${role.name} failed at the target: ${(err as Error).message}`);
      if (err instanceof PluginError && err.code === ROLE_NOT_IN_ACCOUNT) {
        throw new DomainError('conflict', ROLE_NOT_IN_ACCOUNT, `role ${role.name}: ${err.message}`);
      }
      const retry = !(err instanceof PluginError) || err.retryable;
      throw new DomainError('unavailable', retry ? 'target_unavailable' : 'target_rejected', `the target did not revoke the sessions of role ${role.name}${retry ? '; try again' : '; an operator can see why in the log'}`);
    }
    const failed = done.failed ?? [];
    const outcome = failed.length === 0 ? 'revoked' : done.targets.length === 0 ? 'failed' : 'partial';
    await this.audit.append({
      type: 'role.sessions_revoked',
      actor: identity.subject,
      detail: { ...audited, outcome, targets: done.targets, failed: failed.map(({ target, code }) => ({ target, code })) },
    });
    if (failed.length) {
      for (const f of failed) this.log.warn(`revoking the sessions of role ${role.name} failed at ${f.target}: ${f.message}`);
      const notDone = failed.map((f) => `${f.target} (${f.code})`).join(', ');
      const retry = failed.every((f) => f.retryable);
      const code = outcome === 'partial' ? 'sessions_partly_revoked' : retry ? 'target_unavailable' : 'target_rejected';
      const doneText = done.targets.length ? `revoked on ${done.targets.join(', ')}; ` : '';
      throw new DomainError('unavailable', code, `the sessions of role ${role.name} were not revoked everywhere: ${doneText}not on ${notDone}${retry ? '; try again' : ''}`);
    }
    const wait = before.getTime() - this.clock.now().getTime();
    if (wait > 0) await new Promise((resolve) => setTimeout(resolve, wait));
    return { role: role.name, revoked_before: before.toISOString() };
  }
}
