import { z } from 'zod';
import { NAME } from '../config/config.schema';
import { durationInput, runIdInput, subjectInput } from '../http/validation';
import { LEASE_STATES } from './lease.model';

export const issueBody = z.object({ ttl: durationInput.optional(), run_id: runIdInput.optional() }).strict();
export const renewBody = z.object({ increment: durationInput.optional() }).strict();
export const revokeOwnedBody = z.object({ run_id: runIdInput.optional() }).strict();

const name = z.string().regex(NAME, 'not a valid name');
/** A subject as tokens carry it: printable, at most 2048 characters. */
const subject = subjectInput;
export const bulkRevokeBody = z
  .object({ role: name.optional(), connection: name.optional(), owner: subject.optional(), owner_issuer: name.optional(), run_id: runIdInput.optional() })
  .strict()
  .refine((b) => b.role || b.connection || b.owner || b.run_id, { message: 'give at least one of role, connection, owner, run_id' })
  // A subject other than a SPIFFE ID is only unique within its issuer (DESIGN §6): name the issuer too.
  .refine((b) => !b.owner || b.owner_issuer || b.owner.startsWith('spiffe://'), { message: 'owner_issuer is required with an owner that is not a SPIFFE ID (such a subject is only unique within its issuer)', path: ['owner_issuer'] })
  .refine((b) => !b.owner_issuer || b.owner, { message: 'owner_issuer goes with owner', path: ['owner_issuer'] });

export const listQuery = z
  .object({
    role: name.optional(),
    state: z.enum(LEASE_STATES).optional(),
    run_id: runIdInput.optional(),
    owner: subject.optional(),
    limit: z
      .string()
      .regex(/^\d{1,4}$/, 'must be an integer from 1 to 1000')
      .transform(Number)
      .refine((n) => n >= 1 && n <= 1000, 'must be an integer from 1 to 1000')
      .default(100),
    cursor: z.string().max(512).optional(),
  })
  .strict();

/** JSON Schemas for the OpenAPI document, generated from the same zod schemas that validate. */
export const openApi = {
  issueBody: z.toJSONSchema(z.object({ ttl: z.union([z.string(), z.number()]).optional(), run_id: z.string().optional() }), { io: 'input' }),
  renewBody: z.toJSONSchema(z.object({ increment: z.union([z.string(), z.number()]).optional() }), { io: 'input' }),
  revokeOwnedBody: z.toJSONSchema(revokeOwnedBody, { io: 'input' }),
  bulkRevokeBody: z.toJSONSchema(z.object({ role: z.string(), connection: z.string(), owner: z.string(), owner_issuer: z.string(), run_id: z.string() }).partial(), { io: 'input' }),
};
