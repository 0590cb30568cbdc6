import { z } from 'zod';
import { parseDuration } from './duration';
import { checkTemplate } from './templates';

/** A duration in a plugin's config ("5s", "1m", or seconds), as whole seconds. */
export const durationSeconds = z.union([z.string(), z.number()]).transform((value, ctx) => {
  const parsed = parseDuration(value);
  if (parsed === undefined) ctx.addIssue({ code: 'custom', message: 'invalid duration' });
  return parsed ?? 0;
});

/** Operator-written statement templates; an unknown placeholder is an error at start-up. */
export const statementTemplates = (allowed: readonly string[]) =>
  z.array(
    z.string().min(1).superRefine((sql, ctx) => {
      const problem = checkTemplate(sql, allowed);
      if (problem) ctx.addIssue({ code: 'custom', message: problem });
    }),
  );
