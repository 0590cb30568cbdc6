import { Inject, Injectable } from '@nestjs/common';
import { PluginError } from '../../plugins/contract';
import { AuditLog } from '../audit/audit.log';
import { newPassword } from '../leases/names';
import { PluginHost } from '../plugin-host/plugin-host';
import { Database } from '../storage/database';
import { ROTATION_TIMINGS, RotationTimings, pause } from './rotation.model';
import { StaticSecretConfig } from './static-secrets';
import { StaticRepository, VersionRow } from './static.repository';

/** An exposure's last step: every credential from before the current version is destroyed and proved dead. */
@Injectable()
export class ExposureContainment {
  constructor(
    private readonly statics: StaticRepository,
    @Inject(PluginHost) private readonly plugins: Pick<PluginHost, 'for'>,
    @Inject(Database) private readonly db: Pick<Database, 'tx'>,
    @Inject(AuditLog) private readonly audit: Pick<AuditLog, 'append'>,
    @Inject(ROTATION_TIMINGS) private readonly timings: RotationTimings,
  ) {}

  /**
   * No credential of the secret from before `current` keeps working. IAM: every key but the current
   * one is deleted. Databases: every configured account that is not the current one gets a random
   * password nobody records, and its sessions are ended (the current account's sessions were ended
   * when its new password was set, or now with `endCurrentSessions`). Grace does not apply. The
   * exposure is cleared only if `exposedAt` is still the latest report.
   */
  async contain(name: string, secret: StaticSecretConfig, exposedAt: Date, endCurrentSessions: boolean): Promise<void> {
    const current = await this.statics.version(name, 'current');
    if (!current) return;
    const plugin = this.plugins.for(secret.connection);
    const destroyed: string[] = [];
    if (plugin.capabilities.keyOverlap) {
      await plugin.retireStaticSecret({ account: current.account, keep: current.handle ? [current.handle] : [] });
      destroyed.push(current.account);
    } else {
      const others = (secret.usernames ?? []).filter((a) => a !== current.account);
      if (others.length) await pause(this.timings.exposureDrainMs);
      for (const account of others) {
        await plugin.retireStaticSecret({ account, password: newPassword(), endSessions: true });
        destroyed.push(account);
      }
      if (endCurrentSessions) await plugin.retireStaticSecret({ account: current.account, endSessions: true });
      await this.proveDead(name, secret, current);
    }
    await this.db.tx(async (tx) => {
      await this.statics.step(name, current.version, 'contained', 'running', undefined, tx);
      await this.statics.contained(name, current.version, exposedAt, tx);
      await this.audit.append({ type: 'static.exposure_contained', actor: null, detail: { name, version: current.version, destroyed } }, tx);
    });
  }

  /**
   * Before an exposure rotation reports success: the passwords of the versions before the current one
   * (the exposed ones) must be refused, and the current one accepted. This catches what the steps
   * alone would not (a target that kept a secondary password, an account changed behind our back).
   *
   * Where the plugin can (checkStoredPasswords), the answer comes from what the target stores, for all
   * the passwords in one query: an old password is proved refused when its account stores exactly the
   * secret Tessera set for another password (the new one, or containment's random one). Anything the
   * plugin cannot vouch for (a secret set by someone else, an imported password, an admin that cannot
   * read the stored secrets, a role whose logins were not seen checked by its stored secret under the
   * target's present configuration) is proved by logging in, as without the check.
   */
  private async proveDead(name: string, secret: StaticSecretConfig, current: VersionRow): Promise<void> {
    const plugin = this.plugins.for(secret.connection);
    const olds = (await this.statics.versionsBefore(name, current.version, 2)).flatMap((v) => {
      const { verify } = this.statics.open(v);
      return verify ? [{ version: v.version, account: v.account, verify }] : [];
    });
    const now = this.statics.open(current).verify;
    const checks = [...olds, ...(now ? [{ version: current.version, account: current.account, verify: now }] : [])];
    const verdicts = plugin.checkStoredPasswords && checks.length
      ? (await plugin.checkStoredPasswords({ checks: checks.map((c) => ({ account: c.account, password: c.verify.password })) })).results
      : [];
    for (const [i, old] of olds.entries()) {
      if (verdicts[i] === 'refused') continue;
      if (verdicts[i] === 'accepted' || (await plugin.verifyLogin(old.verify)).ok) {
        throw new PluginError(`version ${old.version} of ${name} still logs in after the exposure rotation`, true, 'exposed_still_works');
      }
    }
    if (!now) return;
    const verdict = verdicts[olds.length];
    if (verdict === 'accepted') return;
    if (verdict === 'refused' || !(await plugin.verifyLogin(now)).ok) throw new PluginError(`the current version of ${name} does not log in`, true, 'verify_failed');
  }
}
