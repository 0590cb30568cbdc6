/**
 * The one schema of the config file (DESIGN §7). Everything that reads configuration reads the parsed
 * result of this schema; nothing else reads process.env.
 */
import { z } from 'zod';
import { parseDuration } from '../../plugins/contract';
import { isAllowedKeyUrl } from '../identity/key-sets';
import { patternProblem } from '../policy/subject-pattern';

export const NAME = /^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$/;
const name = z.string().regex(NAME, 'must be 1-64 letters, digits, "_", "." or "-", starting with a letter or digit');

/** A duration in whole seconds ("90s", "15m", "1h", or integer seconds). */
export const duration = (opts: { min?: number } = {}) =>
  z.union([z.string(), z.number()]).transform((value, ctx) => {
    const seconds = parseDuration(value);
    if (seconds === undefined) {
      ctx.addIssue({ code: 'custom', message: `invalid duration ${JSON.stringify(value)} (use e.g. "90s", "15m", "1h" or seconds)` });
      return z.NEVER;
    }
    if (seconds < (opts.min ?? 1)) {
      ctx.addIssue({ code: 'custom', message: `must be at least ${opts.min ?? 1}s` });
      return z.NEVER;
    }
    return seconds;
  });

const masterKey = z.string().refine((v) => Buffer.from(v, 'base64').length === 32 && /^[A-Za-z0-9+/]+={0,2}$/.test(v), {
  message: 'must be the base64 of exactly 32 bytes (generate one with: openssl rand -base64 32)',
});

const trustDomain = z.string().regex(/^[a-z0-9._-]{1,255}$/, 'must be a lowercase SPIFFE trust domain');
/** Key documents come over https (plain http only on loopback, for local agents and tests). */
const keyUrl = z.string().url().refine(isAllowedKeyUrl, 'must be an https:// URL (http:// only on loopback)');

const jwtSvidIssuer = z
  .object({
    name,
    type: z.literal('jwt-svid'),
    trust_domain: trustDomain,
    jwks_file: z.string().min(1).optional(),
    bundle_url: keyUrl.optional(),
    /** At most one key fetch per cooldown when tokens name an unknown kid. */
    jwks_cooldown: duration().default(30),
    /** JWT-SVIDs should name one audience; accept several only where a platform needs it. */
    allow_multiple_audiences: z.boolean().default(false),
  })
  .strict()
  .refine((i) => Boolean(i.jwks_file) !== Boolean(i.bundle_url), { message: 'give exactly one of jwks_file or bundle_url' });

const oidcIssuer = z
  .object({
    name,
    type: z.literal('oidc'),
    /** Compared exactly with the token's iss. Keys come from jwks_file, jwks_url, or else OIDC discovery. */
    issuer: keyUrl,
    jwks_file: z.string().min(1).optional(),
    jwks_url: keyUrl.optional(),
    jwks_cooldown: duration().default(30),
    allow_multiple_audiences: z.boolean().default(false),
  })
  .strict();

export const issuerSchema = z.discriminatedUnion('type', [jwtSvidIssuer, oidcIssuer]);

const allowRule = z
  .object({
    creds: z.array(name).optional(),
    static: z.array(name).optional(),
    max_ttl: duration().optional(),
  })
  .strict()
  .refine((r) => r.creds?.length || r.static?.length, { message: 'an allow rule must list creds or static' });

export const subjectPattern = z
  .string()
  .min(1)
  .max(2048)
  .superRefine((pattern, ctx) => {
    const problem = patternProblem(pattern);
    if (problem) ctx.addIssue({ code: 'custom', message: problem });
  });

const policy = z
  .object({
    name,
    subjects: z.array(subjectPattern).min(1),
    claims: z.record(z.string(), z.union([z.string(), z.number(), z.boolean()])).optional(),
    allow: z.array(allowRule).min(1),
  })
  .strict();

/** Shared keys of a role; the rest belongs to the connection's plugin and is checked by its schema. */
export const roleBase = z.object({
  connection: name,
  default_ttl: duration(),
  max_ttl: duration(),
});

const cronProblem = (expr: string): string | undefined => {
  try {
    // eslint-disable-next-line @typescript-eslint/no-require-imports
    require('cron-parser').parseExpression(expr, { utc: true });
    return undefined;
  } catch (err) {
    return `invalid cron expression: ${(err as Error).message}`;
  }
};

