import { Inject, Injectable, Logger } from '@nestjs/common';
import { PluginError } from '../../plugins/contract';
import { AuditLog } from '../audit/audit.log';
import { Clock } from '../common/clock';
import { DomainError } from '../common/errors';
import { CONFIG } from '../config/config.module';
import { TesseraConfig } from '../config/config.loader';
import { PermanentJobError } from '../jobs/job-handler';
import { JobProducer } from '../jobs/job.producer';
import { JobName, QueueName } from '../jobs/jobs';
import { newPassword } from '../leases/names';
import { Metrics } from '../metrics/metrics';
import { PluginHost } from '../plugin-host/plugin-host';
import { Database } from '../storage/database';
import { ExposureContainment } from './exposure';
import { ROTATION_TIMINGS, RotationBusy, RotationTimings, RotationTrigger, isExposure, isPermanent, newRotationId, pause, rotatesInBatches } from './rotation.model';
import { nextRotation } from './schedule';
import { StaticSecretConfig, nextAccount, staticConfig } from './static-secrets';
import { StaticRepository, VersionRow } from './static.repository';

const VERIFY_ATTEMPTS = 5;
/** Secrets per batch job of an emergency (see RotationBatchService). */
const BATCH_SIZE = 100;

/**
 * Rotating static secrets: requests, the job's steps, undoing a failed attempt, retiring after grace.
 *
 * A rotation runs as resumable, idempotent steps: write the encrypted intent (pending version) → set
 * it on the target → verify by logging in → promote to current (the previous version stays usable
 * for `grace`) → audit. The pending version is also the lock: one rotation per secret.
 */
@Injectable()
export class RotationService {
  private readonly log = new Logger(RotationService.name);

  constructor(
    @Inject(CONFIG) private readonly config: TesseraConfig,
    @Inject(Database) private readonly db: Pick<Database, 'tx'>,
    private readonly statics: StaticRepository,
    @Inject(PluginHost) private readonly plugins: Pick<PluginHost, 'for'>,
    @Inject(JobProducer) private readonly jobs: Pick<JobProducer, 'enqueue'>,
    @Inject(AuditLog) private readonly audit: Pick<AuditLog, 'append'>,
    private readonly metrics: Metrics,
    private readonly clock: Clock,
    private readonly exposure: ExposureContainment,
    @Inject(ROTATION_TIMINGS) private readonly timings: RotationTimings,
  ) {}

  /** Records a request and enqueues its job; returns the rotation id to poll. */
  async request(name: string, trigger: RotationTrigger, opts: { reason?: string; actor?: string } = {}): Promise<{ rotation_id: string; status: 'queued' }> {
    const [rotation_id] = await this.requestMany([name], trigger, opts);
    return { rotation_id, status: 'queued' };
  }

  /**
   * Requests for many secrets at once (an emergency on a whole connection): the same records and jobs
   * as one `request` each, in a few statements for all, so the last secret's job is not queued behind
   * thousands of round trips. Returns the rotation ids in the order of `names`. A name with no row gets
   * no rotation and is reported not_found, after the others are queued and `requested` has been told
   * their ids.
   */
  async requestMany(
    names: string[],
    trigger: RotationTrigger,
    opts: { reason?: string; actor?: string; requested?: (rotationIds: string[]) => Promise<void> } = {},
  ): Promise<string[]> {
    // Exposure is marked before the target versions are read: any version promoted after the mark is
    // one whose credentials nobody had at the trigger.
    if (isExposure(trigger)) await this.statics.markExposed(names);
    const rows = new Map((await this.statics.getMany(names)).map((r) => [r.name, r]));
    const requests = names
      .filter((name) => rows.has(name))
      .map((name) => ({ id: newRotationId(), name, target: (rows.get(name)!.current_version ?? 0) + 1, trigger, reason: opts.reason, requestedBy: opts.actor }));
    await this.statics.createRotations(requests);
    // Every job is attempted even if one cannot be queued (the sweeper resumes an exposed secret whose
    // job is missing); the first error is then reported.
    const queued = await Promise.allSettled(this.enqueueAll(requests, isExposure(trigger)));
    // What was requested is the caller's to record (its audit event), whatever is reported after.
    await opts.requested?.(requests.map((r) => r.id));
    const failed = queued.find((q): q is PromiseRejectedResult => q.status === 'rejected');
    if (failed) throw failed.reason;
    const missing = names.find((name) => !rows.has(name));
    if (missing !== undefined) throw new DomainError('not_found', 'static_not_found', `no static secret named ${JSON.stringify(missing)}`);
    return requests.map((r) => r.id);
  }

  /** The sweeper's and registration's rotations: a record unless one already waits for `target`, and its job. */
  async schedule(name: string, target: number, trigger: RotationTrigger, emergency: boolean): Promise<void> {
    await this.statics.ensureRotation(name, target, trigger, newRotationId());
    await this.enqueue(name, target, emergency);
  }

