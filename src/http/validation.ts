import { z } from 'zod';
import { duration } from '../../plugins/contract';
import { DomainError } from '../common/errors';

/** A request duration: "90s", "15m", "1h" or integer seconds; at least 1 s. */
export const durationInput = duration();

/** A subject named in a request (an owner filter, a bootstrap subject, a completed workload). */
export const subjectInput = z.string().min(1).max(2048).regex(/^[^\u0000-\u001f\u007f]+$/, 'must not contain control characters');

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