/** A static secret: an existing account Tessera owns and rotates (DESIGN §4). */
export const staticSecretSchema = z
  .object({
    connection: name,
    /** A database user; MySQL accounts are "name" (host %) or "name@host". */
    username: z.string().min(1).max(128).optional(),
    /** Two existing accounts for the alternating strategy. */
    usernames: z.array(z.string().min(1).max(128)).length(2).optional(),
    iam_user: z.string().regex(/^[\w+=,.@-]{1,64}$/, 'must be an IAM user name').optional(),
    strategy: z.enum(['single', 'alternating']).optional(),
    rotate_every: duration().optional(),
    rotate_cron: z
      .string()
      .min(1)
      .superRefine((expr, ctx) => {
        const problem = cronProblem(expr);
        if (problem) ctx.addIssue({ code: 'custom', message: problem });
      })
      .optional(),
    /** Rotations on cadence start only inside this UTC window, e.g. "02:00-05:00". */
    window: z.string().regex(/^([01]\d|2[0-3]):[0-5]\d-([01]\d|2[0-3]):[0-5]\d$/, 'must be "HH:MM-HH:MM" (UTC)').optional(),
    /** How long the previous secret keeps working after a rotation. */
    grace: duration({ min: 0 }).default(3600),
    /** The account's current password, to import instead of rotating at registration (use ${VAR}). */
    password: z.string().min(1).optional(),
  })
  .strict()
  .superRefine((s, ctx) => {
    const kinds = [s.username, s.usernames, s.iam_user].filter((v) => v !== undefined).length;
    if (kinds !== 1) ctx.addIssue({ code: 'custom', message: 'give exactly one of username, usernames (alternating) or iam_user' });
    const strategy = s.strategy ?? (s.usernames ? 'alternating' : 'single');
    if (strategy === 'alternating' && !s.usernames) ctx.addIssue({ code: 'custom', path: ['usernames'], message: 'alternating needs usernames: [a, b]' });
    if (strategy === 'single' && s.usernames) ctx.addIssue({ code: 'custom', path: ['strategy'], message: 'usernames: [a, b] needs strategy: alternating' });
    if (s.rotate_every !== undefined && s.rotate_cron !== undefined) ctx.addIssue({ code: 'custom', message: 'give rotate_every or rotate_cron, not both' });
    if (s.usernames && s.usernames[0] === s.usernames[1]) ctx.addIssue({ code: 'custom', path: ['usernames'], message: 'the two accounts must differ' });
    if (s.password && s.iam_user) ctx.addIssue({ code: 'custom', path: ['password'], message: 'IAM keys are not imported; Tessera makes the first key' });
  });

export const configSchema = z
  .object({
    server: z
      .object({
        host: z.string().min(1).default('127.0.0.1'),
        port: z.number().int().min(0).max(65535).default(8200),
        body_limit: z.string().regex(/^\d+(b|kb|mb)$/).default('64kb'),
        /** HTTPS; with client_ca, workloads may also authenticate with an X.509-SVID (mTLS). */
        tls: z
          .object({
            cert: z.string().min(1),
            key: z.string().min(1),
            client_ca: z.string().min(1),
            /** Trust domains whose X.509-SVIDs are accepted (default: any the client CA signed). */
            trust_domains: z.array(trustDomain).optional(),
          })
          .strict()
          .optional(),
      })
      .strict(),
    storage: z
      .object({
        postgres_url: z.string().regex(/^postgres(ql)?:\/\//, 'must be a postgres:// URL'),
        pool_size: z.number().int().min(2).max(200).default(20),
      })
      .strict(),
    queue: z
      .object({
        redis_url: z.string().regex(/^rediss?:\/\//, 'must be a redis:// URL'),
        prefix: z.string().regex(/^[A-Za-z0-9_.-]{1,64}$/).default('tessera'),
      })
      .strict(),
    encryption: z.object({ key: masterKey, previous_keys: z.array(masterKey).default([]) }).strict(),
    identity: z
      .object({
        audience: z.string().min(1),
        issuers: z.array(issuerSchema).min(1),
        /** Tokens that stay valid longer than this from now are refused. */
        max_token_lifetime: duration().default(86400),
        bootstrap: z
          .object({
            /** Lifetime of the broker-signed tokens legacy apps get for a bootstrap secret. */
            token_ttl: duration().default(900),
            /** Longest a bootstrap secret may stay valid. */
            max_secret_ttl: duration().default(86400),
          })
          .strict()
          .default({ token_ttl: 900, max_secret_ttl: 86400 }),
      })
      .strict(),
    operators: z.array(subjectPattern).default([]),
    events: z.object({ hmac_key: z.string().min(16, 'must be at least 16 characters') }).strict().optional(),
    policies: z.array(policy).default([]),
    connections: z.record(name, z.object({ plugin: z.string().min(1) }).passthrough()),
    roles: z.record(name, roleBase.passthrough()).default({}),
    reconcile_every: duration().default(30),
    /** A lease still `pending` this long after it was created was abandoned by a crash. */
    pending_timeout: duration().default(60),
    /** Attempts of one revocation job before the lease is marked revoke_failed. */
    revoke_attempts: z.number().int().min(1).max(50).default(6),
    /** Attempts of one rotation before the secret is marked rotation_failed (the next sweep retries). */
    rotation_attempts: z.number().int().min(1).max(20).default(4),
    limits: z
      .object({
        per_identity_rps: z.number().int().min(1).default(1000),
        max_active_leases_per_role: z.number().int().min(1).default(10000),
      })
      .strict()
      .default({ per_identity_rps: 1000, max_active_leases_per_role: 10000 }),
    static_secrets: z.record(name, staticSecretSchema).default({}),
    log: z.object({ level: z.enum(['fatal', 'error', 'warn', 'info', 'debug', 'trace', 'silent']).default('info') }).strict().default({ level: 'info' }),
  })
  .strict();

export type RawConfig = z.infer<typeof configSchema>;
