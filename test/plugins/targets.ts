/**
 * The real targets the conformance suite runs every plugin against. Adding a plugin means adding one
 * entry here: its factory, a working connection and role, a role whose creation fails half way, and how
 * to see from outside whether an account exists.
 */
import { PluginFactory, RoleSettings } from '../../plugins/contract';
import { postgresPlugin } from '../../plugins/postgres/postgres.plugin';
import { TARGET_URL } from '../support/services';
import { rolesLike } from '../support/target';

export interface ConformanceTarget {
  name: string;
  factory: PluginFactory<any, any>;
  connection: Record<string, unknown>;
  role: Record<string, unknown>;
  /** A role whose creation succeeds in its first step and fails in a later one. */
  failingRole: Record<string, unknown>;
  /** Roles whose settings carry hostile values; creating with them must fail cleanly or be harmless. */
  hostileRoles: Record<string, unknown>[];
  accountExists(username: string): Promise<boolean>;
  /** Checks, from outside the plugin, that the target accepts the credential. */
  canLogin?(username: string, password: string): Promise<boolean>;
  /** Opens a session with the credential and returns a function telling whether it is still alive. */
  openSession?(username: string, password: string): Promise<() => Promise<boolean>>;
}

export function parseRole(target: ConformanceTarget, role: Record<string, unknown>): RoleSettings {
  return target.factory.roleSchema.parse(role) as RoleSettings;
}

export const TARGETS: ConformanceTarget[] = [
  {
    name: 'postgres',
    factory: postgresPlugin,
    connection: { url: TARGET_URL, scram_iterations: 1 },
    role: { member_of: ['tessera_test_readonly'] },
    failingRole: {
      creation_statements: [
        'CREATE ROLE {{name}} WITH LOGIN PASSWORD {{password}} VALID UNTIL {{expiration}}',
        'GRANT SELECT ON table_that_does_not_exist TO {{name}}',
      ],
    },
    hostileRoles: [
      { member_of: ['tessera_test_readonly", "pg_write_all_data'] },
      { member_of: ["x'; DROP TABLE widgets; --"] },
      { member_of: ['rôle\\"; SELECT 1; --'] },
    ],
    accountExists: async (username) => (await rolesLike(username)).includes(username),
    openSession: async (username, password) => {
      const { Client } = await import('pg');
      const url = new URL(TARGET_URL);
      const client = new Client({ host: url.hostname, port: Number(url.port), database: url.pathname.slice(1), user: username, password });
      client.on('error', () => undefined);
      await client.connect();
      return async () =>
        client.query('SELECT 1').then(
          () => true,
          () => false,
        );
    },
  },
];
