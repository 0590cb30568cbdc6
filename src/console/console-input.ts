/** What the console's forms and links may send: parsed with zod, as the API's inputs are. */
import { z } from 'zod';
import { NAME } from '../config/config.schema';
import { DomainError } from '../common/errors';
import { runIdInput, subjectInput } from '../http/validation';
import { LEASE_STATES } from '../leases/lease.model';

/** An empty form field (a select's "any") means "not given". */
const optional = <S extends z.ZodType>(schema: S) => z.preprocess((v) => (v === '' ? undefined : v), schema.optional());
const name = z.string().regex(NAME, 'not a valid name');
const csrf = z.string().max(100);
/** An issuer's name (identity.issuers[].name). */
const issuerName = z.string().min(1).max(64);

/** A subject means something only with its issuer (DESIGN §6): an owner is matched under one issuer. */
const ownerWithIssuer = (f: { owner?: string; owner_issuer?: string }) => (f.owner === undefined) === (f.owner_issuer === undefined);
const OWNER_WITH_ISSUER = { message: "give the owner together with the owner's issuer", path: ['owner_issuer'] };

export const leaseListQuery = z
  .object({
    role: optional(name),
    state: optional(z.enum(LEASE_STATES)),
    owner: optional(subjectInput),
    run_id: optional(runIdInput),
    cursor: optional(z.string().max(512)),
    bulk: optional(z.string().regex(/^\d{1,9}$/).transform(Number)),
  })
  .strict();

export const bulkQuery = z
  .object({
    role: optional(name),
    connection: optional(name),
    owner: optional(subjectInput),
    owner_issuer: optional(issuerName),
    run_id: optional(runIdInput),
  })
  .strict()
  .refine((f) => f.role || f.connection || f.owner || f.run_id, { message: 'give a role, connection, owner or run id to match' })
  .refine(ownerWithIssuer, OWNER_WITH_ISSUER);

export const bulkBody = z
  .object({
    _csrf: csrf,
    role: optional(name),
    connection: optional(name),
    owner: optional(subjectInput),
    owner_issuer: optional(issuerName),
    run_id: optional(runIdInput),
    expected: z.string().regex(/^\d{1,9}$/, 'must be the count you confirmed').transform(Number),
  })
  .strict()
  .refine((f) => f.role || f.connection || f.owner || f.run_id, { message: 'give a role, connection, owner or run id to match' })
  .refine(ownerWithIssuer, OWNER_WITH_ISSUER);

export const leaseDetailQuery = z.object({ confirm: optional(z.literal('revoke')), revoked: optional(z.string().max(20)) }).strict();
export const csrfBody = z.object({ _csrf: csrf }).strict();
export const emergencyBody = z.object({ _csrf: csrf, connection: name }).strict();
export const rolesQuery = z
  .object({ confirm: optional(name), revoked: optional(name), before: optional(z.string().datetime({ offset: true })) })
  .strict();
export const staticsQuery = z.object({ emergency: optional(name) }).strict();
const rotationId = z.string().regex(/^rot_[A-Za-z0-9_-]{16}$/, 'not a rotation id');
export const rotationsQuery = z
  .object({ id: z.union([rotationId, z.array(rotationId).min(1).max(100)]).transform((v) => (Array.isArray(v) ? v : [v])) })
  .strict();
export const auditQuery = z
  .object({
    type: optional(z.string().regex(/^[a-z_.]{1,64}$/, 'not an event type')),
    subject: optional(subjectInput),
    before: optional(z.string().regex(/^\d{1,18}$/, 'not an event id')),
  })
  .strict();

/** Verify chain keeps the page's filter. */
export const verifyBody = z
  .object({
    _csrf: csrf,
    type: optional(z.string().regex(/^[a-z_.]{1,64}$/, 'not an event type')),
    subject: optional(subjectInput),
  })
  .strict();

/** Parses input; anything invalid is a 400 naming the field (the page shows it). */
export function parseForm<S extends z.ZodType>(schema: S, input: unknown): z.infer<S> {
  const result = schema.safeParse(input ?? {});
  if (result.success) return result.data;
  const issue = result.error.issues[0];
  const field = issue.path.length ? `${issue.path.join('.')}: ` : '';
  const message = issue.code === 'unrecognized_keys' ? `unknown field(s): ${issue.keys.join(', ')}` : issue.message;
  throw new DomainError('malformed', 'invalid_input', `${field}${message}`);
}
