import { Injectable } from '@nestjs/common';
import { Counter, Gauge, Histogram, Registry, collectDefaultMetrics } from 'prom-client';
import { ScrapeSources, collectLastRotations, collectLeases, collectQueues, collectStatics } from './scrape-gauges';

/** Values of `tessera_lease_revocations_total`'s `result`. */
export type RevocationResult = 'succeeded' | 'failed' | 'revoke_failed';

/** Values of `tessera_audit_chain_problems_total`'s `check`: which check found the audit chain broken. */
export type AuditChainCheck = 'head_seal' | 'heartbeat' | 'verify';

const ROTATION_TRIGGERS = new Set(['cadence', 'emergency', 'event', 'manual', 'register', 'retry']);

/**
 * Every metric the broker exports (DESIGN §13 names the contract's). Labels are bounded: role, plugin,
 * connection, state, result, queue, trigger, type, route template, status, a static secret's configured
 * name. Never a subject, a lease id, a raw path or a secret.
 *
 * Event metrics are counted where the event happens (one line there). Gauges of what PostgreSQL and
 * Redis hold are read when scraped, through the sources `useSources` is given (MetricsGauges wires the
 * repositories and the job producer), each read shared by scrapes for a few seconds (ScrapeCache).
 */
@Injectable()
export class Metrics {
  readonly registry = new Registry();
  private sources: ScrapeSources | undefined;

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
  readonly issueSeconds = new Histogram({
    name: 'tessera_lease_issue_seconds',
    help: 'Time to issue a lease (policy, pending row, account on the target, activation, expiry job), successful issues by plugin.',
    labelNames: ['plugin'] as const,
    buckets: [0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10],
    registers: [this.registry],
  });
  readonly revocations = new Counter({
    name: 'tessera_lease_revocations_total',
    help: 'Revocation outcomes by plugin: succeeded (account gone), failed (an attempt failed; retried), revoke_failed (retries exhausted; the lease is revoke_failed).',
    labelNames: ['plugin', 'result'] as const,
    registers: [this.registry],
  });
  readonly revocationReasons = new Counter({
    name: 'tessera_lease_revocation_reasons_total',
    help: 'Leases revoked (account gone) by plugin and reason (expired, revoked, bulk, owner, abandoned, issue_failed).',
    labelNames: ['plugin', 'reason'] as const,
    registers: [this.registry],
  });
  readonly revokeFailedLeases = new Gauge({
    name: 'tessera_leases_revoke_failed',
    help: 'Leases in revoke_failed as the reconciler last counted them (worker role); tessera_leases{state="revoke_failed"} is the same, read at scrape time.',
    registers: [this.registry],
  });
  readonly expiryLateness = new Histogram({
    name: 'tessera_lease_expiry_lateness_seconds',
    help: "Time from an expired lease's expires_at until its account was gone from the target.",
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
    help: 'Static secret rotations by result (succeeded; failed = retries exhausted, the secret is rotation_failed) and trigger.',
    labelNames: ['result', 'trigger'] as const,
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
  readonly auditEvents = new Counter({
    name: 'tessera_audit_events_total',
    help: 'Audit events written to the chain, by type (refused requests are sampled before they are written).',
    labelNames: ['type'] as const,
    registers: [this.registry],
  });
  readonly auditChainOk = new Gauge({
    name: 'tessera_audit_chain_ok',
    help: "0 once a check of this process found the audit chain broken (an append's head seal check, the heartbeat tick's tail check, or a verify); back to 1 when a full verify succeeds.",
    registers: [this.registry],
  });
  readonly auditChainProblems = new Counter({
    name: 'tessera_audit_chain_problems_total',
    help: 'Times a check found the audit chain broken, by check (head_seal, heartbeat, verify).',
    labelNames: ['check'] as const,
    registers: [this.registry],
  });
  readonly httpRequests = new Counter({
    name: 'tessera_http_requests_total',
    help: 'HTTP requests by route template (unmatched: no route, e.g. a 404 for an unknown path) and status.',
    labelNames: ['route', 'status'] as const,
    registers: [this.registry],
  });

  // Read when scraped (see scrape-gauges.ts).
  readonly sourceUp = new Gauge({
    name: 'tessera_metrics_source_up',
    help: 'Whether the last scrape-time read of a source (leases, statics, queues) answered (1) or not (0): while 0, its gauges are absent.',
    labelNames: ['source'] as const,
    registers: [this.registry],
  });
  readonly leases = new Gauge({
    name: 'tessera_leases',
    help: 'Live leases (pending, active, revoking, revoke_failed) by role, plugin and state; finished leases are counted by tessera_lease_revocations_total.',
    labelNames: ['role', 'plugin', 'state'] as const,
    registers: [this.registry],
    collect: () => collectLeases(this, this.sources),
  });
  readonly staticSecrets = new Gauge({
    name: 'tessera_static_secrets',
    help: 'Configured static secrets by state (unowned, active, rotation_failed).',
    labelNames: ['state'] as const,
    registers: [this.registry],
    collect: () => collectStatics(this, this.sources),
  });
  readonly staticLastRotation = new Gauge({
    name: 'tessera_static_last_rotation_timestamp_seconds',
    help: 'When each configured static secret last finished a rotation (Unix seconds); absent before its first.',
    labelNames: ['name'] as const,
    registers: [this.registry],
    collect: () => collectLastRotations(this, this.sources),
  });
  readonly queueJobs = new Gauge({
    name: 'tessera_queue_jobs',
    help: 'Jobs per queue by state (waiting, delayed, active, failed).',
    labelNames: ['queue', 'state'] as const,
    registers: [this.registry],
    collect: () => collectQueues(this, this.sources),
  });

  constructor() {
    collectDefaultMetrics({ register: this.registry, prefix: 'tessera_process_' });
    this.auditChainOk.set(1);
  }

  /** Where the scrape-time gauges read from. Until this is called they export nothing. */
  useSources(sources: ScrapeSources): void {
    this.sources = sources;
  }

  /** A lease's account is gone: counted by result and reason, and its lateness when it expired. */
  revoked(plugin: string, reason: string, lateness?: number): void {
    this.revocations.inc({ plugin, result: 'succeeded' });
    this.revocationReasons.inc({ plugin, reason });
    if (lateness !== undefined) this.expiryLateness.observe(lateness);
  }

  rotated(result: 'succeeded' | 'failed', trigger: string | undefined): void {
    this.rotations.inc({ result, trigger: trigger && ROTATION_TRIGGERS.has(trigger) ? trigger : 'unknown' });
  }

  auditChainBroken(check: AuditChainCheck): void {
    this.auditChainOk.set(0);
    this.auditChainProblems.inc({ check });
  }

  auditVerified(ok: boolean): void {
    if (ok) this.auditChainOk.set(1);
    else this.auditChainBroken('verify');
  }
}
