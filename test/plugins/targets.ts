import assert from 'node:assert/strict';
/**
 * The real targets the conformance suite runs every plugin against. Adding a plugin means adding one
 * entry here: its factory, a working connection and role, a role whose creation fails half way, and how
 * to see from outside whether an account exists.
 */
import { Client } from 'pg';
import mysql from 'mysql2/promise';
import { PluginFactory, RoleSettings, VerifyRequest } from '../../plugins/contract';
import { CreateUserCommand, IAMClient } from '@aws-sdk/client-iam';
import { awsIamPlugin } from '../../plugins/aws-iam/aws-iam.plugin';
import { IamTestServer } from '../support/iam-server';
import { federatedUserName, roleSessionName } from '../../plugins/aws-iam/aws-sts';
import { mysqlPlugin } from '../../plugins/mysql/mysql.plugin';
import { postgresPlugin } from '../../plugins/postgres/postgres.plugin';
import { redisPlugin } from '../../plugins/redis/redis.plugin';
import { REDIS_CANARY_KEY, REDIS_TARGET_URL, aclUser, redisSession, sessionAlive, withRedisAdmin } from '../support/redis';
import { mysqlUsersLike, withMysqlAdmin } from '../support/mysql';
import { MYSQL_ADMIN_URL, TARGET_URL } from '../support/services';
import { rolesLike, withAdmin } from '../support/target';

export interface HostileRole {
  settings: Record<string, unknown>;
  /** 'refused': the role schema or the target refuses it cleanly. 'created': it works, as data. */
  outcome: 'refused' | 'created';
  /** For 'created': checks on the target that the hostile value stayed a value. */
  check?(username: string): Promise<void> | void;
}

export interface ConformanceTarget {
  name: string;
  factory: PluginFactory<any, any>;
  /** Starts what the target needs (e.g. the IAM test server); returns the connection config. */
  setup?(): Promise<void>;
  teardown?(): Promise<void>;
  connection(): Record<string, unknown>;
  role: Record<string, unknown>;
  /** A role whose creation succeeds in its first step and fails in a later one. */
  failingRole: Record<string, unknown>;
  hostileRoles: HostileRole[];
  accountExists(username: string): Promise<boolean>;
  /** Something the hostile values would destroy if they reached the target as SQL. */
  canaryIntact(): Promise<boolean>;
  /** Opens a session with the credential and returns a function telling whether it is still alive. */
  openSession?(username: string, password: string): Promise<() => Promise<boolean>>;
  /** False where the target's stand-in cannot check a secret (the IAM test server reads only key ids). */
  checksSecrets?: boolean;
  /** How to verify the credentials a create returned (default: username and password). */
  verifyArgs?(credentials: Record<string, unknown>): VerifyRequest;
}

