import { Inject, Injectable, Logger } from '@nestjs/common';
import type { LateLogins, VerifyRequest } from '../../plugins/contract';
import { AuditLog } from '../audit/audit.log';
import { Clock } from '../common/clock';
import { CONFIG } from '../config/config.module';
import { TesseraConfig } from '../config/config.loader';
import { JobContext, OnJob } from '../jobs/job-handler';
import { JobName, JobPayloads } from '../jobs/jobs';
import { newPassword } from '../leases/names';
import { Metrics } from '../metrics/metrics';
import { PluginHost } from '../plugin-host/plugin-host';
import { Database } from '../storage/database';
import { Containment, ExposureContainment } from './exposure';
import { BatchItem, RotationBatchRepository } from './rotation-batch.repository';
import { RotationService } from './rotation.service';
import { Slots, rotatesInBatches } from './rotation.model';
import { nextRotation } from './schedule';
import { StaticSecretConfig, nextAccount, staticConfig } from './static-secrets';
import { StaticRepository, VersionRow } from './static.repository';

/**
 * Target calls (set, log in, contain) all batches of a process make at once: as many as the emergency
 * queue's workers would one by one (each login is a connection of its own on the target).
 */
const TARGET_CONCURRENCY = 16;

interface Fresh extends BatchItem {
  secret: StaticSecretConfig;
  exposedAt: Date | null;
  trigger?: string;
  pending: VersionRow;
  password: string;
}

/** A secret whose new password is set on the target, with what its version seals. */
type SetOnTarget = Fresh & { content: { password: string; credentials: Record<string, string | number>; verify: VerifyRequest }; lateLogins?: LateLogins };

/**
 * An emergency on a whole connection rotates its secrets in batches: the steps of RotationService's
 * rotation, each written for the whole batch in one statement (intent, set, verified and promoted,
 * contained), with the target's work per secret in between. Only the way on which nothing goes wrong
 * is batched: a secret whose lock is taken, which has a rotation in flight, or whose step fails on the
 * target is handed to its own RotateStatic job, which resumes from the last step recorded (the steps
 * are the same rows either way). A batch run again after a crash finds its secrets' rotations begun
 * and hands them all over the same way.
 */
@Injectable()
export class RotationBatchService {
  private readonly log = new Logger(RotationBatchService.name);
  private readonly slots = new Slots(TARGET_CONCURRENCY);

  constructor(
    @Inject(CONFIG) private readonly config: TesseraConfig,
    @Inject(Database) private readonly db: Pick<Database, 'tx'>,
    private readonly statics: StaticRepository,
    private readonly batch: RotationBatchRepository,
    @Inject(PluginHost) private readonly plugins: Pick<PluginHost, 'for'>,
    private readonly rotations: RotationService,
    @Inject(AuditLog) private readonly audit: Pick<AuditLog, 'appendMany'>,
    private readonly metrics: Metrics,
    private readonly clock: Clock,
    private readonly exposure: ExposureContainment,
  ) {}

  @OnJob(JobName.RotateStaticBatch)
  async run({ rotations }: JobPayloads[JobName.RotateStaticBatch], _ctx: JobContext): Promise<void> {
    const items = rotations.map((r) => ({ name: r.name, target: r.targetVersion }));
    const done = new Set<string>();
    try {
      await this.batch.withLocks(
        items.map((i) => i.name),
        async (locked) => {
          const mine = new Set(locked);
          await this.rotate(
            items.filter((i) => mine.has(i.name)),
            done,
          );
        },
      );
    } catch (err) {
      this.log.warn(`a batch of ${items.length} rotations stopped (each goes on in its own job): ${(err as Error).message}`);
    }
    // Whatever the batch did not finish goes on one by one; if this throws, the batch runs again and
    // hands over again (jobs are deduplicated by id).
    await Promise.all(items.filter((i) => !done.has(i.name)).map((i) => this.rotations.schedule(i.name, i.target, 'retry', true)));
  }

