import { z } from 'zod';
import { parseDuration } from '../../plugins/contract';
import { DomainError } from '../common/errors';

/** A request duration: "90s", "15m", "1h" or integer seconds; at least 1 s. */
export const durationInput = z.union([z.string(), z.number()]).transform((value, ctx) => {
  const seconds = parseDuration(value);
  if (seconds === undefined) {
    ctx.addIssue({ code: 'custom', message: 'must be a duration such as "90s", "15m", "1h" or whole seconds' });
    return z.NEVER;
  }
  if (seconds < 1) {
    ctx.addIssue({ code: 'custom', message: 'must be at least 1 second' });
    return z.NEVER;
  }
  return seconds;
});

export const runIdInput = z.string().regex(/^[A-Za-z0-9._:@/-]{1,128}$/, 'must be 1-128 characters of letters, digits and . _ : @ / -');

/** Parses input with a schema; invalid values are a 422 naming the field. */
export function parseInput<S extends z.ZodType>(schema: S, input: unknown, where = 'body'): z.infer<S> {
  const result = schema.safeParse(input ?? {});
  if (result.success) return result.data;
  const issue = result.error.issues[0];
  const field = issue.path.length ? issue.path.join('.') : where;
  const message = issue.code === 'unrecognized_keys' ? `unknown field(s): ${issue.keys.join(', ')}` : issue.message;
  throw new DomainError('invalid', 'invalid_request', `${field}: ${message}`);
}
