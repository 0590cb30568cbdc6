import { DynamicModule, Global, Module, Provider } from '@nestjs/common';
import { APP_GUARD, DiscoveryModule } from '@nestjs/core';
import { ScheduleModule } from '@nestjs/schedule';
import { TerminusModule } from '@nestjs/terminus';
import { ThrottlerModule } from '@nestjs/throttler';
import { LoggerModule } from 'nestjs-pino';
import { AuditLog } from './audit/audit.log';
import { ConfigModule } from './config/config.module';
import { TesseraConfig } from './config/config.loader';
import { CONSOLE_PROVIDERS } from './console/console.providers';
import { HealthController } from './health/health.controller';
import { AuthGuard } from './http/auth.guard';
import { AuditDenials } from './audit/audit-denials';
import { AuditController } from './audit/audit.controller';
import { ConfigController } from './config/config.controller';
import { BootstrapController } from './identity/bootstrap.controller';
import { WhoamiController } from './identity/whoami.controller';
import { MetricsController } from './metrics/metrics.controller';
import { BootstrapService } from './identity/bootstrap.service';
import { BrokerKeys } from './identity/broker-keys';
import { BearerTokenExtractor } from './identity/bearer-token.extractor';
import { ClientCertificateExtractor } from './identity/client-certificate.extractor';
import { CREDENTIAL_EXTRACTORS, CredentialExtractor } from './identity/credential-extractor';
import { IdentityService } from './identity/identity.service';
import { TokenVerifier } from './identity/token-verifier';
import { IdentityThrottlerGuard } from './http/identity-throttler.guard';
import { WindowThrottlerStorage } from './http/window-throttler-storage';
import { JobProducer } from './jobs/job.producer';
import { JobRegistry } from './jobs/job-registry';
import { JobWorkers } from './jobs/job-workers';
import { RedisConnections } from './jobs/redis';
import { LeaseController } from './leases/lease.controller';
import { Clock, SystemClock } from './common/clock';
import { LeaseJobs } from './leases/lease.jobs';
import { LeaseReconciler } from './leases/lease.reconciler';
import { LeaseRepository } from './leases/lease.repository';
import { LeaseRevoker } from './leases/lease-revoker';
import { LeaseService } from './leases/lease.service';
import { Metrics } from './metrics/metrics';
import { MetricsGauges } from './metrics/metrics-gauges';
import { PluginHost } from './plugin-host/plugin-host';
import { RoleSettingsResolver } from './plugin-host/role-settings';
import { PolicyService } from './policy/policy.service';
import { RoleSessionsService } from './roles/role-sessions.service';
import { RolesController } from './roles/roles.controller';
import { EventSignatureRepository } from './events/event-signature.repository';
import { EventsController } from './events/events.controller';
import { EventsService } from './events/events.service';
import { ExposureContainment } from './statics/exposure';
import { LateLoginSweeps } from './statics/late-logins';
import { RotationBatchRepository } from './statics/rotation-batch.repository';
import { RotationBatchService } from './statics/rotation-batch.service';
import { OwnershipService } from './statics/ownership.service';
import { DEFAULT_ROTATION_TIMINGS, ROTATION_TIMINGS } from './statics/rotation.model';
import { RotationService } from './statics/rotation.service';
import { RotationSweeper } from './statics/rotation.sweeper';
import { StaticController } from './statics/static.controller';
import { StaticRepository } from './statics/static.repository';
import { StaticService } from './statics/static.service';
import { storageProviders } from './storage/storage.providers';
import { VaultAuthController } from './vault/vault-auth.controller';
import { VaultLeasesService } from './vault/vault-leases.service';
import { VaultSecretsController } from './vault/vault-secrets.controller';
import { VaultSysController } from './vault/vault-sys.controller';
import { VaultTokenExtractor } from './vault/vault-token.extractor';
import { VaultTokenRepository } from './vault/vault-token.repository';
import { VaultTokenService } from './vault/vault-token.service';
import { VaultTokenSweeper } from './vault/vault-token.sweeper';

/** What a process does: serve HTTP, run the job processors and ticks, or both. */
export interface ProcessRoles {
  /** Serve the HTTP API. */
  http: boolean;
  /** Run the job processors and the reconciler. */
  worker: boolean;
}

