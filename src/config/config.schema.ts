/**
 * The one schema of the config file (DESIGN §7). Everything that reads configuration reads the parsed
 * result of this schema; nothing else reads process.env. Who may do what (issuers, subject patterns,
 * policies) is in identity.schema.ts, a static secret in static-secret.schema.ts, and each plugin keeps
 * its connection and role keys in its own schemas.
 */
import { z } from 'zod';
import { duration as durationSchema } from '../../plugins/contract';
import { issuerSchema, keyOrigin, policySchema, subjectRule, trustDomain } from './identity.schema';
import { NAME_PATTERN, configName } from './names';
import { staticSecretSchema } from './static-secret.schema';

export { staticSecretSchema };

export const NAME = NAME_PATTERN;
const name = configName;

/** A duration in whole seconds (one schema for config, plugins and requests). */
export const duration = durationSchema;

const masterKey = z.string().refine((v) => Buffer.from(v, 'base64').length === 32 && /^[A-Za-z0-9+/]+={0,2}$/.test(v), {
  message: 'must be the base64 of exactly 32 bytes (generate one with: openssl rand -base64 32)',
});

/** Shared keys of a role; the rest belongs to the connection's plugin and is checked by its schema. */
export const roleBase = z.object({
  connection: name,
  default_ttl: duration(),
  max_ttl: duration(),
});

/** First segments under /v1 the native API serves (and `sys`, `auth` of the Vault API): not mount names. */
export const VAULT_RESERVED_MOUNTS: readonly string[] = ['health', 'whoami', 'creds', 'leases', 'static', 'rotate', 'rotations', 'events', 'auth', 'audit', 'roles', 'connections', 'sys', 'ui'];

/** A scope token (RFC 6749 §3.3). */
const scope = z.string().regex(/^[\x21\x23-\x5b\x5d-\x7e]{1,128}$/, 'must be one OAuth scope token');

/** The operator console (DESIGN §12); mounted at /ui/ only when this block is present. */
const uiSchema = z
  .object({
    /**
     * Where operators' browsers reach the broker: an origin (https, or http on loopback). The OIDC
     * redirect URI is public_url + /ui/callback, and state-changing requests must come from this origin.
     */
    public_url: keyOrigin.transform((u) => u.replace(/\/+$/, '')),
    oidc: z
      .object({
        /** The name of an `oidc` issuer in identity.issuers: its discovery document and keys are reused. */
        issuer: z.string().min(1).max(64),
        client_id: z.string().min(1).max(256),
        /** Absent for a public client (PKCE alone); given, it is sent with HTTP Basic authentication. */
        client_secret: z.string().min(1).optional(),
        scopes: z
          .array(scope)
          .default(['openid', 'profile', 'email'])
          .refine((s) => s.includes('openid'), 'must include "openid"'),
      })
      .strict(),
    /** A console session ends after this, or when its ID token expires, whichever is first. */
    session_ttl: duration().default(8 * 3600),
    /**
     * Sign-ins started and not finished kept at once (each a row until it is used or expires, after 10
     * minutes): beyond this many the oldest are dropped (their browsers start again), never a new one.
     */
    max_pending_sign_ins: z.number().int().min(1).max(1_000_000).default(1000),
  })
  .strict();

