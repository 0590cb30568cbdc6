import { Controller, Get, Inject } from '@nestjs/common';
import { ApiTags } from '@nestjs/swagger';
import { HealthCheck, HealthCheckService, HealthIndicatorService } from '@nestjs/terminus';
import { JobProducer } from '../jobs/job.producer';
import { Public } from '../http/auth.guard';
import { PluginRegistry } from '../plugins/plugin-registry';
import { Database } from '../storage/database';

const TIMEOUT_MS = 2000;

function withTimeout<T>(p: Promise<T>): Promise<T> {
  return Promise.race([p, new Promise<T>((_, reject) => setTimeout(() => reject(new Error('timed out')), TIMEOUT_MS).unref())]);
}

@ApiTags('health')
@Public()
@Controller('v1/health')
export class HealthController {
  constructor(
    private readonly health: HealthCheckService,
    private readonly indicators: HealthIndicatorService,
    @Inject(Database) private readonly db: Database,
    private readonly jobs: JobProducer,
    private readonly plugins: PluginRegistry,
  ) {}

  @Get('live')
  live() {
    return { status: 'ok' };
  }

  /** 503 when the state database or Redis is down; a target that is down only shows as degraded. */
  @Get('ready')
  @HealthCheck()
  ready() {
    return this.health.check([
      () => this.probe('state_db', () => this.db.query('SELECT 1')),
      () => this.probe('queue', () => this.jobs.ping()),
      async () => {
        const names = this.plugins.connectionNames();
        const results = await Promise.allSettled(names.map((n) => withTimeout(this.plugins.call(n, 'ping', [], (p) => p.ping()))));
        const degraded = names.filter((_, i) => results[i].status === 'rejected');
        return this.indicators.check('targets').up({ degraded, state: degraded.length ? 'degraded' : 'ok' });
      },
    ]);
  }

  private async probe(key: string, fn: () => Promise<unknown>) {
    const check = this.indicators.check(key);
    try {
      await withTimeout(fn());
      return check.up();
    } catch {
      return check.down({ message: 'unreachable' });
    }
  }
}
