/**
 * The real targets the conformance suite runs every plugin against. Adding a plugin means adding one
 * entry here: its factory, a working connection and role, a role whose creation fails half way, and how
 * to see from outside whether an account exists.
 */
import { Client } from 'pg';
import mysql from 'mysql2/promise';
import { PluginFactory, RoleSettings } from '../../plugins/contract';
import { mysqlPlugin } from '../../plugins/mysql/mysql.plugin';
import { postgresPlugin } from '../../plugins/postgres/postgres.plugin';
import { mysqlUsersLike, withMysqlAdmin } from '../support/mysql';
import { MYSQL_ADMIN_URL, TARGET_URL } from '../support/services';
import { rolesLike, withAdmin } from '../support/target';

export interface ConformanceTarget {
  name: string;
  factory: PluginFactory<any, any>;
  connection: Record<string, unknown>;
  role: Record<string, unknown>;
  /** A role whose creation succeeds in its first step and fails in a later one. */
  failingRole: Record<string, unknown>;
  /** Role settings with hostile values: refused by the role schema, or failing cleanly at create. */
  hostileRoles: Record<string, unknown>[];
  accountExists(username: string): Promise<boolean>;
  /** Something the hostile values would destroy if they reached the target as SQL. */
  canaryIntact(): Promise<boolean>;
  /** Opens a session with the credential and returns a function telling whether it is still alive. */
  openSession?(username: string, password: string): Promise<() => Promise<boolean>>;
  /** Key-based targets: the id the plugin returned, needed to verify. */
  keyIdOf?(credentials: Record<string, unknown>): string;
}

export function parseRole(target: ConformanceTarget, role: Record<string, unknown>): RoleSettings {
  return target.factory.roleSchema.parse(role) as RoleSettings;
}

const alive = (query: () => Promise<unknown>) => async () =>
  query().then(
    () => true,
    () => false,
  );

const postgres: ConformanceTarget = {
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
    { creation_statements: ['CREATE ROLE {{name}} LOGIN; DROP TABLE {{table}}'] },
  ],
  accountExists: async (username) => (await rolesLike(username)).includes(username),
  canaryIntact: async () => (await withAdmin('tessera_target', (c) => c.query(`SELECT to_regclass('public.widgets') AS t`))).rows[0].t !== null,
  openSession: async (username, password) => {
    const url = new URL(TARGET_URL);
    const client = new Client({ host: url.hostname, port: Number(url.port), database: url.pathname.slice(1), user: username, password });
    client.on('error', () => undefined);
    await client.connect();
    return alive(() => client.query('SELECT 1'));
  },
};

const mysqlTarget: ConformanceTarget = {
  name: 'mysql',
  factory: mysqlPlugin,
  connection: { url: MYSQL_ADMIN_URL },
  role: { grants: ['SELECT ON test.*'] },
  failingRole: {
    creation_statements: ['CREATE USER {{name}} IDENTIFIED BY {{password}}', 'GRANT SELECT ON test.table_that_does_not_exist TO {{name}}'],
  },
  hostileRoles: [
    { grants: ["SELECT ON test.* TO 'x'@'%'; DROP TABLE test.tessera_widgets"] },
    { grants: ['ALL ON *.* -- comment'] },
    { grants: ['SELECT ON test.nonexistent_table'] },
    { creation_statements: ["CREATE USER {{name}} IDENTIFIED BY '{{password}}'"] },
  ],
  accountExists: async (username) => (await mysqlUsersLike(username)).includes(username),
  canaryIntact: async () =>
    withMysqlAdmin(async (c) => {
      const [rows] = await c.query(`SELECT count(*) AS n FROM information_schema.TABLES WHERE TABLE_SCHEMA = 'test' AND TABLE_NAME = 'tessera_widgets'`);
      return Number((rows as { n: number }[])[0].n) === 1;
    }),
  openSession: async (username, password) => {
    const url = new URL(MYSQL_ADMIN_URL);
    const conn = await mysql.createConnection({ host: url.hostname, port: Number(url.port || 3306), user: username, password });
    conn.on('error', () => undefined);
    return alive(() => conn.query('SELECT 1'));
  },
};

export const TARGETS: ConformanceTarget[] = [postgres, mysqlTarget];
