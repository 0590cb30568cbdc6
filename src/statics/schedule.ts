import { parseExpression } from 'cron-parser';

export interface Cadence {
  rotate_every?: number;
  rotate_cron?: string;
  window?: string;
}

/**
 * When a static secret is next due, counted from its last rotation: `rotate_every` after it, or the
 * next `rotate_cron` time (UTC); then moved, if needed, to the next start of the UTC `window`.
 * Null when the secret rotates only on demand.
 */
export function nextRotation(cadence: Cadence, from: Date): Date | null {
  let next: Date;
  if (cadence.rotate_every !== undefined) next = new Date(from.getTime() + cadence.rotate_every * 1000);
  else if (cadence.rotate_cron !== undefined) next = parseExpression(cadence.rotate_cron, { utc: true, currentDate: from }).next().toDate();
  else return null;
  return cadence.window ? intoWindow(next, cadence.window) : next;
}

/** The first moment at or after `at` inside the daily UTC window "HH:MM-HH:MM" (which may wrap midnight). */
export function intoWindow(at: Date, window: string): Date {
  const [start, end] = window.split('-').map((t) => {
    const [h, m] = t.split(':').map(Number);
    return h * 60 + m;
  });
  const minute = at.getUTCHours() * 60 + at.getUTCMinutes();
  const inside = start <= end ? minute >= start && minute < end : minute >= start || minute < end;
  if (inside) return at;
  const next = new Date(Date.UTC(at.getUTCFullYear(), at.getUTCMonth(), at.getUTCDate(), Math.floor(start / 60), start % 60));
  if (next.getTime() <= at.getTime()) next.setUTCDate(next.getUTCDate() + 1);
  return next;
}
