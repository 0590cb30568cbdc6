import { Controller, Get, Inject, OnApplicationBootstrap, OnApplicationShutdown, Req } from '@nestjs/common';
import { ApiTags } from '@nestjs/swagger';
import { HealthCheck, HealthCheckService, HealthIndicatorService } from '@nestjs/terminus';
import type { Request } from 'express';
import { DomainError } from '../common/errors';
import { CONFIG } from '../config/config.module';
import { TesseraConfig } from '../config/config.loader';
import { JobProducer } from '../jobs/job.producer';
import { Public } from '../http/auth.guard';
import { TokenBucket } from '../common/token-bucket';
import { Metrics } from '../metrics/metrics';
import { PluginHost } from '../plugin-host/plugin-host';
import { Database } from '../storage/database';
import { TargetProbes, TargetsReport, withTimeout } from './target-probes';
import { addressKey } from '../common/client-address';

/** How long one answer about the state database and Redis is reused: a flood costs one check a second. */
const DEPENDENCY_CACHE_MS = 1000;

/** A check whose result is reused for a moment, with concurrent callers sharing one run. */
export class CachedCheck {
  private last: { at: number; up: boolean } | undefined;
  private running: Promise<boolean> | undefined;

  constructor(private readonly check: () => Promise<unknown>) {}

  get(): Promise<boolean> {
    if (this.last && Date.now() - this.last.at < DEPENDENCY_CACHE_MS) return Promise.resolve(this.last.up);
    this.running ??= withTimeout(this.check())
      .then(
        () => true,
        () => false,
      )
      .then((up) => {
        this.last = { at: Date.now(), up };
        this.running = undefined;
        return up;
      });
    return this.running;
  }
}

@ApiTags('health')
@Public()
@Controller('v1/health')
export class HealthController implements OnApplicationBootstrap, OnApplicationShutdown {
  private readonly targets: TargetProbes;
  private readonly stateDb: CachedCheck;
  private readonly queue: CachedCheck;
  private readonly perAddress: TokenBucket;

  constructor(
    @Inject(CONFIG) config: TesseraConfig,
    private readonly health: HealthCheckService,
    private readonly indicators: HealthIndicatorService,
    @Inject(Database) db: Database,
    jobs: JobProducer,
    plugins: PluginHost,
    metrics: Metrics,
  ) {
    this.targets = new TargetProbes(plugins, metrics, config.health.probe_every * 1000);
    this.stateDb = new CachedCheck(() => db.query('SELECT 1'));
    this.queue = new CachedCheck(() => jobs.ping());
    this.perAddress = new TokenBucket(config.health.ready_rps, config.health.ready_rps * 2);
  }

  onApplicationBootstrap(): void {
    this.targets.start();
  }

  onApplicationShutdown(): void {
    this.targets.stop();
  }

  /** The targets' state from the background probes (the operator console's overview shows it). */
  targetsReport(): TargetsReport {
    return this.targets.report();
  }

  @Get('live')
  live() {
    return { status: 'ok' };
  }

  /**
   * 503 when the state database or Redis is down; a target that is down only shows as degraded. The
   * targets' state comes from the background probes (never a target call per request), the state
   * database's and Redis's from a check at most a second old; each client address gets
   * health.ready_rps requests a second.
   */
  @Get('ready')
  @HealthCheck()
  async ready(@Req() req: Request) {
    if (!this.perAddress.take(addressKey(req.ip))) {
      throw new DomainError('rate_limited', 'too_many_readiness_checks', 'too many readiness checks from this address; slow down');
    }
    const [stateDb, queue] = await Promise.all([this.stateDb.get(), this.queue.get()]);
    const dependency = (key: string, up: boolean) => (up ? this.indicators.check(key).up() : this.indicators.check(key).down({ message: 'unreachable' }));
    return this.health.check([
      () => dependency('state_db', stateDb),
      () => dependency('queue', queue),
      () => this.indicators.check('targets').up({ ...this.targets.report() }),
    ]);
  }
}