  /** The job: brings the secret to `target`, resuming whatever an earlier attempt or a crash left. */
  async rotate(name: string, target: number, lastAttempt: boolean): Promise<void> {
    const done = await this.statics.withLock(name, async () => {
      await this.rotateLocked(name, target, lastAttempt);
      return true;
    });
    if (!done) throw new RotationBusy(name, true);
  }

  /**
   * The jobs of many requests. Exposure rotations of password targets go in batches of up to
   * BATCH_SIZE per connection (RotationBatchService); the rest, and a request alone, one job each.
   */
  private enqueueAll(requests: { id: string; name: string; target: number }[], emergency: boolean): Promise<string>[] {
    const open = new Map<string, typeof requests>();
    const chunks: (typeof requests)[] = [];
    const singles: typeof requests = [];
    for (const r of requests) {
      const connection = staticConfig(this.config, r.name)?.connection;
      if (!emergency || requests.length < 2 || connection === undefined || !rotatesInBatches(this.plugins.for(connection))) {
        singles.push(r);
        continue;
      }
      let chunk = open.get(connection);
      if (!chunk || chunk.length === BATCH_SIZE) {
        chunk = [];
        chunks.push(chunk);
        open.set(connection, chunk);
      }
      chunk.push(r);
    }
    return [
      ...singles.map((r) => this.enqueue(r.name, r.target, emergency)),
      ...chunks.map((rs) =>
        this.jobs.enqueue(JobName.RotateStaticBatch, { batchId: rs[0].id, rotations: rs.map((r) => ({ name: r.name, targetVersion: r.target })) }, { queue: QueueName.Emergency }),
      ),
    ];
  }

