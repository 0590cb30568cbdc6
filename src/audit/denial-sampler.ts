import { addressKey } from '../common/client-address';

/** One identity's (or address's) refused requests in the current window. */
interface Window {
  started: number;
  written: number;
  suppressed: number;
  statuses: Record<string, number>;
  actor: string | null;
  issuer: string | null;
  client: string | null;
}

/** What the summary event of a window records about the refusals that were not written one by one. */
export interface DenialSummary {
  actor: string | null;
  detail: {
    issuer: string | null;
    client: string | null;
    suppressed: number;
    statuses: Record<string, number>;
    window_start: string;
    window_end: string;
  };
}

export interface Denial {
  actor: string | null;
  issuer: string | null;
  client: string | null;
  status: string;
}

/** Past this many tracked callers, new ones share one window, so memory stays bounded under a flood. */
const MAX_TRACKED = 10_000;
const OVERFLOW = '*';

/**
 * Bounds the audit rows refused requests write: per caller (issuer and subject, or client address when
 * there is no identity) the first `perWindow` refusals of each window are written as they happen; the
 * rest are only counted, and the window's end turns the count into one summary event. So a probe of a
 * thousand lease ids costs a handful of rows, and no refusal goes unrecorded. Counts are per process.
 */
export class DenialSampler {
  private readonly windows = new Map<string, Window>();

  constructor(
    private readonly perWindow: number,
    private readonly windowMs: number,
  ) {}

  /**
   * Whether this refusal should be written now. When it opens a new window for its caller, the summary
   * of the caller's previous window (if anything was suppressed in it) is returned for writing too.
   */
  admit(denial: Denial, now = Date.now()): { write: boolean; summary?: DenialSummary } {
    let key = `${denial.issuer ?? ''}\u0000${denial.actor ?? `addr:${addressKey(denial.client)}`}`;
    if (!this.windows.has(key) && this.windows.size >= MAX_TRACKED) key = OVERFLOW;
    let window = this.windows.get(key);
    let summary: DenialSummary | undefined;
    if (window && now - window.started >= this.windowMs) {
      summary = this.summarise(window, now);
      window = undefined;
    }
    if (!window) {
      const shared = key === OVERFLOW;
      window = {
        started: now,
        written: 0,
        suppressed: 0,
        statuses: {},
        actor: shared ? null : denial.actor,
        issuer: shared ? null : denial.issuer,
        client: shared ? null : denial.client,
      };
      this.windows.set(key, window);
    }
    if (window.written < this.perWindow) {
      window.written++;
      return { write: true, summary };
    }
    window.suppressed++;
    window.statuses[denial.status] = (window.statuses[denial.status] ?? 0) + 1;
    return { write: false, summary };
  }

  /** Summaries of the windows that have ended (all of them with `all`, at shutdown); forgets those windows. */
  drain(now = Date.now(), all = false): DenialSummary[] {
    const summaries: DenialSummary[] = [];
    for (const [key, window] of this.windows) {
      if (!all && now - window.started < this.windowMs) continue;
      this.windows.delete(key);
      const summary = this.summarise(window, now);
      if (summary) summaries.push(summary);
    }
    return summaries;
  }

  private summarise(window: Window, now: number): DenialSummary | undefined {
    if (!window.suppressed) return undefined;
    return {
      actor: window.actor,
      detail: {
        issuer: window.issuer,
        client: window.client,
        suppressed: window.suppressed,
        statuses: window.statuses,
        window_start: new Date(window.started).toISOString(),
        window_end: new Date(Math.min(now, window.started + this.windowMs)).toISOString(),
      },
    };
  }
}
