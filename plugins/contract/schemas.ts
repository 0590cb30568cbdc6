import { z } from 'zod';
import { parseDuration } from './duration';
import { checkTemplate } from './templates';

/**
 * The one duration schema, for the config file, plugin settings and request bodies alike: "90s",
 * "15m", "1h" or whole seconds, as whole seconds, at least `min` (default 1).
 */
export const duration = (opts: { min?: number } = {}) =>
  z.union([z.string(), z.number()]).transform((value, ctx) => {
    const seconds = parseDuration(value);
    if (seconds === undefined) {
      ctx.addIssue({ code: 'custom', message: 'must be a duration such as "90s", "15m", "1h" or whole seconds' });
      return z.NEVER;
    }
    const min = opts.min ?? 1;
    if (seconds < min) {
      ctx.addIssue({ code: 'custom', message: `must be at least ${min}s` });
      return z.NEVER;
    }
    return seconds;
  });

/** A duration in a plugin's config that may be zero. */
export const durationSeconds = duration({ min: 0 });

/** Operator-written statement templates; an unknown placeholder is an error at start-up. */
export const statementTemplates = (allowed: readonly string[]) =>
  z.array(
    z.string().min(1).superRefine((sql, ctx) => {
      const problem = checkTemplate(sql, allowed);
      if (problem) ctx.addIssue({ code: 'custom', message: problem });
    }),
  );
