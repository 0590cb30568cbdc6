import { Inject, Injectable, Logger } from '@nestjs/common';
import { randomBytes } from 'node:crypto';
import { PluginError } from '../../plugins/contract';
import { AuditLog } from '../audit/audit.log';
import { DomainError } from '../common/errors';
import { CONFIG } from '../config/config.module';
import { TesseraConfig } from '../config/config.loader';
import { SecretBox } from '../crypto/secret-box';
import { PermanentJobError } from '../jobs/job-handler';
import { JobProducer } from '../jobs/job.producer';
import { newPassword } from '../leases/names';
import { Metrics } from '../metrics/metrics';
import { PluginHost } from '../plugin-host/plugin-host';
import { Database } from '../storage/database';
import { nextRotation } from './schedule';
import { SealedVersion, StaticSecretConfig, nextAccount, staticConfig } from './static-secrets';
import { StaticRepository, VersionRow } from './static.repository';

export type RotationTrigger = 'cadence' | 'emergency' | 'event' | 'manual' | 'register' | 'retry';

/** A rotation that found another one of the same secret in flight: retry later, it will be done then. */
class RotationBusy extends PluginError {
  constructor(name: string) {
    super(`another rotation of ${name} is in progress`, true, 'rotation_busy');
  }
}

const VERIFY_ATTEMPTS = 5;
/**
 * After an exposed alternating secret flips, how long the account that was current keeps its
 * password: a reader that fetched it an instant before the flip can still log in with it.
 */
const EXPOSURE_DRAIN_MS = 1000;

/** Triggers that report the current credential as leaked (DESIGN §4: the exposed credential dies). */
export const isExposure = (trigger: RotationTrigger) => trigger === 'emergency' || trigger === 'event';

export const newRotationId = () => `rot_${randomBytes(12).toString('base64url')}`;


/**
 * Rotation of static secrets as resumable, idempotent steps: write the encrypted intent (pending
 * version) → set it on the target → verify by logging in → promote to current (the previous version
 * stays usable for `grace`) → audit. The pending version is also the lock: one rotation per secret.
 */
@Injectable()
export class RotationService {
  private readonly log = new Logger(RotationService.name);

  constructor(
    @Inject(CONFIG) private readonly config: TesseraConfig,
    @Inject(Database) private readonly db: Database,
    @Inject(SecretBox) private readonly box: SecretBox,
    private readonly statics: StaticRepository,
    private readonly plugins: PluginHost,
    private readonly jobs: JobProducer,
    private readonly audit: AuditLog,
    private readonly metrics: Metrics,
  ) {}

  /** Records a request and enqueues its job; returns the rotation id to poll. */
  async request(name: string, trigger: RotationTrigger, opts: { reason?: string; actor?: string } = {}): Promise<{ rotation_id: string; status: 'queued' }> {
    // Exposure is marked before the target version is read: any version promoted after the mark is
    // one whose credentials nobody had at the trigger.
    if (isExposure(trigger)) await this.statics.markExposed(name);
    const row = await this.statics.get(name);
    if (!row) throw new DomainError('not_found', 'static_not_found', `no static secret named ${JSON.stringify(name)}`);
    const target = (row.current_version ?? 0) + 1;
    const id = newRotationId();
    await this.statics.createRotation({ id, name, target, trigger, reason: opts.reason, requestedBy: opts.actor });
    await this.jobs.rotate(name, target, isExposure(trigger));
    return { rotation_id: id, status: 'queued' };
  }

  /** The job: brings the secret to `target`, resuming whatever an earlier attempt or a crash left. */
  async rotate(name: string, target: number, lastAttempt: boolean): Promise<void> {
    const done = await this.statics.withLock(name, async () => {
      await this.rotateLocked(name, target, lastAttempt);
      return true;
    });
    if (!done) throw new RotationBusy(name);
  }

