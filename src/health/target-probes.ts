import { Logger } from '@nestjs/common';
import { Metrics } from '../metrics/metrics';
import { PluginHost } from '../plugin-host/plugin-host';

export const PROBE_TIMEOUT_MS = 2000;

export function withTimeout<T>(p: Promise<T>, ms = PROBE_TIMEOUT_MS): Promise<T> {
  let timer: NodeJS.Timeout | undefined;
  const timeout = new Promise<never>((_, reject) => {
    timer = setTimeout(() => reject(new Error('timed out')), ms);
    timer.unref();
  });
  return Promise.race([p, timeout]).finally(() => clearTimeout(timer));
}

export interface TargetsReport {
  /** `starting` until the first probe of every connection has finished. */
  state: 'ok' | 'degraded' | 'starting';
  degraded: string[];
  checked_at: string | null;
}

/**
 * Probes every target connection in the background, every `health.probe_every`, and keeps the result
 * (and tessera_target_up) for readiness to serve. Readiness is unauthenticated, so it must never make
 * a target call itself: a flood of it would otherwise turn into a flood of IAM ListUsers calls (and
 * AWS throttling) or database logins. One probe round at a time; a slow target times out.
 */
export class TargetProbes {
  private readonly log = new Logger(TargetProbes.name);
  private timer: NodeJS.Timeout | undefined;
  private running: Promise<void> | undefined;
  private degraded: string[] = [];
  private checkedAt: Date | null = null;

  constructor(
    private readonly plugins: PluginHost,
    private readonly metrics: Metrics,
    private readonly everyMs: number,
  ) {}

  start(): void {
    void this.probe();
    this.timer = setInterval(() => void this.probe(), this.everyMs);
    this.timer.unref();
  }

  stop(): void {
    if (this.timer) clearInterval(this.timer);
    this.timer = undefined;
  }

  report(): TargetsReport {
    if (!this.checkedAt) return { state: 'starting', degraded: [], checked_at: null };
    return { state: this.degraded.length ? 'degraded' : 'ok', degraded: [...this.degraded], checked_at: this.checkedAt.toISOString() };
  }

  /** One round over every connection; a round already under way is joined, not doubled. */
  probe(): Promise<void> {
    this.running ??= this.round().finally(() => (this.running = undefined));
    return this.running;
  }

  private async round(): Promise<void> {
    const names = this.plugins.connectionNames();
    const results = await Promise.allSettled(names.map((n) => withTimeout(this.plugins.for(n).ping())));
    const degraded: string[] = [];
    names.forEach((name, i) => {
      const up = results[i].status === 'fulfilled';
      this.metrics.targetUp.set({ connection: name }, up ? 1 : 0);
      if (!up) degraded.push(name);
    });
    const newlyDown = degraded.filter((n) => !this.degraded.includes(n));
    if (newlyDown.length) this.log.warn(`target connection(s) down: ${newlyDown.join(', ')}`);
    this.degraded = degraded;
    this.checkedAt = new Date();
  }
}
