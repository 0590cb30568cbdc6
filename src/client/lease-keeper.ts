import { TesseraApiError } from './errors';
import { TesseraClient } from './tessera-client';
import { IssuedLease } from './types';

export interface LeaseKeeperOptions {
  /** Seconds each renewal asks for; default the lease's own ttl_seconds, so `--ttl 3s` keeps a 3 s window. */
  increment?: number;
  /** Human-readable notices: renewal failing, max TTL reached. Never contains a secret. */
  onWarning?: (message: string) => void;
  /** Called once when the lease can no longer be kept (expired, at its max TTL, or refused by the broker). */
  onLost?: (reason: string) => void;
  /** For tests: a source of randomness in [0, 1). */
  random?: () => number;
}

/** Renew at this fraction of the remaining time, so a third of the TTL is left for retries. */
const RENEW_AT = 2 / 3;
const RETRY_BASE_MS = 500;
const RETRY_CAP_MS = 30_000;
const MIN_DELAY_MS = 100;

/**
 * Keeps one lease alive: renews at about two thirds of its remaining time (with jitter, so many
 * clients leased at once do not renew in lockstep), retries failures with jittered backoff until the
 * lease would expire, and says once, ahead of time, when the lease reaches its max TTL.
 */
export class LeaseKeeper {
  private timer: NodeJS.Timeout | undefined;
  private stopped = false;
  /** Broker clock minus local clock, estimated at issue, so renewal timing survives clock skew. */
  private readonly skewMs: number;
  private expiresAt: number;
  private readonly increment: number;
  private failures = 0;
  private readonly random: () => number;

  constructor(
    private readonly client: Pick<TesseraClient, 'renew'>,
    private readonly lease: IssuedLease,
    private readonly opts: LeaseKeeperOptions = {},
  ) {
    const brokerIssuedAt = Date.parse(lease.expires_at) - lease.ttl_seconds * 1000;
    this.skewMs = brokerIssuedAt - Date.now();
    this.expiresAt = Date.parse(lease.expires_at);
    this.increment = opts.increment ?? lease.ttl_seconds;
    this.random = opts.random ?? Math.random;
  }

  /** The lease's current expiry, in the broker's clock. */
  get expiresAtIso(): string {
    return new Date(this.expiresAt).toISOString();
  }

  start(): void {
    if (this.atMax()) this.finalStretch();
    else this.scheduleRenewal();
  }

  /** Stops renewing; an in-flight renewal's outcome is ignored. */
  stop(): void {
    this.stopped = true;
    clearTimeout(this.timer);
  }

  private remainingMs(): number {
    return this.expiresAt - (Date.now() + this.skewMs);
  }

  private atMax(): boolean {
    return this.expiresAt >= Date.parse(this.lease.max_expires_at);
  }

  private later(fn: () => void, delayMs: number): void {
    if (this.stopped) return;
    this.timer = setTimeout(fn, Math.max(0, delayMs));
    // A background renewal must not keep a process alive whose work is done.
    this.timer.unref();
  }

  private scheduleRenewal(): void {
    const remaining = this.remainingMs();
    // Up to 10% earlier than the two-thirds mark.
    this.later(() => void this.renew(), remaining * RENEW_AT * (1 - 0.1 * this.random()));
  }

  private async renew(): Promise<void> {
    const { lease_id: id, role } = this.lease;
    try {
      const view = await this.client.renew(id, { increment: this.increment }, { timeoutMs: Math.max(1000, this.remainingMs() / 2) });
      if (this.stopped) return;
      this.expiresAt = Date.parse(view.expires_at);
      if (this.failures) this.opts.onWarning?.(`lease ${id} (role ${role}) renewed again after ${this.failures} failed attempt(s)`);
      this.failures = 0;
      if (this.atMax()) this.finalStretch();
      else this.scheduleRenewal();
    } catch (err) {
      if (this.stopped) return;
      this.failed(err);
    }
  }

  private failed(err: unknown): void {
    const { lease_id: id, role } = this.lease;
    const why = err instanceof Error ? err.message : String(err);
    // 404 and 409: the lease is gone, expired or revoked; retrying cannot bring it back.
    if (err instanceof TesseraApiError && (err.status === 404 || err.status === 409)) {
      this.lose(`lease ${id} (role ${role}) can no longer be renewed: ${why}`);
      return;
    }
    this.failures++;
    const remaining = this.remainingMs();
    if (remaining <= 0) {
      this.lose(`lease ${id} (role ${role}) expired: renewal kept failing (${why})`);
      return;
    }
    if (this.failures === 1) this.opts.onWarning?.(`renewing lease ${id} (role ${role}) failed: ${why}; retrying until it expires in ${Math.ceil(remaining / 1000)}s`);
    const backoff = Math.min(RETRY_BASE_MS * 2 ** (this.failures - 1), RETRY_CAP_MS, remaining / 3);
    this.later(() => void this.renew(), Math.max(MIN_DELAY_MS, backoff * (0.5 + 0.5 * this.random())));
  }

  /** No renewal can extend the lease any more: say so now, while there is time to act, then wait for the end. */
  private finalStretch(): void {
    const { lease_id: id, role } = this.lease;
    const seconds = Math.max(0, Math.round(this.remainingMs() / 1000));
    this.opts.onWarning?.(
      `lease ${id} (role ${role}) reaches its max TTL at ${this.expiresAtIso} (in ${seconds}s) and cannot be renewed further; its credentials stop working then`,
    );
    this.later(() => this.lose(`lease ${id} (role ${role}) expired at its max TTL`), this.remainingMs());
  }

  private lose(reason: string): void {
    if (this.stopped) return;
    this.stopped = true;
    this.opts.onLost?.(reason);
  }
}
