import { readFileSync } from 'node:fs';
import { parse as parseYaml } from 'yaml';
import { z } from 'zod';
import { PLUGINS } from '../../plugins';
import { DEFAULT_LEASE_TERMS, LeaseTerms, RoleSettings } from '../../plugins/contract';
import { subjectRuleProblems } from '../policy/subject-rules';
import { RawConfig, configSchema } from './config.schema';
import { protectQueueUser, redisStaticSecretProblems } from './redis-connections';

export interface ConnectionConfig {
  name: string;
  plugin: string;
  /** Parsed by the plugin's own connection schema. */
  settings: unknown;
}

export interface RoleConfig {
  name: string;
  connection: string;
  plugin: string;
  defaultTtl: number;
  maxTtl: number;
  /** Parsed by the plugin's own role schema. */
  settings: RoleSettings;
  /** What its leases allow (renewable, revocable, TTL bounds), as its plugin says; absent: the defaults. */
  terms?: LeaseTerms;
}

export type TesseraConfig = Omit<RawConfig, 'roles' | 'connections'> & {
  /** Maps, not objects, so a hostile name such as "__proto__" or "constructor" finds nothing. */
  roles: ReadonlyMap<string, RoleConfig>;
  connections: ReadonlyMap<string, ConnectionConfig>;
  source: string;
};

export class ConfigError extends Error {
  constructor(message: string) {
    super(message);
    this.name = 'ConfigError';
  }
}

export const DEFAULT_CONFIG_PATH = 'config/tessera.yaml';

export function resolveConfigPath(flag: string | undefined, env: NodeJS.ProcessEnv = process.env): string {
  return flag || env.TESSERA_CONFIG || DEFAULT_CONFIG_PATH;
}

export function loadConfigFile(path: string, env: NodeJS.ProcessEnv = process.env): TesseraConfig {
  let text: string;
  try {
    text = readFileSync(path, 'utf8');
  } catch (err) {
    throw new ConfigError(`config: cannot read ${path}: ${(err as NodeJS.ErrnoException).code ?? err}`);
  }
  let doc: unknown;
  try {
    doc = parseYaml(text);
  } catch (err) {
    throw new ConfigError(`config: ${path} is not valid YAML: ${(err as Error).message.split('\n')[0]}`);
  }
  return parseConfig(doc, env, path);
}

