/** The config keys about who may do what (DESIGN §6): identity issuers, subject patterns and policies. */
import { z } from 'zod';
import { duration } from '../../plugins/contract';
import { RESERVED_ISSUER_NAMES } from '../identity/identity';
import { isAllowedKeyUrl } from '../identity/key-sets';
import { patternProblem } from '../policy/subject-pattern';
import { configName as name } from './names';

export const trustDomain = z.string().regex(/^[a-z0-9._-]{1,255}$/, 'must be a lowercase SPIFFE trust domain');
/** Key documents come over https (plain http only on loopback, for local agents and tests). */
const keyUrl = z.string().url().refine(isAllowedKeyUrl, 'must be an https:// URL (http:// only on loopback)');
/** An issuer's name is what policies and operators qualify subjects with; two are reserved. */
const issuerName = name.refine((n) => !RESERVED_ISSUER_NAMES.includes(n), {
  message: `${RESERVED_ISSUER_NAMES.map((n) => `"${n}"`).join(' and ')} are reserved issuer names`,
});
/** Just an origin (scheme, host, port), such as https://www.googleapis.com. */
export const keyOrigin = keyUrl.refine((u) => URL.canParse(u) && new URL(u).origin === u.replace(/\/+$/, ''), 'must be an origin (scheme://host[:port]), no path');

const jwtSvidIssuer = z
  .object({
    name: issuerName,
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
    name: issuerName,
    type: z.literal('oidc'),
    /** Compared exactly with the token's iss. Keys come from jwks_file, jwks_url, or else OIDC discovery. */
    issuer: keyUrl,
    jwks_file: z.string().min(1).optional(),
    jwks_url: keyUrl.optional(),
    /**
     * Discovery's jwks_uri must have the issuer's own origin, or one of these (e.g. Google's issuer
     * https://accounts.google.com publishes its keys on https://www.googleapis.com).
     */
    jwks_origins: z.array(keyOrigin).default([]),
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

/**
 * Who a policy or the operators list means (DESIGN §6). A SPIFFE pattern is a plain string: its trust
 * domain picks the keys, so it needs no issuer (broker-signed identities never match one). Any other
 * subject is only unique within its issuer and is written {issuer: NAME, subject: PATTERN}, NAME being an
 * identity.issuers[].name, "x509" (mTLS only) or "bootstrap" (broker-signed); SPIFFE patterns may be
 * qualified too. Issuer names are checked against identity.issuers when the config is loaded.
 */
export const subjectRule = z.union(
  [
    subjectPattern.superRefine((pattern, ctx) => {
      if (!pattern.startsWith('spiffe://')) {
        ctx.addIssue({
          code: 'custom',
          message: `"${pattern.slice(0, 80)}" is not a SPIFFE ID pattern, and any other subject is only meaningful with its issuer: write { issuer: NAME, subject: "${pattern.slice(0, 80)}" }`,
        });
      }
    }),
    z.object({ issuer: z.string().min(1).max(64), subject: subjectPattern }).strict(),
  ],
  { error: 'must be a SPIFFE ID pattern ("spiffe://...") or { issuer: NAME, subject: PATTERN }' },
);

export const policySchema = z
  .object({
    name,
    subjects: z.array(subjectRule).min(1),
    claims: z.record(z.string(), z.union([z.string(), z.number(), z.boolean()])).optional(),
    allow: z.array(allowRule).min(1),
  })
  .strict();
