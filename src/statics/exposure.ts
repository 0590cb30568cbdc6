import { Inject, Injectable } from '@nestjs/common';
import { PluginError, StoredPasswordVerdict } from '../../plugins/contract';
import { AuditLog } from '../audit/audit.log';
import { newPassword } from '../leases/names';
import { PluginHost } from '../plugin-host/plugin-host';
import { Database } from '../storage/database';
import { EndedSessions, LateLoginSweeps } from './late-logins';
import { RotationBatchRepository } from './rotation-batch.repository';
import { ROTATION_TIMINGS, RotationTimings, Slots, pause } from './rotation.model';
import { StaticSecretConfig } from './static-secrets';
import { StaticRepository, VersionRow } from './static.repository';

/** A secret to contain: its current version (promoted after the exposure at `exposedAt`). */
export interface Containment {
  name: string;
  secret: StaticSecretConfig;
  current: VersionRow;
  exposedAt: Date;
  /** The current account's sessions were not ended when its password was set: end them now. */
  endCurrentSessions: boolean;
}

/** An exposure's last step: every credential from before the current version is destroyed and proved dead. */
@Injectable()
export class ExposureContainment {
  constructor(
    private readonly statics: StaticRepository,
    private readonly batch: RotationBatchRepository,
    @Inject(PluginHost) private readonly plugins: Pick<PluginHost, 'for'>,
    @Inject(Database) private readonly db: Pick<Database, 'tx'>,
    @Inject(AuditLog) private readonly audit: Pick<AuditLog, 'append' | 'appendMany'>,
    @Inject(ROTATION_TIMINGS) private readonly timings: RotationTimings,
    @Inject(LateLoginSweeps) private readonly lateLogins: Pick<LateLoginSweeps, 'record'>,
  ) {}

  /**
   * After a target ended an account's sessions as its password was replaced: the second sweep it asks
   * for (a login begun before the change can still open a session; see LateLoginSweeps), recorded
   * before the rotation goes on.
   */
  sessionsEnded(ended: EndedSessions[]): Promise<void> {
    return this.lateLogins.record(ended);
  }

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
    const [failure] = (await this.containMany([{ name, secret, current, exposedAt, endCurrentSessions }])).values();
    if (failure) throw failure;
  }

  /**
   * `contain` for many secrets: the target's work per secret (within `slots`: one at a time unless shared), the
   * proof for all in one check per connection, and the records for all in one transaction. Returns
   * the secrets that were not contained, with why; the others are.
   */
  async containMany(cs: Containment[], slots = new Slots(1)): Promise<Map<string, Error>> {
    const failed = new Map<string, Error>();
    const destroyed = new Map<string, string[]>();
    if (cs.some((c) => !this.plugins.for(c.secret.connection).capabilities.keyOverlap && (c.secret.usernames ?? []).some((a) => a !== c.current.account))) {
      await pause(this.timings.exposureDrainMs);
    }
    await slots.each(cs, async (c) => {
      try {
        destroyed.set(c.name, await this.destroyOthers(c));
      } catch (err) {
        failed.set(c.name, err as Error);
      }
    });
    const proved = cs.filter((c) => !failed.has(c.name) && !this.plugins.for(c.secret.connection).capabilities.keyOverlap);
    for (const [name, err] of await this.proveDead(proved, slots)) failed.set(name, err);
    const contained = cs.filter((c) => !failed.has(c.name));
    if (!contained.length) return failed;
    await this.db.tx(async (tx) => {
      await this.batch.contained(contained.map((c) => ({ name: c.name, version: c.current.version, exposedAt: c.exposedAt })), tx);
      const events = contained.map((c) => ({ type: 'static.exposure_contained' as const, actor: null, detail: { name: c.name, version: c.current.version, destroyed: destroyed.get(c.name)! } }));
      await this.audit.appendMany(events, tx);
    });
    return failed;
  }

  /** The target's part of containing one secret; returns the accounts whose credentials it destroyed. */
  private async destroyOthers({ name, secret, current, endCurrentSessions }: Containment): Promise<string[]> {
    const plugin = this.plugins.for(secret.connection);
    if (plugin.capabilities.keyOverlap) {
      await plugin.retireStaticSecret({ account: current.account, keep: current.handle ? [current.handle] : [] });
      return [current.account];
    }
    const others = (secret.usernames ?? []).filter((a) => a !== current.account);
    const ended = async (account: string, password?: string) => {
      const { lateLogins } = await plugin.retireStaticSecret({ account, password, endSessions: true });
      await this.sessionsEnded([{ name, connection: secret.connection, account, late: lateLogins }]);
    };
    for (const account of others) await ended(account, newPassword());
    if (endCurrentSessions) await ended(current.account);
    return others;
  }

  /**
   * Before an exposure rotation reports success: the passwords of the versions before the current one
   * (the exposed ones) must be refused, and the current one accepted. This catches what the steps
   * alone would not (a target that kept a secondary password, an account changed behind our back).
   *
   * Where the plugin can (checkStoredPasswords), the answer comes from what the target stores, for all
   * the passwords of a connection in one query: an old password is proved refused when its account
   * stores exactly the secret Tessera set for another password (the new one, or containment's random
   * one). Anything the plugin cannot vouch for (a secret set by someone else, an imported password, an
   * admin that cannot read the stored secrets, a role whose logins were not seen checked by its stored
   * secret under the target's present configuration) is proved by logging in, as without the check.
   * Returns the secrets not proved, with why.
   */
  private async proveDead(cs: Containment[], slots: Slots): Promise<Map<string, Error>> {
    const failed = new Map<string, Error>();
    const befores = cs.length ? await this.batch.versionsBefore(cs.map((c) => ({ name: c.name, version: c.current.version })), 2) : new Map<string, VersionRow[]>();
    const proofs = cs.map((c) => {
      const olds = befores.get(c.name)!.flatMap((v) => {
        const { verify } = this.statics.open(v);
        return verify ? [{ version: v.version, verify }] : [];
      });
      return { c, olds, now: this.statics.open(c.current).verify, verdicts: [] as (StoredPasswordVerdict | undefined)[] };
    });
    for (const connection of new Set(cs.map((c) => c.secret.connection))) {
      const plugin = this.plugins.for(connection);
      const mine = proofs.filter((p) => p.c.secret.connection === connection);
      const checks = mine.flatMap((p) => [...p.olds.map((o) => o.verify), ...(p.now ? [p.now] : [])]);
      if (!plugin.checkStoredPasswords || !checks.length) continue;
      const { results } = await plugin.checkStoredPasswords({ checks: checks.map((v) => ({ account: v.username, password: v.password })) });
      let at = 0;
      for (const p of mine) p.verdicts = results.slice(at, (at += p.olds.length + (p.now ? 1 : 0)));
    }
    await slots.each(proofs, async ({ c, olds, now, verdicts }) => {
      const plugin = this.plugins.for(c.secret.connection);
      try {
        for (const [i, old] of olds.entries()) {
          if (verdicts[i] === 'refused') continue;
          if (verdicts[i] === 'accepted' || (await plugin.verifyLogin(old.verify)).ok) {
            throw new PluginError(`version ${old.version} of ${c.name} still logs in after the exposure rotation`, true, 'exposed_still_works');
          }
        }
        if (!now) return;
        const verdict = verdicts[olds.length];
        if (verdict === 'accepted') return;
        if (verdict === 'refused' || !(await plugin.verifyLogin(now)).ok) throw new PluginError(`the current version of ${c.name} does not log in`, true, 'verify_failed');
      } catch (err) {
        failed.set(c.name, err as Error);
      }
    });
    return failed;
  }
}