  /** The batch's steps for the secrets it holds the locks of; `done` gets the ones it finished. */
  private async rotate(items: BatchItem[], done: Set<string>): Promise<void> {
    if (!items.length) return;
    const rows = new Map((await this.statics.getMany(items.map((i) => i.name))).map((r) => [r.name, r]));
    const eligible = items.filter((i) => {
      const secret = staticConfig(this.config, i.name);
      const row = rows.get(i.name);
      return secret && row && row.status !== 'unowned' && rotatesInBatches(this.plugins.for(secret.connection)) && (row.current_version ?? 0) + 1 === i.target;
    });
    if (!eligible.length) return;
    const started = await this.batch.start(eligible);
    // Step 1: the intents, sealed, for every secret with no rotation in flight.
    const intents = eligible.flatMap((i) => {
      const s = started.get(i.name);
      if (!s || s.pending) return [];
      const secret = staticConfig(this.config, i.name)!;
      const account = nextAccount(secret, s.current?.account);
      return [{ ...i, secret, trigger: s.trigger, exposedAt: rows.get(i.name)!.exposed_at, account, password: newPassword() }];
    });
    if (!intents.length) return;
    const written = new Map(
      (await this.batch.insertPending(intents.map((i) => ({ name: i.name, version: i.target, account: i.account, content: { password: i.password } })))).map((v) => [v.name, v]),
    );
    const fresh: Fresh[] = intents.flatMap((i) => (written.has(i.name) ? [{ ...i, pending: written.get(i.name)! }] : []));
    // Step 2: set on the target (ending the sessions of an exposed account), then recorded sealed.
    const set: SetOnTarget[] = [];
    await this.slots.each(fresh, async (f) => {
      const result = await this.plugins
        .for(f.secret.connection)
        .setStaticSecret({ account: f.pending.account, password: f.password, keep: [], endSessions: Boolean(f.exposedAt) })
        .catch((err: Error) => this.log.warn(`rotation of ${f.name}: ${err.message}`));
      if (result) set.push({ ...f, content: { password: f.password, credentials: result.credentials, verify: result.verify }, lateLogins: result.lateLogins });
    });
    if (!set.length) return;
    await this.exposure.sessionsEnded(set.map((s) => ({ name: s.name, connection: s.secret.connection, account: s.pending.account, late: s.lateLogins })));
    const recorded = await this.batch.updatePending(set.map((s) => ({ name: s.name, version: s.target, content: s.content })));
    // Step 3: verified, from what the target stores where it can vouch, else by logging in.
    const verified = await this.verify(set.flatMap((s) => (recorded.has(s.name) ? [{ ...s, pending: recorded.get(s.name)! }] : [])));
    if (!verified.length) return;
    // Step 4: promoted, exposure read again under each secret's row lock (as in RotationService).
    const now = this.clock.now();
    const promotedNow = await this.db.tx(async (tx) => {
      const exposures = await this.batch.exposures(
        verified.map((v) => v.name),
        tx,
      );
      await this.batch.step(verified, 'verified', tx);
      const promoted = await this.batch.promote(
        verified.map((v) => {
          const exposed = exposures.get(v.name) ?? null;
          return { name: v.name, version: v.target, grace: exposed ? 0 : v.secret.grace, nextAt: nextRotation(v.secret, now), finish: !exposed };
        }),
        tx,
      );
      const ok = verified.filter((v) => promoted.has(v.name)).map((v) => ({ ...v, exposedNow: exposures.get(v.name) ?? null }));
      await this.audit.appendMany(
        ok.map((v) => ({ type: 'static.rotated' as const, actor: null, detail: { name: v.name, version: v.target, account: v.pending.account, exposed: Boolean(v.exposedNow) } })),
        tx,
      );
      return ok;
    });
    // Counted once done, as RotationService counts (an exposed secret once contained).
    for (const p of promotedNow.filter((p) => !p.exposedNow)) {
      this.metrics.rotated('succeeded', p.trigger);
      done.add(p.name);
    }
    // Step 5: an exposure is contained (earlier credentials destroyed and proved dead) before it is done.
    const containments: Containment[] = promotedNow
      .filter((p) => p.exposedNow)
      .map((p) => ({ name: p.name, secret: p.secret, current: { ...p.pending, state: 'current' as const }, exposedAt: p.exposedNow!, endCurrentSessions: !p.exposedAt }));
    const failed = await this.exposure.containMany(containments, this.slots);
    for (const p of promotedNow.filter((p) => p.exposedNow)) {
      if (failed.has(p.name)) {
        this.log.warn(`containing ${p.name}: ${failed.get(p.name)!.message}`);
        continue;
      }
      this.metrics.rotated('succeeded', p.trigger);
      done.add(p.name);
    }
  }

  /** The secrets whose new password is proved to log in: one stored-password check, then logins for the rest. */
  private async verify(set: SetOnTarget[]): Promise<SetOnTarget[]> {
    const ok: SetOnTarget[] = [];
    for (const connection of new Set(set.map((s) => s.secret.connection))) {
      const plugin = this.plugins.for(connection);
      const mine = set.filter((s) => s.secret.connection === connection);
      const verdicts = plugin.checkStoredPasswords
        ? (await plugin.checkStoredPasswords({ checks: mine.map((s) => ({ account: s.content.verify.username, password: s.content.verify.password })) })).results
        : [];
      await this.slots.each([...mine.entries()], async ([i, s]) => {
        if (verdicts[i] === 'accepted') return void ok.push(s);
        const login = await plugin.verifyLogin(s.content.verify).catch((err: Error) => {
          this.log.warn(`verifying the rotation of ${s.name}: ${err.message}`);
          return { ok: false };
        });
        if (login.ok) ok.push(s);
        else this.log.warn(`rotation of ${s.name}: the new secret does not log in (its own job tries again)`);
      });
    }
    return ok;
  }
}