export const configSchema = z
  .object({
    server: z
      .object({
        host: z.string().min(1).default('127.0.0.1'),
        port: z.number().int().min(0).max(65535).default(8200),
        body_limit: z.string().regex(/^\d+(b|kb|mb)$/).default('64kb'),
        /** Serve plain HTTP on an address other than loopback (tokens and credentials then cross the network in clear). */
        allow_insecure: z.boolean().default(false),
        /** HTTPS; with client_ca, workloads may also authenticate with an X.509-SVID (mTLS). */
        tls: z
          .object({
            cert: z.string().min(1),
            key: z.string().min(1),
            /**
             * CA bundle files per trust domain: { "a.example": "a.pem", "b.example": "b.pem" }. An X.509-SVID
             * is accepted only when its chain ends in the bundle of the trust domain in its SPIFFE ID, so
             * one domain's CA cannot sign another's IDs. A single path is accepted only together with
             * trust_domains naming exactly one trust domain; it is then that domain's bundle.
             */
            client_ca: z.union([
              z.string().min(1),
              z.record(trustDomain, z.string().min(1)).refine((m) => Object.keys(m).length > 0, 'give at least one trust domain'),
            ]),
            /** With a single client_ca path: the one trust domain it signs for. */
            trust_domains: z.array(trustDomain).optional(),
          })
          .strict()
          .superRefine((tls, ctx) => {
            if (typeof tls.client_ca === 'string' && tls.trust_domains?.length !== 1) {
              ctx.addIssue({
                code: 'custom',
                path: ['client_ca'],
                message: 'one CA bundle for several trust domains would let each sign the others\' IDs: give client_ca per trust domain ({ "a.example": a.pem }) or trust_domains with exactly one domain',
              });
            }
            if (typeof tls.client_ca !== 'string' && tls.trust_domains !== undefined) {
              ctx.addIssue({ code: 'custom', path: ['trust_domains'], message: 'with client_ca per trust domain, its keys are the trust domains: drop trust_domains' });
            }
          })
          // One shape for the rest of the code: bundle file by trust domain.
          .transform(({ cert, key, client_ca, trust_domains }) => ({
            cert,
            key,
            client_ca: typeof client_ca === 'string' ? { [trust_domains![0]]: client_ca } : client_ca,
          }))
          .optional(),
      })
      .strict(),
    storage: z
      .object({
        postgres_url: z.string().regex(/^postgres(ql)?:\/\//, 'must be a postgres:// URL'),
        pool_size: z.number().int().min(2).max(200).default(20),
        /**
         * Parameterized statements run as named prepared statements (see Database). Off behind a
         * pooler in transaction mode that cannot keep prepared statements (PgBouncer before 1.21, or
         * without max_prepared_statements).
         */
        prepared_statements: z.boolean().default(true),
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
        max_token_lifetime: duration().default(3600),
        /**
         * Token verifications (signature checks; a token verified in the last minute is not checked
         * again) per second per client address, bursts of twice that; 429 beyond. Applied before any
         * signature is checked, so a flood of forged tokens costs little.
         */
        verify_per_address_rps: z.number().int().min(1).default(100),
        bootstrap: z
          .object({
            /** Lifetime of the broker-signed tokens legacy apps get for a bootstrap secret. */
            token_ttl: duration().default(900),
            /** Longest a bootstrap secret may stay valid. */
            max_secret_ttl: duration().default(86400),
            /**
             * The namespace of bootstrap subjects: a secret is only created for a subject that starts with
             * it (e.g. "bootstrap/billing"), so a bootstrap identity never looks like a workload's. Such
             * identities carry issuer "bootstrap" and only rules naming { issuer: bootstrap } match them.
             * Ends with "/", so "bootstrap/*" matches the whole namespace.
             */
            subject_prefix: z
              .string()
              .min(2)
              .max(256)
              .regex(/^[^\u0000-\u001f\u007f*]+\/$/, 'must end with "/" and contain no "*" or control characters')
              .default('bootstrap/'),
          })
          .strict()
          .default({ token_ttl: 900, max_secret_ttl: 86400, subject_prefix: 'bootstrap/' }),
      })
      .strict(),
    /** Who may use the operator routes: subject rules as in policies (bootstrap identities never). */
    operators: z.array(subjectRule).default([]),
    events: z.object({ hmac_key: z.string().min(16, 'must be at least 16 characters') }).strict().optional(),
    policies: z.array(policySchema).default([]),
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
        /** Live leases one owner (subject and issuer) may hold across all roles; 429 beyond. */
        max_active_leases_per_owner: z.number().int().min(1).default(1000),
        /** Denied requests audited one by one per identity (or address) per window; the rest are counted into one summary event. */
        audited_denials_per_identity: z.number().int().min(1).default(10),
        audited_denials_window: duration().default(60),
        /** Refused requests without an identity (no or bad token) audited per client address per second, bursts of twice that; 429 beyond. */
        unidentified_denials_per_address_rps: z.number().int().min(1).default(20),
      })
      .strict()
      .default({
        per_identity_rps: 1000,
        max_active_leases_per_role: 10000,
        max_active_leases_per_owner: 1000,
        audited_denials_per_identity: 10,
        audited_denials_window: 60,
        unidentified_denials_per_address_rps: 20,
      }),
    /** Readiness: targets are probed in the background and the result served from memory. */
    health: z
      .object({
        /** How often every target connection is probed (also sets tessera_target_up). */
        probe_every: duration().default(10),
        /** Readiness requests per second per client address (bursts of twice that); 429 beyond. */
        ready_rps: z.number().int().min(1).default(10),
      })
      .strict()
      .default({ probe_every: 10, ready_rps: 10 }),
    /** The audit trail (DESIGN §9, invariant 5). */
    audit: z
      .object({
        /**
         * A keyed audit.heartbeat event is written when the newest one is this old (about one per
         * interval across all replicas), so events cut off the end are found; verify reports a newest
         * heartbeat older than twice this.
         */
        heartbeat_every: duration().default(300),
        /**
         * Independent keyed chains the trail is split into, each with its own head, so concurrent
         * state changes do not queue on one row lock. Only grows: raising it adds shards at the next
         * start; lowering it keeps every existing shard in use.
         */
        shards: z.number().int().min(1).max(256).default(16),
      })
      .strict()
      .default({ heartbeat_every: 300, shards: 16 }),
    static_secrets: z.record(name, staticSecretSchema).default({}),
    /** The Vault-compatible API (DESIGN §11). */
    vault: z
      .object({
        /** Lifetime of a client token from auth/{jwt,kubernetes}/login, and of each renew-self. */
        token_ttl: duration().default(3600),
        /** A client token never lives past this from its login, however often it is renewed. */
        token_max_ttl: duration().default(86400),
        /** Mount names the Vault clients use: `{database_mount}/creds/{role}`, `{aws_mount}/creds/{role}`. */
        database_mount: name.default('database'),
        aws_mount: name.default('aws'),
        /** Vault's behaviour: revoking a client token revokes the leases issued with it (Tessera's default: leases belong to the workload). */
        revoke_leases_with_token: z.boolean().default(false),
      })
      .strict()
      .refine((v) => v.token_ttl <= v.token_max_ttl, { message: 'token_ttl must not exceed token_max_ttl', path: ['token_ttl'] })
      .refine((v) => v.database_mount !== v.aws_mount, { message: 'database_mount and aws_mount must differ', path: ['aws_mount'] })
      .refine((v) => !VAULT_RESERVED_MOUNTS.includes(v.database_mount), { message: 'must not be a path of the native API', path: ['database_mount'] })
      .refine((v) => !VAULT_RESERVED_MOUNTS.includes(v.aws_mount), { message: 'must not be a path of the native API', path: ['aws_mount'] })
      .default({ token_ttl: 3600, token_max_ttl: 86400, database_mount: 'database', aws_mount: 'aws', revoke_leases_with_token: false }),
    log: z.object({ level: z.enum(['fatal', 'error', 'warn', 'info', 'debug', 'trace', 'silent']).default('info') }).strict().default({ level: 'info' }),
    ui: uiSchema.optional(),
  })
  .strict()
  .superRefine((config, ctx) => {
    const name = config.ui?.oidc.issuer;
    if (name === undefined) return;
    const issuer = config.identity.issuers.find((i) => i.name === name);
    if (!issuer || issuer.type !== 'oidc') {
      const oidc = config.identity.issuers.filter((i) => i.type === 'oidc').map((i) => `"${i.name}"`);
      ctx.addIssue({
        code: 'custom',
        path: ['ui', 'oidc', 'issuer'],
        message: `must name an issuer of type oidc in identity.issuers (${oidc.length ? `configured: ${oidc.join(', ')}` : 'none is configured'}); ${issuer ? `"${name}" is of type ${issuer.type}` : `there is no issuer named "${name}"`}`,
      });
    }
  });

export type RawConfig = z.infer<typeof configSchema>;
