/**
 * Durations as the config file and the API write them: "90s", "15m", "1h", "2d", a combination such as
 * "1h30m", or an integer number of seconds. Shared by the broker and plugin configs so both read
 * durations the same way.
 */
const UNIT_SECONDS: Record<string, number> = { s: 1, m: 60, h: 3600, d: 86400 };
const PART = /(\d+)([smhd])/g;
/** 100 years: far beyond any sensible TTL, small enough that date arithmetic stays exact. */
export const MAX_DURATION_SECONDS = 100 * 365 * 86400;

/** Parses a duration into whole seconds; returns undefined for anything malformed or out of range. */
export function parseDuration(input: unknown): number | undefined {
  let seconds: number;
  if (typeof input === 'number') {
    if (!Number.isSafeInteger(input)) return undefined;
    seconds = input;
  } else if (typeof input === 'string') {
    const text = input.trim();
    if (/^\d{1,12}$/.test(text)) {
      seconds = Number(text);
    } else {
      if (text.length === 0 || text.length > 32 || !/^(\d+[smhd])+$/.test(text)) return undefined;
      seconds = 0;
      for (const [, n, unit] of text.matchAll(PART)) seconds += Number(n) * UNIT_SECONDS[unit];
    }
  } else {
    return undefined;
  }
  if (!Number.isSafeInteger(seconds) || seconds < 0 || seconds > MAX_DURATION_SECONDS) return undefined;
  return seconds;
}