  private enqueue(name: string, targetVersion: number, emergency: boolean): Promise<string> {
    return this.jobs.enqueue(JobName.RotateStatic, { name, targetVersion }, { queue: emergency ? QueueName.Emergency : QueueName.Rotations });
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
        return this.guarded(name, target, secret, lastAttempt, undefined, undefined, () => this.exposure.contain(name, secret, exposedAt, true));
      }
      await this.statics.step(name, target, 'already_rotated', exposedAt ? 'running' : 'succeeded');
      return;
    }
    const { current, pending: inFlight, trigger } = await this.statics.start(name, target);
    let pending = inFlight;
    // Once the new version is promoted, a failure must never set the old password back (it may be the
    // exposed one, and the stored current version is the new one).
    let promoted = false;
    await this.guarded(name, target, secret, lastAttempt, current, () => (promoted ? undefined : pending), async () => {
      if (pending && pending.version !== target) throw new RotationBusy(name);
      pending ??= await this.writeIntent(name, target, secret, current);
      const result = await this.setOnTarget(name, target, secret, pending, current, Boolean(exposedAt));
      await this.verify(secret, result);
      // Exposure is read again under the secret's row lock: a report that came in while this rotation
      // ran (it started as a routine one) makes it an exposure rotation from here on. The verified
      // step is recorded with the promotion.
      const exposedNow = await this.db.tx(async (tx) => {
        const exposure = await this.statics.exposure(name, tx);
        await this.statics.step(name, target, 'verified', 'running', undefined, tx);
        await this.statics.promote(name, target, exposure ? 0 : secret.grace, nextRotation(secret, this.clock.now()), tx, { finish: !exposure });
        await this.audit.append({ type: 'static.rotated', actor: null, detail: { name, version: target, account: pending!.account, exposed: Boolean(exposure) } }, tx);
        return exposure;
      });
      promoted = true;
      // Sessions were ended when the password was set only if the rotation knew of the exposure then.
      if (exposedNow) await this.exposure.contain(name, secret, exposedNow, !exposedAt);
      await this.counted('succeeded', name, target, trigger);
    });
  }

  /**
   * Runs a rotation's steps; on failure records the error and either lets the job retry (after putting
   * the current password back, for single and not exposed) or, on the last attempt or a permanent error, gives up.
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
      if (lastAttempt || isPermanent(err)) {
        // The secret is marked rotation_failed before the rotation reads `failed`, so whoever polls
        // the rotation sees the secret's final state too.
        await this.giveUp(name, target, secret, message);
        await this.statics.step(name, target, 'error', 'failed', message);
        throw new PermanentJobError(message, { cause: err });
      }
      await this.statics.step(name, target, 'error', 'running', message);
      // single: readers still get the current password, so put it back on the target until the
      // next attempt (which sets the pending one again); the lock-out window is one attempt long.
      if (pending) await this.restoreCurrent(name, secret, current, pending()).catch(() => undefined);
      throw err;
    }
  }

  /** Step 1: the new version, sealed, before anything touches the target (one statement with its step). */
  private async writeIntent(name: string, target: number, secret: StaticSecretConfig, current: VersionRow | undefined): Promise<VersionRow> {
    const account = nextAccount(secret, current?.account);
    const pending = await this.statics.insertPending({ name, version: target, account, content: { password: newPassword() } }, 'intent');
    if (!pending) throw new RotationBusy(name);
    return pending;
  }

  /**
   * Step 2: idempotent. A key-making target's result is sealed at once, so a crash cannot lose it; the
   * `set` step is recorded with it (one statement).
   */
  private async setOnTarget(name: string, target: number, secret: StaticSecretConfig, pending: VersionRow, current: VersionRow | undefined, endSessions: boolean) {
    const intent = this.statics.open(pending);
    // A key made by an earlier attempt is reused (making another would orphan it); a password is set
    // again every attempt, since a failed attempt put the current one back.
    const plugin = this.plugins.for(secret.connection);
    if (intent.credentials && intent.verify && plugin.capabilities.keyOverlap && pending.handle) {
      await this.statics.step(name, target, 'set', 'running');
      return { credentials: intent.credentials, verify: intent.verify };
    }
    const result = await plugin.setStaticSecret({ account: pending.account, password: intent.password!, keep: current?.handle ? [current.handle] : [], endSessions });
    await this.exposure.sessionsEnded([{ name, connection: secret.connection, account: pending.account, late: result.lateLogins }]);
    await this.statics.updatePending(pending.name, pending.version, { password: intent.password, credentials: result.credentials, verify: result.verify }, result.handle, 'set');
    return result;
  }

  /**
   * Step 3: the new secret logs in. Where the plugin can vouch for it from what the target stores
   * (checkStoredPasswords: the stored secret is exactly the one set, on an account that may log in,
   * whose logins the target was seen checking by that secret), that is the proof; otherwise log in (a
   * few tries: IAM keys take seconds to work everywhere).
   */
  private async verify(secret: StaticSecretConfig, result: { verify: { username: string; password: string; keyId?: string } }): Promise<void> {
    const plugin = this.plugins.for(secret.connection);
    if (plugin.checkStoredPasswords) {
      const { results } = await plugin.checkStoredPasswords({ checks: [{ account: result.verify.username, password: result.verify.password }] });
      if (results[0] === 'accepted') return;
    }
    for (let attempt = 1; ; attempt++) {
      if ((await plugin.verifyLogin(result.verify)).ok) return;
      if (attempt >= VERIFY_ATTEMPTS) throw new PluginError('the new secret does not log in', true, 'verify_failed');
      await pause(this.timings.verifyBackoffMs * attempt);
    }
  }

  /**
   * single strategy: sets the current password back on the target after a failed attempt. Only for
   * password targets whose pending version rewrites the current account; key targets (IAM) keep the
   * current key untouched by construction. False (not undone) for an exposed secret.
   */
  private async restoreCurrent(name: string, secret: StaticSecretConfig, current: VersionRow | undefined, pending: VersionRow | undefined): Promise<boolean> {
    const plugin = this.plugins.for(secret.connection);
    if (!current || !pending || current.account !== pending.account || plugin.capabilities.keyOverlap) return true;
    // The current password of an exposed secret is the leaked one: it is never put back. Its readers
    // cannot log in until a retry (which sets the pending password again) gets through.
    if ((await this.statics.get(name))?.exposed_at) return false;
    const old = this.statics.open(current);
    if (!old.password) return true;
    await plugin.setStaticSecret({ account: current.account, password: old.password });
    // Reported leaked between the check and the write: the password just put back is the leaked one.
    const next = this.statics.open(pending).password;
    if (!(await this.statics.get(name))?.exposed_at || !next) return true;
    const { lateLogins } = await plugin.setStaticSecret({ account: pending.account, password: next, endSessions: true });
    await this.exposure.sessionsEnded([{ name, connection: secret.connection, account: pending.account, late: lateLogins }]);
    return false;
  }

  /**
   * After the last attempt: undo what can be undone so the current version keeps working (single: the
   * current password is set back, unless it is exposed; IAM: a new key that was recorded is deleted, and the current key is
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
          undone = await this.restoreCurrent(name, secret, current, pending);
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
    await this.counted('failed', name, target);
  }

  /** The rotations metric; `trigger` when the caller knows it already. */
  private async counted(result: 'succeeded' | 'failed', name: string, target: number, trigger?: string): Promise<void> {
    this.metrics.rotated(result, trigger ?? (await this.statics.rotationTrigger(name, target).catch(() => undefined)));
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
            const { lateLogins } = await plugin.retireStaticSecret({ account: v.account, password: newPassword(), endSessions: true });
            await this.exposure.sessionsEnded([{ name: v.name, connection: secret.connection, account: v.account, late: lateLogins }]);
          }
          await this.statics.markRetired(v.name, v.version);
        })
        .catch((err) => this.log.warn(`retiring version ${v.version} of ${v.name} (retried next sweep): ${(err as Error).message}`));
    }
  }
}
