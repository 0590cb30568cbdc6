/** The gauges read when Prometheus scrapes: what they read from, and how their series are filled. */
import type { Metrics } from './metrics';

export interface LeaseCount {
  role: string;
  plugin: string;
  state: string;
  count: number;
}

export interface StaticStatus {
  name: string;
  status: string;
  rotated_at: Date | null;
}

export interface QueueCounts {
  queue: string;
  counts: Record<string, number>;
}

/** The lease states tessera_leases reports: the live ones (finished leases only grow; counters cover them). */
export const LIVE_LEASE_STATES = ['pending', 'active', 'revoking', 'revoke_failed'] as const;
export const STATIC_STATES = ['unowned', 'active', 'rotation_failed'] as const;
export const QUEUE_STATES = ['waiting', 'delayed', 'active', 'failed'] as const;

/**
 * Each read is expected to be cached by its provider (ScrapeCache). `known` holds the configured label
 * values whose series are exported even at 0 (so `> 0` alerts have a series to compare, and a role with
 * no lease still shows); a static secret's name is exported only when it is configured.
 */
export interface ScrapeSources {
  leases(): Promise<LeaseCount[]>;
  statics(): Promise<StaticStatus[]>;
  queues(): Promise<QueueCounts[]>;
  known: { roles: readonly { role: string; plugin: string }[]; statics: readonly string[]; queues: readonly string[] };
}

/**
 * Reads first, then resets and sets the series without awaiting in between, so a concurrent scrape
 * never sees a half-filled gauge. A failed read leaves the gauge empty and says so in tessera_metrics_source_up.
 */
async function fill<T>(m: Metrics, source: string, read: () => Promise<T>, set: (value: T) => void, reset: () => void): Promise<void> {
  let value: T;
  try {
    value = await read();
  } catch {
    reset();
    m.sourceUp.set({ source }, 0);
    return;
  }
  reset();
  set(value);
  m.sourceUp.set({ source }, 1);
}

export function collectLeases(m: Metrics, s: ScrapeSources | undefined): Promise<void> | void {
  if (!s) return;
  return fill(
    m,
    'leases',
    () => s.leases(),
    (rows) => {
      for (const { role, plugin } of s.known.roles) for (const state of LIVE_LEASE_STATES) m.leases.set({ role, plugin, state }, 0);
      for (const r of rows) m.leases.set({ role: r.role, plugin: r.plugin, state: r.state }, r.count);
    },
    () => m.leases.reset(),
  );
}

export function collectStatics(m: Metrics, s: ScrapeSources | undefined): Promise<void> | void {
  if (!s) return;
  const configured = new Set(s.known.statics);
  return fill(
    m,
    'statics',
    () => s.statics(),
    (rows) => {
      for (const state of STATIC_STATES) m.staticSecrets.set({ state }, 0);
      for (const r of rows) if (configured.has(r.name)) m.staticSecrets.inc({ state: r.status });
    },
    () => m.staticSecrets.reset(),
  );
}

/** From the same (cached) read as collectStatics. */
export function collectLastRotations(m: Metrics, s: ScrapeSources | undefined): Promise<void> | void {
  if (!s) return;
  const configured = new Set(s.known.statics);
  return fill(
    m,
    'statics',
    () => s.statics(),
    (rows) => {
      for (const r of rows) if (configured.has(r.name) && r.rotated_at) m.staticLastRotation.set({ name: r.name }, r.rotated_at.getTime() / 1000);
    },
    () => m.staticLastRotation.reset(),
  );
}

export function collectQueues(m: Metrics, s: ScrapeSources | undefined): Promise<void> | void {
  if (!s) return;
  return fill(
    m,
    'queues',
    () => s.queues(),
    (rows) => {
      for (const { queue, counts } of rows) for (const state of QUEUE_STATES) m.queueJobs.set({ queue, state }, counts[state] ?? 0);
    },
    () => m.queueJobs.reset(),
  );
}
