import { Injectable } from '@nestjs/common';
import { Counter, Gauge, Histogram, Registry, collectDefaultMetrics } from 'prom-client';

/** Every metric the broker exports. Labels are role, plugin, operation and outcome names: never secrets. */
@Injectable()
export class Metrics {
  readonly registry = new Registry();

  readonly leasesIssued = new Counter({
    name: 'tessera_leases_issued_total',
    help: 'Leases issued, by role.',
    labelNames: ['role'] as const,
    registers: [this.registry],
  });
  readonly issueFailures = new Counter({
    name: 'tessera_lease_issue_failures_total',
    help: 'Issues that failed at the target, by role.',
    labelNames: ['role'] as const,
    registers: [this.registry],
  });
  readonly revocations = new Counter({
    name: 'tessera_lease_revocations_total',
    help: 'Leases revoked, by reason (expired, revoked, bulk, owner, abandoned).',
    labelNames: ['reason'] as const,
    registers: [this.registry],
  });
  readonly revokeFailures = new Counter({
    name: 'tessera_lease_revoke_failures_total',
    help: 'Leases whose revocation exhausted its retries and became revoke_failed.',
    registers: [this.registry],
  });
  readonly revokeFailedLeases = new Gauge({
    name: 'tessera_leases_revoke_failed',
    help: 'Leases currently in revoke_failed (updated by the reconciler).',
    registers: [this.registry],
  });
  readonly expiryLateness = new Histogram({
    name: 'tessera_lease_expiry_lateness_seconds',
    help: 'Time from a lease\'s expires_at until its credential was revoked.',
    buckets: [0.05, 0.1, 0.25, 0.5, 1, 2, 5, 15, 60, 300],
    registers: [this.registry],
  });
  readonly pluginCalls = new Histogram({
    name: 'tessera_plugin_call_seconds',
    help: 'Plugin operations by plugin, operation and outcome.',
    labelNames: ['plugin', 'operation', 'outcome'] as const,
    buckets: [0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10],
    registers: [this.registry],
  });
  readonly rotations = new Counter({
    name: 'tessera_static_rotations_total',
    help: 'Static secret rotations by result (succeeded; failed = retries exhausted, the secret is rotation_failed).',
    labelNames: ['result'] as const,
    registers: [this.registry],
  });
  readonly targetUp = new Gauge({
    name: 'tessera_target_up',
    help: 'Whether the last background probe of a target connection succeeded (1) or not (0).',
    labelNames: ['connection'] as const,
    registers: [this.registry],
  });
  readonly deniedRequests = new Counter({
    name: 'tessera_requests_denied_total',
    help: 'Requests refused for identity (401) or policy (403).',
    labelNames: ['status'] as const,
    registers: [this.registry],
  });

  constructor() {
    collectDefaultMetrics({ register: this.registry, prefix: 'tessera_process_' });
  }
}
