import { DynamicModule, Global, Module, Provider } from '@nestjs/common';
import { APP_GUARD } from '@nestjs/core';
import { ScheduleModule } from '@nestjs/schedule';
import { TerminusModule } from '@nestjs/terminus';
import { ThrottlerModule } from '@nestjs/throttler';
import { LoggerModule } from 'nestjs-pino';
import { randomUUID } from 'node:crypto';
import { AuditLog } from './audit/audit.log';
import { ConfigModule } from './config/config.module';
import { TesseraConfig } from './config/config.loader';
import { HealthController } from './health/health.controller';
import { AuthGuard } from './http/auth.guard';
import { DenialLimiter } from './http/denial-limiter';
import { MetricsController, OperatorController, WhoamiController } from './http/misc.controller';
import { BootstrapController } from './identity/bootstrap.controller';
import { BootstrapService } from './identity/bootstrap.service';
import { BrokerKeys } from './identity/broker-keys';
import { IdentityService } from './identity/identity.service';
import { TokenVerifier } from './identity/token-verifier';
import { IdentityThrottlerGuard } from './http/identity-throttler.guard';
import { JobProducer } from './jobs/job.producer';
import { JobWorkers } from './jobs/job-workers';
import { Reconciler } from './jobs/reconciler';
import { RedisConnections } from './jobs/redis';
import { LeaseController } from './leases/lease.controller';
import { LeaseJobs } from './leases/lease.jobs';
import { LeaseRepository } from './leases/lease.repository';
import { LeaseRevoker } from './leases/lease-revoker';
import { LeaseService } from './leases/lease.service';
import { Metrics } from './metrics/metrics';
import { PluginHost } from './plugin-host/plugin-host';
import { RoleSettingsResolver } from './plugin-host/role-settings';
import { PolicyService } from './policy/policy.service';
import { EventSignatureRepository } from './statics/event-signature.repository';
import { EventsService } from './statics/events.service';
import { RotationService } from './statics/rotation.service';
import { RotationSweeper } from './statics/rotation.sweeper';
import { StaticController } from './statics/static.controller';
import { StaticRepository } from './statics/static.repository';
import { StaticService } from './statics/static.service';
import { storageProviders } from './storage/storage.providers';

export interface Roles {
  /** Serve the HTTP API. */
  http: boolean;
  /** Run the job processors and the reconciler. */
  worker: boolean;
}

/** I/O and shared services used by every feature. */
@Global()
@Module({
  providers: [...storageProviders, Metrics, AuditLog, PluginHost, RoleSettingsResolver, RedisConnections, JobProducer],
  exports: [...storageProviders, Metrics, AuditLog, PluginHost, RoleSettingsResolver, RedisConnections, JobProducer],
})
class CoreModule {}

@Module({
  providers: [LeaseRepository, LeaseRevoker, LeaseService, PolicyService, LeaseJobs],
  exports: [LeaseRepository, LeaseRevoker, LeaseService, PolicyService, LeaseJobs],
})
class LeasesModule {}

@Module({
  imports: [LeasesModule],
  providers: [StaticRepository, RotationService, StaticService],
  exports: [StaticRepository, RotationService, StaticService],
})
class StaticsModule {}

/** One set of providers, two entrypoints: `tessera server` (HTTP, and by default the worker) and `tessera worker`. */
@Module({})
export class AppModule {
  static forRoot(config: TesseraConfig, roles: Roles): DynamicModule {
    // Guards run in this order: who is calling, then how often they may.
    const http: Provider[] = roles.http
      ? [
          BrokerKeys,
          TokenVerifier,
          IdentityService,
          BootstrapService,
          EventsService,
          EventSignatureRepository,
          DenialLimiter,
          { provide: APP_GUARD, useClass: AuthGuard },
          { provide: APP_GUARD, useClass: IdentityThrottlerGuard },
        ]
      : [];
    const worker: Provider[] = roles.worker ? [JobWorkers, Reconciler, RotationSweeper] : [];
    return {
      module: AppModule,
      imports: [
        ConfigModule.forRoot(config),
        LoggerModule.forRoot({
          pinoHttp: {
            level: config.log.level,
            genReqId: (req) => (req as { id?: string }).id ?? randomUUID(),
            // Never log credentials: request and response bodies are not logged at all, and headers
            // that carry tokens or signatures are removed.
            redact: { paths: ['req.headers.authorization', 'req.headers.cookie', 'req.headers["x-tessera-signature"]'], remove: true },
            serializers: { req: (req) => ({ id: req.id, method: req.method, url: req.url }), res: (res) => ({ statusCode: res.statusCode }) },
            // One access-log line per request at info; none (and no per-request logger) above it.
            autoLogging: roles.http && ['trace', 'debug', 'info'].includes(config.log.level),
          },
        }),
        CoreModule,
        LeasesModule,
        StaticsModule,
        ...(roles.http ? [TerminusModule, ThrottlerModule.forRoot([{ name: 'identity', ttl: 1000, limit: config.limits.per_identity_rps }])] : []),
        ...(roles.worker ? [ScheduleModule.forRoot()] : []),
      ],
      controllers: roles.http ? [LeaseController, StaticController, BootstrapController, WhoamiController, OperatorController, MetricsController, HealthController] : [],
      providers: [...http, ...worker],
    };
  }
}