/** I/O and shared services used by every feature. */
@Global()
@Module({
  providers: [...storageProviders, Metrics, AuditLog, AuditDenials, PluginHost, RoleSettingsResolver, RedisConnections, JobProducer, { provide: Clock, useClass: SystemClock }],
  exports: [...storageProviders, Metrics, AuditLog, AuditDenials, PluginHost, RoleSettingsResolver, RedisConnections, JobProducer, Clock],
})
class CoreModule {}

@Module({
  providers: [LeaseRepository, LeaseRevoker, LeaseService, PolicyService, LeaseJobs],
  exports: [LeaseRepository, LeaseRevoker, LeaseService, PolicyService, LeaseJobs],
})
class LeasesModule {}

@Module({
  imports: [LeasesModule],
  providers: [StaticRepository, { provide: ROTATION_TIMINGS, useValue: DEFAULT_ROTATION_TIMINGS }, RotationBatchRepository, LateLoginSweeps, ExposureContainment, RotationService, RotationBatchService, OwnershipService, StaticService],
  exports: [StaticRepository, RotationService, OwnershipService, StaticService, LateLoginSweeps],
})
class StaticsModule {}

/** One set of providers, two entrypoints: `tessera server` (HTTP, and by default the worker) and `tessera worker`. */
@Module({})
export class AppModule {
  static forRoot(config: TesseraConfig, roles: ProcessRoles): DynamicModule {
    // Guards run in this order: who is calling, then how often they may.
    const http: Provider[] = roles.http
      ? [
          BrokerKeys,
          TokenVerifier,
          BearerTokenExtractor,
          ClientCertificateExtractor,
          VaultTokenService,
          VaultTokenExtractor,
          VaultLeasesService,
          // Asked in this order; a new API surface adds its extractor here (the operator console does
          // not: its session cookie is accepted by src/console only, never by the API). The Vault
          // extractor goes first: it claims X-Vault-Token and bearer client tokens, and leaves JWTs to the next.
          {
            provide: CREDENTIAL_EXTRACTORS,
            useFactory: (vault: VaultTokenExtractor, bearer: BearerTokenExtractor, cert: ClientCertificateExtractor): CredentialExtractor[] => [vault, bearer, cert],
            inject: [VaultTokenExtractor, BearerTokenExtractor, ClientCertificateExtractor],
          },
          IdentityService,
          BootstrapService,
          EventsService,
          EventSignatureRepository,
          MetricsGauges,
          RoleSessionsService,
          { provide: APP_GUARD, useClass: AuthGuard },
          { provide: APP_GUARD, useClass: IdentityThrottlerGuard },
        ]
      : [];
    // The operator console (DESIGN §12), when configured; mounted at /ui/ by createServer.
    const consoleProviders: Provider[] = roles.http && config.ui ? CONSOLE_PROVIDERS : [];
    const worker: Provider[] = roles.worker ? [JobRegistry, JobWorkers, LeaseReconciler, RotationSweeper, VaultTokenSweeper] : [];
    return {
      module: AppModule,
      imports: [
        ConfigModule.forRoot(config),
        LoggerModule.forRoot({
          // The root logger only: the access log is written by src/http/access-log.ts, and nothing is
          // bound per request (a child logger and an async-local context per request took about a
          // fifth of the broker's CPU for a simple authenticated GET).
          forRoutes: [],
          pinoHttp: {
            level: config.log.level,
            // Never log credentials: headers that carry tokens or signatures are removed wherever a
            // log line includes them.
            redact: { paths: ['req.headers.authorization', 'req.headers.cookie', 'req.headers["x-tessera-signature"]', 'req.headers["x-vault-token"]'], remove: true },
            autoLogging: false,
            // The access log's req and res are plain objects, written as they are.
            wrapSerializers: false,
          },
        }),
        CoreModule,
        LeasesModule,
        StaticsModule,
        ...(roles.http ? [TerminusModule, ThrottlerModule.forRoot({ throttlers: [{ name: 'identity', ttl: 1000, limit: config.limits.per_identity_rps }], storage: new WindowThrottlerStorage() })] : []),
        ...(roles.worker ? [ScheduleModule.forRoot(), DiscoveryModule] : []),
      ],
      controllers: roles.http ? [LeaseController, StaticController, EventsController, BootstrapController, WhoamiController, AuditController, ConfigController, RolesController, MetricsController, HealthController, VaultAuthController, VaultSysController, VaultSecretsController] : [],
      // Client tokens are written by the HTTP role and swept by the worker role.
      providers: [VaultTokenRepository, ...http, ...consoleProviders, ...worker],
    };
  }
}