  private async rotateLocked(name: string, target: number, lastAttempt: boolean): Promise<void> {
    const secret = staticConfig(this.config, name);
    const row = await this.statics.get(name);
    if (!secret || !row) return;
    // Exposed: this rotation (whatever triggered it) must also destroy every earlier credential.
    const exposedAt = row.exposed_at;
    if ((row.current_version ?? 0) >= target) {
      // Another rotation got there first. If it made the current version after the exposure was
      // reported, it may still have kept the old credentials alive (grace): destroy them now, and end
      // the current account's sessions too, since some may have been opened with the old password.
      // (A current version from before the report is itself exposed: the exposure's own rotation,
      // to a later version, deals with it.)
      const current = exposedAt ? await this.statics.version(name, 'current') : undefined;
      if (exposedAt && current?.promoted_at && current.promoted_at > exposedAt) {
        return this.guarded(name, target, secret, lastAttempt, undefined, undefined, () => this.contain(name, secret, exposedAt, true));
      }
      await this.statics.step(name, target, 'already_rotated', exposedAt ? 'running' : 'succeeded');
      return;
    }
    await this.statics.step(name, target, 'started', 'running');
    const current = await this.statics.version(name, 'current');
    let pending = await this.statics.version(name, 'pending');
    // Once the new version is promoted, a failure must never set the old password back (it may be the
    // exposed one, and the stored current version is the new one).
    let promoted = false;
    await this.guarded(name, target, secret, lastAttempt, current, () => (promoted ? undefined : pending), async () => {
      if (pending && pending.version !== target) throw new RotationBusy(name);
      pending ??= await this.writeIntent(name, target, secret, current);
      const result = await this.setOnTarget(secret, pending, current, Boolean(exposedAt));
      await this.statics.step(name, target, 'set', 'running');
      await this.verify(secret, result);
      await this.statics.step(name, target, 'verified', 'running');
      // Exposure is read again under the secret's row lock: a report that came in while this rotation
      // ran (it started as a routine one) makes it an exposure rotation from here on.
      const exposedNow = await this.db.tx(async (tx) => {
        const exposure = await this.statics.exposure(name, tx);
        await this.statics.promote(name, target, exposure ? 0 : secret.grace, nextRotation(secret, new Date()), tx, { finish: !exposure });
        await this.audit.append({ type: 'static.rotated', actor: null, detail: { name, version: target, account: pending!.account, exposed: Boolean(exposure) } }, tx);
        return exposure;
      });
      promoted = true;
      // Sessions were ended when the password was set only if the rotation knew of the exposure then.
      if (exposedNow) await this.contain(name, secret, exposedNow, !exposedAt);
      this.metrics.rotations.inc({ result: 'succeeded' });
    });
  }

  /**
   * Runs a rotation's steps; on failure records the error and either lets the job retry (after putting
   * the current password back, for single) or, on the last attempt, gives up.
   */
  private async guarded(
    name: string,
    target: number,
    secret: StaticSecretConfig,
    lastAttempt: boolean,
    current: VersionRow | undefined,
    pending: (() => VersionRow | undefined) | undefined,
    steps: () => Promise<void>,
  ): Promise<void> {
    try {
      await steps();
    } catch (err) {
      const message = err instanceof Error ? err.message : String(err);
      const final = lastAttempt || (err instanceof PluginError && !err.retryable && !(err instanceof RotationBusy));
      if (final) {
        // The secret is marked rotation_failed before the rotation reads `failed`, so whoever polls
        // the rotation sees the secret's final state too.
        await this.giveUp(name, target, secret, message);
        await this.statics.step(name, target, 'error', 'failed', message);
        throw new PermanentJobError(message, { cause: err });
      }
      await this.statics.step(name, target, 'error', 'running', message);
      // single: readers still get the current password, so put it back on the target until the
      // next attempt (which sets the pending one again); the lock-out window is one attempt long.
      if (pending) await this.restoreCurrent(secret, current, pending()).catch(() => undefined);
      throw err;
    }
  }

  /**
   * The exposure's last step: no credential of the secret from before `current` keeps working. IAM:
   * every key but the current one is deleted. Databases: every configured account that is not the
   * current one gets a random password nobody records, and its sessions are ended (the current
   * account's sessions were ended when its new password was set, or now with `endCurrentSessions`).
   * Grace does not apply.
   */
  private async contain(name: string, secret: StaticSecretConfig, exposedAt: Date, endCurrentSessions: boolean): Promise<void> {
    const current = await this.statics.version(name, 'current');
    if (!current) return;
    const plugin = this.plugins.for(secret.connection);
    const destroyed: string[] = [];
    if (plugin.capabilities.keyOverlap) {
      await plugin.retireStaticSecret({ account: current.account, keep: current.handle ? [current.handle] : [] });
      destroyed.push(current.account);
    } else {
      const others = (secret.usernames ?? []).filter((a) => a !== current.account);
      if (others.length) await new Promise((r) => setTimeout(r, EXPOSURE_DRAIN_MS));
      for (const account of others) {
        const password = newPassword();
        await plugin.retireStaticSecret({ account, password, endSessions: true });
        destroyed.push(account);
      }
      if (endCurrentSessions) await plugin.retireStaticSecret({ account: current.account, endSessions: true });
      await this.proveDead(name, secret, current);
    }
    await this.statics.step(name, current.version, 'contained', 'running');
    await this.db.tx(async (tx) => {
      await this.statics.contained(name, current.version, exposedAt, tx);
      await this.audit.append({ type: 'static.exposure_contained', actor: null, detail: { name, version: current.version, destroyed } }, tx);
    });
  }

