import { Inject, Injectable, Logger } from '@nestjs/common';
import { PluginError } from '../../plugins/contract';
import { AuditLog } from '../audit/audit.log';
import { Clock } from '../common/clock';
import { DomainError } from '../common/errors';
import { CONFIG } from '../config/config.module';
import { TesseraConfig } from '../config/config.loader';
import { Identity } from '../identity/identity';
import { PluginHost } from '../plugin-host/plugin-host';

/**
 * The emergency lever for credentials that cannot be revoked one by one (STS sessions): every session a
 * role issued so far stops working. The cut-off is the next whole second (AWS records token issue
 * times to the second, so a session issued in the second of the request is cut off too), and the answer
 * waits until it has passed, so a credential leased after the answer works.
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
    let targets: string[];
    try {
      ({ targets } = await plugin.revokeSessions({ role: role.settings, before }));
    } catch (err) {
      if (err instanceof PluginError && err.code === 'not_supported') throw notRevocable();
      this.log.warn(`revoking the sessions of role ${role.name} failed at the target: ${(err as Error).message}`);
      const retry = !(err instanceof PluginError) || err.retryable;
      throw new DomainError('unavailable', retry ? 'target_unavailable' : 'target_rejected', `the target did not revoke the sessions of role ${role.name}${retry ? '; try again' : '; an operator can see why in the log'}`);
    }
    await this.audit.append({
      type: 'role.sessions_revoked',
      actor: identity.subject,
      detail: { role: role.name, connection: role.connection, revoked_before: before.toISOString(), targets },
    });
    const wait = before.getTime() - this.clock.now().getTime();
    if (wait > 0) await new Promise((resolve) => setTimeout(resolve, wait));
    return { role: role.name, revoked_before: before.toISOString() };
  }
}
