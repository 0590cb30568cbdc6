import { z } from 'zod';
import { durationSeconds, statementTemplates } from '../contract';

export const postgresConnectionSchema = z
  .object({
    url: z.string().regex(/^postgres(ql)?:\/\//, 'must be a postgres:// URL'),
    /**
     * PBKDF2 rounds in the SCRAM verifiers the broker writes. Low by default: broker passwords carry
     * 192 random bits, for which stretching adds nothing; see plugins/postgres/README.md (and the
     * clients that insist on 4096).
     */
    scram_iterations: z.number().int().min(1).max(1_000_000).default(16),
    pool_size: z.number().int().min(1).max(200).default(10),
    connect_timeout: durationSeconds.default(5),
    statement_timeout: durationSeconds.default(15),
    /**
     * When a rotation logs in to prove a password works: with every new password (the default), or
     * once per role until the server, the role, its pg_hba rules or configuration change, trusting
     * pg_authid in between. The second suits only a broker that reaches PostgreSQL directly; see
     * plugins/postgres/README.md, "Static secrets", and set-verifiers.ts.
     */
    verify_logins: z.enum(['every_password', 'once_per_configuration']).default('every_password'),
  })
  .strict();
export type PostgresConnectionConfig = z.infer<typeof postgresConnectionSchema>;

export const CREATION_PLACEHOLDERS = ['name', 'password', 'expiration'] as const;
export const REVOCATION_PLACEHOLDERS = ['name'] as const;

export const postgresRoleSchema = z
  .object({
    /** Existing group roles the new login role joins (GRANT ... TO, via CREATE ROLE ... IN ROLE). */
    member_of: z.array(z.string().min(1).max(63)).default([]),
    /** Replace the default CREATE ROLE; run in one transaction. {{password}} is a SCRAM verifier. */
    creation_statements: statementTemplates(CREATION_PLACEHOLDERS).optional(),
    /** Run before the role is dropped (e.g. to revoke grants in other schemas). */
    revocation_statements: statementTemplates(REVOCATION_PLACEHOLDERS).optional(),
  })
  .strict();
export type PostgresRoleSettings = z.infer<typeof postgresRoleSchema>;