/** Validates a parsed document; every error names the key it is about. */
export function parseConfig(doc: unknown, env: NodeJS.ProcessEnv = process.env, source = '<inline>'): TesseraConfig {
  const substituted = substituteEnv(doc, env, []);
  const result = configSchema.safeParse(substituted);
  if (!result.success) throw new ConfigError(formatIssues(source, result.error.issues));
  const raw = result.data;
  const problems: string[] = [];

  const connections = new Map<string, ConnectionConfig>();
  for (const [name, block] of Object.entries(raw.connections)) {
    const { plugin, ...rest } = block;
    const factory = Object.hasOwn(PLUGINS, plugin) ? PLUGINS[plugin] : undefined;
    if (!factory) {
      problems.push(`connections.${name}.plugin: unknown plugin "${plugin}" (known: ${Object.keys(PLUGINS).join(', ')})`);
      continue;
    }
    const parsed = factory.connectionSchema.safeParse(rest);
    if (!parsed.success) problems.push(...issueLines(['connections', name], parsed.error.issues));
    else connections.set(name, { name, plugin, settings: parsed.data });
  }
  problems.push(...protectQueueUser(connections, raw.queue.redis_url));

  const roles = new Map<string, RoleConfig>();
  for (const [name, block] of Object.entries(raw.roles)) {
    const { connection, default_ttl, max_ttl, ...rest } = block;
    const conn = connections.get(connection);
    if (!conn) {
      if (!Object.hasOwn(raw.connections, connection)) problems.push(`roles.${name}.connection: unknown connection "${connection}"`);
      continue;
    }
    if (default_ttl > max_ttl) problems.push(`roles.${name}.default_ttl: must not exceed max_ttl`);
    const parsed = PLUGINS[conn.plugin].roleSchema.safeParse(rest);
    if (!parsed.success) {
      problems.push(...issueLines(['roles', name], parsed.error.issues));
      continue;
    }
    const terms = PLUGINS[conn.plugin].leaseTerms?.(parsed.data) ?? DEFAULT_LEASE_TERMS;
    for (const [key, ttl] of [['default_ttl', default_ttl], ['max_ttl', max_ttl]] as const) {
      if (terms.minTtl !== undefined && ttl < terms.minTtl) problems.push(`roles.${name}.${key}: must be at least ${terms.minTtl}s, the shortest credential this role's target issues`);
      if (terms.maxTtl !== undefined && ttl > terms.maxTtl) problems.push(`roles.${name}.${key}: must be at most ${terms.maxTtl}s, the longest credential this role's target issues`);
    }
    roles.set(name, { name, connection, plugin: conn.plugin, defaultTtl: default_ttl, maxTtl: max_ttl, settings: parsed.data, terms });
  }

  const seen = new Map<string, string>();
  raw.identity.issuers.forEach((issuer, i) => {
    const keys = [`name ${issuer.name}`, issuer.type === 'jwt-svid' ? `trust_domain ${issuer.trust_domain}` : `issuer ${issuer.issuer}`];
    for (const key of keys) {
      if (seen.has(key)) problems.push(`identity.issuers.${i}: ${key} is already used by identity.issuers.${seen.get(key)}`);
      else seen.set(key, String(i));
    }
  });

  problems.push(...subjectRuleProblems(raw));
  raw.policies.forEach((policy, i) =>
    policy.allow.forEach((rule, j) => {
      for (const role of rule.creds ?? []) {
        if (!Object.hasOwn(raw.roles, role)) problems.push(`policies.${i}.allow.${j}.creds: unknown role "${role}"`);
      }
      for (const secret of rule.static ?? []) {
        if (!Object.hasOwn(raw.static_secrets, secret)) problems.push(`policies.${i}.allow.${j}.static: unknown static secret "${secret}"`);
      }
    }),
  );
  for (const [name, secret] of Object.entries(raw.static_secrets)) {
    const conn = connections.get(secret.connection);
    if (!Object.hasOwn(raw.connections, secret.connection)) problems.push(`static_secrets.${name}.connection: unknown connection "${secret.connection}"`);
    else if (conn && (conn.plugin === 'aws-iam') !== (secret.iam_user !== undefined)) {
      problems.push(`static_secrets.${name}: ${conn.plugin === 'aws-iam' ? 'an aws-iam connection needs iam_user' : `a ${conn.plugin} connection needs username or usernames`}`);
    }
  }

  problems.push(...redisStaticSecretProblems(raw, connections));

  if (problems.length) throw new ConfigError(`config ${source}:\n  ${problems.join('\n  ')}`);
  return { ...raw, roles, connections, source };
}

/** Replaces ${VAR} in every string value; an unset variable is an error naming the key. */
function substituteEnv(node: unknown, env: NodeJS.ProcessEnv, path: string[]): unknown {
  if (typeof node === 'string') {
    return node.replace(/\$\{([A-Za-z_][A-Za-z0-9_]*)\}/g, (_, variable: string) => {
      const value = env[variable];
      if (value === undefined) throw new ConfigError(`config: ${path.join('.')}: environment variable ${variable} is not set`);
      return value;
    });
  }
  if (Array.isArray(node)) return node.map((item, i) => substituteEnv(item, env, [...path, String(i)]));
  if (node && typeof node === 'object') {
    return Object.fromEntries(
      Object.entries(node).map(([k, v]) => {
        if (k === '__proto__') throw new ConfigError(`config: ${[...path, k].join('.')}: reserved name`);
        return [k, substituteEnv(v, env, [...path, k])];
      }),
    );
  }
  return node;
}

function issueLines(prefix: string[], issues: z.core.$ZodIssue[]): string[] {
  return issues.map((issue) => {
    const key = [...prefix, ...issue.path.map(String)].join('.') || '(top level)';
    const message =
      issue.code === 'unrecognized_keys' ? `unknown key(s) ${issue.keys.map((k) => `"${k}"`).join(', ')}` : issue.message;
    return `${key}: ${message}`;
  });
}

function formatIssues(source: string, issues: z.core.$ZodIssue[]): string {
  return `config ${source}:\n  ${issueLines([], issues).join('\n  ')}`;
}