  /**
   * Before an exposure rotation reports success: the passwords of the versions before the current one
   * (the exposed ones) must be refused, and the current one accepted. This catches what the steps
   * alone would not (a target that kept a secondary password, an account changed behind our back).
   */
  private async proveDead(name: string, secret: StaticSecretConfig, current: VersionRow): Promise<void> {
    const plugin = this.plugins.for(secret.connection);
    for (const old of await this.statics.versionsBefore(name, current.version, 2)) {
      const { verify } = this.open(old);
      if (verify && (await plugin.verifyLogin(verify)).ok) {
        throw new PluginError(`version ${old.version} of ${name} still logs in after the exposure rotation`, true, 'exposed_still_works');
      }
    }
    const { verify } = this.open(current);
    if (verify && !(await plugin.verifyLogin(verify)).ok) throw new PluginError(`the current version of ${name} does not log in`, true, 'verify_failed');
  }

  /** Step 1: the new version, sealed, before anything touches the target. */
  private async writeIntent(name: string, target: number, secret: StaticSecretConfig, current: VersionRow | undefined): Promise<VersionRow> {
    const account = nextAccount(secret, current?.account);
    const sealed = this.seal(name, target, { password: newPassword() });
    if (!(await this.statics.insertPending({ name, version: target, account, sealed }))) throw new RotationBusy(name);
    await this.statics.step(name, target, 'intent', 'running');
    return (await this.statics.version(name, 'pending'))!;
  }

  /** Step 2: idempotent. A key-making target's result is sealed at once, so a crash cannot lose it. */
  private async setOnTarget(secret: StaticSecretConfig, pending: VersionRow, current: VersionRow | undefined, endSessions: boolean) {
    const intent = this.open(pending);
    // A key made by an earlier attempt is reused (making another would orphan it); a password is set
    // again every attempt, since a failed attempt put the current one back.
    const plugin = this.plugins.for(secret.connection);
    if (intent.credentials && intent.verify && plugin.capabilities.keyOverlap && pending.handle) return { credentials: intent.credentials, verify: intent.verify };
    const result = await plugin.setStaticSecret({ account: pending.account, password: intent.password!, keep: current?.handle ? [current.handle] : [], endSessions });
    const sealed = this.seal(pending.name, pending.version, { password: intent.password, credentials: result.credentials, verify: result.verify });
    await this.statics.updatePending(pending.name, pending.version, sealed, result.handle);
    return result;
  }

  /** Step 3: log in with the new secret (a few tries: IAM keys take seconds to work everywhere). */
  private async verify(secret: StaticSecretConfig, result: { verify: { username: string; password: string; keyId?: string } }): Promise<void> {
    for (let attempt = 1; ; attempt++) {
      if ((await this.plugins.for(secret.connection).verifyLogin(result.verify)).ok) return;
      if (attempt >= VERIFY_ATTEMPTS) throw new PluginError('the new secret does not log in', true, 'verify_failed');
      await new Promise((r) => setTimeout(r, 250 * attempt));
    }
  }

  /**
   * single strategy: sets the current password back on the target after a failed attempt. Only for
   * password targets whose pending version rewrites the current account; key targets (IAM) keep the
   * current key untouched by construction.
   */
  private async restoreCurrent(secret: StaticSecretConfig, current: VersionRow | undefined, pending: VersionRow | undefined): Promise<boolean> {
    const plugin = this.plugins.for(secret.connection);
    if (!current || !pending || current.account !== pending.account || plugin.capabilities.keyOverlap) return true;
    const old = this.open(current);
    if (!old.password) return true;
    await plugin.setStaticSecret({ account: current.account, password: old.password });
    return true;
  }

