import { Inject, Injectable, Logger, OnApplicationBootstrap, OnApplicationShutdown } from '@nestjs/common';
import { SchedulerRegistry } from '@nestjs/schedule';
import { CONFIG } from '../config/config.module';
import { TesseraConfig } from '../config/config.loader';
import { Ticker } from '../jobs/ticker';
import { JobContext, JobOutcome, OnJob } from '../jobs/job-handler';
import { JobName, JobPayloads } from '../jobs/jobs';
import { LateLoginSweeps } from './late-logins';
import { OwnershipService } from './ownership.service';
import { RotationBusy } from './rotation.model';
import { RotationService } from './rotation.service';
import { StaticRepository } from './static.repository';

/** How long a rotation whose secret's lock is held waits before it looks again. */
const LOCK_WAIT_MS = 1000;

/**
 * Every `reconcile_every`, on every replica: registers newly configured static secrets (taking
 * ownership of each once), enqueues rotations that are due, failed last time, or never happened — with
 * deterministic job ids, so replicas ticking together rotate each secret once — retires previous
 * versions whose grace is over, and ends the late sessions of replaced passwords (LateLoginSweeps).
 */
@Injectable()
export class RotationSweeper implements OnApplicationBootstrap, OnApplicationShutdown {
  private readonly log = new Logger(RotationSweeper.name);
  private readonly ticker: Ticker;

  constructor(
    @Inject(CONFIG) private readonly config: TesseraConfig,
    scheduler: SchedulerRegistry,
    private readonly statics: StaticRepository,
    private readonly rotations: RotationService,
    private readonly ownership: OwnershipService,
    private readonly lateLogins: LateLoginSweeps,
  ) {
    this.ticker = new Ticker(scheduler, 'rotation-sweep', this.log);
  }

  /**
   * A secret whose lock another rotation holds (a batch, another replica) is tried again a second
   * later without using up an attempt: waiting for a rotation that is running is not a failure.
   */
  @OnJob(JobName.RotateStatic)
  async rotate({ name, targetVersion }: JobPayloads[JobName.RotateStatic], ctx: JobContext): Promise<JobOutcome> {
    try {
      await this.rotations.rotate(name, targetVersion, ctx.lastAttempt);
    } catch (err) {
      if (err instanceof RotationBusy && err.lockHeld) return ctx.runAgainAt(new Date(Date.now() + LOCK_WAIT_MS));
      throw err;
    }
  }

  onApplicationBootstrap(): void {
    this.ticker.start(this.config.reconcile_every, () => this.tick());
  }

  onApplicationShutdown(): void {
    this.ticker.stop();
  }

  async tick(): Promise<void> {
    // First, and on its own: nothing that fails below holds back ending a leaked password's late sessions.
    await this.lateLogins.sweepDue().catch((err) => this.log.warn(`late login sweeps (tried again next tick): ${(err as Error).message}`));
    const configured = Object.entries(this.config.static_secrets).map(([name, s]) => ({ name, connection: s.connection }));
    await this.statics.register(configured);
    for (const due of await this.statics.due(500)) {
      if (!Object.hasOwn(this.config.static_secrets, due.name)) continue;
      if (due.status === 'unowned') {
        await this.ownership.takeOwnership(due.name).catch((err) => this.log.warn(`taking ownership of ${due.name}: ${(err as Error).message}`));
        continue;
      }
      const target = (due.current_version ?? 0) + 1;
      // An exposed secret (its emergency rotation failed or its job was lost) is retried as one.
      const trigger = due.exposed ? 'retry' : due.current_version === null ? 'register' : 'cadence';
      await this.rotations.schedule(due.name, target, trigger, due.exposed);
    }
    await this.rotations.retireExpired();
  }
}
