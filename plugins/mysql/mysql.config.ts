import { z } from 'zod';
import { durationSeconds, statementTemplates } from '../contract';

/** An account host as MySQL writes it: '%', a name, an address or a pattern; never quotes or spaces. */
const accountHost = z.string().regex(/^[A-Za-z0-9%_.:\/-]{1,255}$/, 'must be a MySQL account host such as "%" or "10.0.%"');

export const mysqlConnectionSchema = z
  .object({
    url: z.string().regex(/^(mysql|mariadb):\/\//, 'must be a mysql:// URL'),
    /** Host part of the accounts Tessera creates ('name'@'%' by default). */
    user_host: accountHost.default('%'),
    pool_size: z.number().int().min(1).max(200).default(10),
    connect_timeout: durationSeconds.default(5),
  })
  .strict();
export type MysqlConnectionConfig = z.infer<typeof mysqlConnectionSchema>;

export const MYSQL_CREATION_PLACEHOLDERS = ['name', 'password'] as const;
export const MYSQL_REVOCATION_PLACEHOLDERS = ['name'] as const;

/**
 * A grant as written after GRANT and before TO: privileges, ON, an object. Operator-written, but one
 * statement only: no ";", no quotes other than backticks around identifiers, no comments.
 */
const grant = z
  .string()
  // Nothing may follow the object: no clause goes between it and TO, and words there ("TO bob", "AS")
  // could hand the privilege to another account.
  .regex(/^[A-Za-z][A-Za-z ,_()`]* ON [A-Za-z0-9_`.*$-]+$/, 'must look like "SELECT, INSERT ON db.*" (one grant, no ";" or quotes)')
  .refine((g) => !/--|\/\*|#/.test(g), 'must not contain comments')
  // Issues are sent several statements to a query: an identifier left open would run into the next one.
  .refine((g) => (g.match(/`/g) ?? []).length % 2 === 0, 'must close every `quoted` identifier');

export const mysqlRoleSchema = z
  .object({
    /** GRANT <grant> TO the new account, e.g. "SELECT ON test.*". */
    grants: z.array(grant).default([]),
    /** Replace the default CREATE USER + GRANTs; {{name}} is 'user'@'host' quoted, {{password}} a literal. */
    creation_statements: statementTemplates(MYSQL_CREATION_PLACEHOLDERS).optional(),
    revocation_statements: statementTemplates(MYSQL_REVOCATION_PLACEHOLDERS).optional(),
  })
  .strict();
export type MysqlRoleSettings = z.infer<typeof mysqlRoleSchema>;