export function verifyArgsOf(target: ConformanceTarget, credentials: Record<string, unknown>): VerifyRequest {
  return target.verifyArgs?.(credentials) ?? { username: String(credentials.username), password: String(credentials.password) };
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
  connection: () => ({ url: TARGET_URL, scram_iterations: 1 }),
  role: { member_of: ['tessera_test_readonly'] },
  failingRole: {
    creation_statements: [
      'CREATE ROLE {{name}} WITH LOGIN PASSWORD {{password}} VALID UNTIL {{expiration}}',
      'GRANT SELECT ON table_that_does_not_exist TO {{name}}',
    ],
  },
  hostileRoles: [
    { settings: { member_of: ['tessera_test_readonly", "pg_write_all_data'] }, outcome: 'refused' },
    { settings: { member_of: ["x'; DROP TABLE widgets; --"] }, outcome: 'refused' },
    { settings: { member_of: ['rôle\\"; SELECT 1; --'] }, outcome: 'refused' },
    { settings: { creation_statements: ['CREATE ROLE {{name}} LOGIN; DROP TABLE {{table}}'] }, outcome: 'refused' },
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
  connection: () => ({ url: MYSQL_ADMIN_URL }),
  role: { grants: ['SELECT ON test.*'] },
  failingRole: {
    creation_statements: ['CREATE USER {{name}} IDENTIFIED BY {{password}}', 'GRANT SELECT ON test.table_that_does_not_exist TO {{name}}'],
  },
  hostileRoles: [
    { settings: { grants: ["SELECT ON test.* TO 'x'@'%'; DROP TABLE test.tessera_widgets"] }, outcome: 'refused' },
    { settings: { grants: ['ALL ON *.* -- comment'] }, outcome: 'refused' },
    { settings: { grants: ['SELECT ON test.nonexistent_table'] }, outcome: 'refused' },
    { settings: { grants: ['SELECT ON `test'] }, outcome: 'refused' }, // would run into the next statement of a batch
    { settings: { grants: ['SELECT ON test.* TO tessera_other'] }, outcome: 'refused' }, // words after the object
    { settings: { creation_statements: ["CREATE USER {{name}} IDENTIFIED BY '{{password}}'"] }, outcome: 'refused' },
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

const iamServer = new IamTestServer();
let iamEndpoint = '';
/** A statement whose strings try to close the JSON and add an allow-everything statement. */
const sneakyResource = 'arn:aws:s3:::bucket/*"},{"Effect":"Allow","Action":"*","Resource":"*';

const awsIam: ConformanceTarget = {
  name: 'aws-iam',
  factory: awsIamPlugin,
  setup: async () => {
    iamEndpoint = await iamServer.start();
    iamServer.createGroup('tessera-readers');
    const iam = new IAMClient({ region: 'us-east-1', endpoint: iamEndpoint, credentials: { accessKeyId: 'AKIDTESSERAADMIN0000', secretAccessKey: 'x' } });
    await iam.send(new CreateUserCommand({ UserName: 'tessera-canary' }));
    iam.destroy();
  },
  checksSecrets: false,
  teardown: () => iamServer.stop(),
  connection: () => ({ region: 'us-east-1', endpoint: iamEndpoint, access_key_id: 'AKIDTESSERAADMIN0000', secret_access_key: 'test-secret', max_attempts: 1 }),
  role: {
    inline_policy: { Version: '2012-10-17', Statement: [{ Effect: 'Allow', Action: 's3:GetObject', Resource: '*' }] },
    policy_arns: ['arn:aws:iam::aws:policy/ReadOnlyAccess'],
    groups: ['tessera-readers'],
  },
  failingRole: {
    inline_policy: { Version: '2012-10-17', Statement: [{ Effect: 'Allow', Action: 's3:GetObject', Resource: '*' }] },
    groups: ['group-that-does-not-exist'],
  },
  hostileRoles: [
    {
      settings: { inline_policy: { Version: '2012-10-17', Statement: [{ Effect: 'Allow', Action: 's3:GetObject', Resource: sneakyResource }] } },
      outcome: 'created',
      check: (username) => {
        const doc = iamServer.policyDocument(username, 'tessera') as { Statement: { Resource: string }[] };
        assert.deepStrictEqual(doc.Statement.map((st) => st.Resource), [sneakyResource], 'policy structure changed');
      },
    },
    { settings: { policy_arns: ['arn:aws:iam::aws:policy/ReadOnly"Access'] }, outcome: 'refused' },
    { settings: { groups: ['readers&Action=DeleteUser'] }, outcome: 'refused' },
    { settings: { inline_policy: { Version: '2012-10-17', Statement: [{ Effect: 'Allow', Action: '*', Resource: 'x'.repeat(3000) }] } }, outcome: 'refused' },
  ],
  accountExists: async (username) => iamServer.hasUser(username),
  canaryIntact: async () => iamServer.hasUser('tessera-canary'),
  verifyArgs: (c) => ({ username: String(c.iam_user), password: String(c.secret_access_key), keyId: String(c.access_key_id) }),
};

/** Lease users live in tsr_…; the `default` user (the broker's own queue connection) is never touched. */
const redisTarget: ConformanceTarget = {
  name: 'redis',
  factory: redisPlugin,
  setup: () => withRedisAdmin(async (admin) => void (await admin.set(REDIS_CANARY_KEY, 'intact'))),
  connection: () => ({ url: REDIS_TARGET_URL }),
  role: { acl: '~tessera:conf:* +get +set +ping' },
  // Passes the plugin's grammar; Redis refuses the unknown command, so the one ACL SETUSER fails.
  failingRole: { acl: '~tessera:conf:* +get +no_such_command_tessera' },
  hostileRoles: [
    { settings: { acl: '~tessera:conf:* +get +acl' }, outcome: 'refused' },
    { settings: { acl: '~* +@all' }, outcome: 'refused' },
    { settings: { acl: '+get +config|set' }, outcome: 'refused' },
    { settings: { acl: '~tessera:conf:* +get >chosen-password' }, outcome: 'refused' },
    { settings: { acl: '+get nopass' }, outcome: 'refused' },
    { settings: { acl: '+get\r\nACL SETUSER default off' }, outcome: 'refused' },
    { settings: { acl: '(+flushall ~*)' }, outcome: 'refused' },
    { settings: { acl: '+get', allow_admin: 'yes' }, outcome: 'refused' },
    {
      // One token is one argument: a pattern that reads like more rules stays one key pattern.
      settings: { acl: '~tessera:conf:*"+@all&*' },
      outcome: 'created',
      check: async (username) => {
        const user = await aclUser(username);
        assert.equal(user?.keys, '~tessera:conf:*"+@all&*');
        assert.equal(user?.commands, '-@all');
        assert.equal(user?.channels, '');
      },
    },
  ],
  accountExists: async (username) => (await aclUser(username)) !== null,
  canaryIntact: () =>
    withRedisAdmin(async (admin) => {
      const flags = ((await aclUser('default'))?.flags ?? []) as string[];
      return (await admin.get(REDIS_CANARY_KEY)) === 'intact' && flags.includes('on');
    }),
  openSession: async (username, password) => {
    const conn = await redisSession(username, password);
    return () => sessionAlive(conn);
  },
};

/**
 * aws-iam roles with STS credentials, each against an IAM test server of its own: leases are sessions,
 * not accounts, so "exists" means a live session named for the lease.
 */
function awsStsTarget(kind: 'assumed_role' | 'federation_token'): ConformanceTarget {
  const server = new IamTestServer();
  let endpoint = '';
  const policy = (Resource: string, Effect = 'Allow') => ({ Version: '2012-10-17', Statement: [{ Effect, Action: 's3:GetObject', Resource }] });
  const sessionName = kind === 'assumed_role' ? roleSessionName : federatedUserName;
  const sessionOf = (username: string) => server.stsSessions().find((s) => s.sessionName === sessionName(username) && s.expires > new Date());
  const roleArn = 'arn:aws:iam::123456789012:role/tessera-conformance';
  const settings = (extra: Record<string, unknown>) => (kind === 'assumed_role' ? { credential_type: kind, role_arns: [roleArn], ...extra } : { credential_type: kind, policy: policy('*'), ...extra });
  const policyKey = kind === 'assumed_role' ? 'session_policy' : 'policy';
  return {
    name: `aws-iam (${kind})`,
    factory: awsIamPlugin,
    setup: async () => {
      endpoint = await server.start();
      expect(server.createRole('tessera-conformance')).toBe(roleArn);
      const iam = new IAMClient({ region: 'us-east-1', endpoint, credentials: { accessKeyId: 'AKIDTESSERAADMIN0000', secretAccessKey: 'x' } });
      await iam.send(new CreateUserCommand({ UserName: 'tessera-canary' }));
      iam.destroy();
    },
    teardown: () => server.stop(),
    checksSecrets: false,
    connection: () => ({ region: 'us-east-1', endpoint, access_key_id: 'AKIDTESSERAADMIN0000', secret_access_key: 'test-secret', max_attempts: 1 }),
    role: settings({ [policyKey]: policy('*') }),
    // AssumeRole on a role that does not exist (AccessDenied); a federation policy IAM finds malformed.
    failingRole: kind === 'assumed_role' ? settings({ role_arns: ['arn:aws:iam::123456789012:role/missing'] }) : settings({ policy: policy('*', 'Permit') }),
    hostileRoles: [
      {
        settings: settings({ [policyKey]: policy(sneakyResource) }),
        outcome: 'created',
        check: (username) => {
          const doc = JSON.parse(sessionOf(username)?.policy ?? '{}') as { Statement: { Resource: string }[] };
          assert.deepStrictEqual(doc.Statement.map((st) => st.Resource), [sneakyResource], 'policy structure changed');
        },
      },
      { settings: settings({ role_arns: [`${roleArn}&Action=DeleteRole`] }), outcome: 'refused' },
      { settings: settings({ external_id: 'x"&Action=DeleteRole' }), outcome: 'refused' },
      { settings: settings({ [policyKey]: policy('x'.repeat(3000)) }), outcome: 'refused' },
    ],
    accountExists: async (username) => sessionOf(username) !== undefined,
    canaryIntact: async () => server.hasUser('tessera-canary'),
    verifyArgs: (c) => ({ username: String(c.arn), password: String(c.secret_access_key), keyId: String(c.access_key_id), token: String(c.session_token) }),
  };
}

const awsAssumedRole = awsStsTarget('assumed_role');
const awsFederationToken = awsStsTarget('federation_token');

export const TARGETS: ConformanceTarget[] = [postgres, mysqlTarget, awsIam, redisTarget, awsAssumedRole, awsFederationToken];

/** The IAM test server's state, for tests that look beyond the plugin (keys, policies, groups). */
export const iamTestServer = iamServer;