  /**
   * After the last attempt: undo what can be undone so the current version keeps working (single: the
   * current password is set back; IAM: a new key that was recorded is deleted, and the current key is
   * never touched), mark the secret rotation_failed (retried after a pause), and say so in a metric and
   * the audit trail. What cannot be undone (target unreachable, or an IAM key whose id was never
   * recorded) stays pending: the next rotation resumes it.
   */
  private async giveUp(name: string, target: number, secret: StaticSecretConfig, error: string): Promise<void> {
    const pending = await this.statics.version(name, 'pending');
    const current = await this.statics.version(name, 'current');
    let undone = !pending;
    if (pending) {
      try {
        const plugin = this.plugins.for(secret.connection);
        if (!plugin.capabilities.keyOverlap) {
          undone = await this.restoreCurrent(secret, current, pending);
        } else if (pending.handle) {
          // A key made and recorded: delete it. One made but never recorded cannot be found; it stays
          // pending and the next rotation resumes it.
          await plugin.retireStaticSecret({ account: pending.account, handle: pending.handle });
          undone = true;
        }
      } catch (err) {
        this.log.warn(`rotation of ${name} could not be undone (it will be resumed): ${(err as Error).message}`);
      }
      if (undone) await this.statics.deletePending(name, pending.version);
    }
    await this.db.tx(async (tx) => {
      await this.statics.markFailed(name, error, Math.max(5, this.config.reconcile_every * 4), tx);
      await this.audit.append({ type: 'static.rotation_failed', actor: null, detail: { name, version: target, error, undone } }, tx);
    });
    this.metrics.rotations.inc({ result: 'failed' });
  }

  /**
   * Takes ownership of a secret not owned yet: imports a configured password (after checking it logs
   * in), else rotates once. Under the secret's lock, so replicas starting together do it once.
   */
  async takeOwnership(name: string): Promise<void> {
    const secret = staticConfig(this.config, name);
    if (!secret) return;
    await this.statics.withLock(name, async () => {
      const row = await this.statics.get(name);
      if (!row || row.status !== 'unowned' || (await this.statics.version(name, 'pending'))) return;
      if (secret.password === undefined) {
        await this.statics.ensureRotation(name, 1, 'register', newRotationId());
        await this.jobs.rotate(name, 1, false);
        return;
      }
      const account = nextAccount(secret, undefined);
      const plugin = this.plugins.for(secret.connection);
      const result = await plugin.setStaticSecret({ account, password: secret.password, apply: false });
      // A target that cannot be reached is not a wrong password: stay unowned, and try again next sweep.
      if (!(await plugin.verifyLogin(result.verify)).ok) {
        await this.statics.markFailed(name, 'the configured password does not log in; Tessera will rotate it', 0);
        return;
      }
      const sealed = this.seal(name, 1, { password: secret.password, credentials: result.credentials, verify: result.verify });
      if (!(await this.statics.insertPending({ name, version: 1, account, sealed }))) return;
      await this.db.tx(async (tx) => {
        await this.statics.promote(name, 1, secret.grace, nextRotation(secret, new Date()), tx);
        await this.audit.append({ type: 'static.imported', actor: null, detail: { name, version: 1, account } }, tx);
      });
    });
  }

  /**
   * Previous versions past their grace are destroyed, so no superseded credential works forever: IAM
   * keys are deleted; an alternating secret's previous account gets a random password nobody records
   * and its sessions are ended. (single: the account's one password was already replaced.) Under the
   * secret's lock, so it never races a rotation that is setting that account's next password.
   */
  async retireExpired(): Promise<void> {
    for (const v of await this.statics.toRetire()) {
      const secret = staticConfig(this.config, v.name);
      if (!secret) continue;
      await this.statics
        .withLock(v.name, async () => {
          const current = await this.statics.version(v.name, 'current');
          const plugin = this.plugins.for(secret.connection);
          if (plugin.capabilities.keyOverlap) {
            if (v.handle) await plugin.retireStaticSecret({ account: v.account, handle: v.handle });
          } else if (current && current.account !== v.account) {
            await plugin.retireStaticSecret({ account: v.account, password: newPassword(), endSessions: true });
          }
          await this.statics.markRetired(v.name, v.version);
        })
        .catch((err) => this.log.warn(`retiring version ${v.version} of ${v.name} (retried next sweep): ${(err as Error).message}`));
    }
  }

  seal(name: string, version: number, content: SealedVersion) {
    return this.box.seal(JSON.stringify(content), `static:${name}:v${version}`);
  }

  open(v: Pick<VersionRow, 'name' | 'version' | 'key_id' | 'sealed'>): SealedVersion {
    return JSON.parse(this.box.open({ keyId: v.key_id, blob: v.sealed }, `static:${v.name}:v${v.version}`));
  }
}
