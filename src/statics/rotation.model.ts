/** What rotation code shares: triggers, rotation ids, its errors and how long it waits. */
import { randomBytes } from 'node:crypto';
import { PluginCapabilities, PluginError } from '../../plugins/contract';

export type RotationTrigger = 'cadence' | 'emergency' | 'event' | 'manual' | 'register' | 'retry';

/** Triggers that report the current credential as leaked (DESIGN §4: the exposed credential dies). */
export const isExposure = (trigger: RotationTrigger) => trigger === 'emergency' || trigger === 'event';

export const newRotationId = () => `rot_${randomBytes(12).toString('base64url')}`;

/**
 * Another rotation of the same secret is in flight (it holds the lock, or its pending version is in
 * the way). Retryable: the job runs again later, when that rotation is done.
 */
export class RotationBusy extends Error {
  readonly code = 'rotation_busy';
  readonly retryable = true;

  /** `lockHeld`: the secret's rotation lock is someone else's right now (nothing was touched). */
  constructor(
    name: string,
    readonly lockHeld = false,
  ) {
    super(`another rotation of ${name} is in progress`);
    this.name = 'RotationBusy';
  }
}

/**
 * Whether retrying cannot help: only a target that refused for good (a non-retryable plugin error).
 * Anything else (a busy secret, a target or database that is down) is worth another attempt.
 */
export const isPermanent = (err: unknown): boolean => err instanceof PluginError && !err.retryable;

/** How long rotation waits: a provider (DEFAULT_ROTATION_TIMINGS in the app), so tests can make the waits instant. */
export interface RotationTimings {
  /** Verify attempt n waits n × this before trying again (IAM keys take seconds to work everywhere). */
  verifyBackoffMs: number;
  /**
   * After an exposed alternating secret flips, how long the account that was current keeps its
   * password: a reader that fetched it an instant before the flip can still log in with it.
   */
  exposureDrainMs: number;
}

export const ROTATION_TIMINGS = 'ROTATION_TIMINGS';

export const DEFAULT_ROTATION_TIMINGS: RotationTimings = { verifyBackoffMs: 250, exposureDrainMs: 1000 };

export const pause = (ms: number) => new Promise<void>((resolve) => setTimeout(resolve, ms));

/** At most `size` calls at once, however many callers share it (FIFO). */
export class Slots {
  private readonly waiting: (() => void)[] = [];

  constructor(private free: number) {}

  async run<T>(fn: () => Promise<T>): Promise<T> {
    if (this.free > 0) this.free--;
    else await new Promise<void>((resolve) => this.waiting.push(resolve));
    try {
      return await fn();
    } finally {
      const next = this.waiting.shift();
      if (next) next();
      else this.free++;
    }
  }

  /** `fn` on every item, within these slots; `fn` handles its own errors. */
  async each<T>(items: readonly T[], fn: (item: T) => Promise<void>): Promise<void> {
    await Promise.all(items.map((item) => this.run(() => fn(item))));
  }
}

/**
 * Whether a target's static secrets rotate in batches in an emergency: password targets do; key targets
 * (IAM: a key made must be recorded before anything else, or it is lost) rotate one by one.
 */
export const rotatesInBatches = (plugin: { capabilities: PluginCapabilities }) => !plugin.capabilities.keyOverlap;
