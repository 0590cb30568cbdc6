import { readFileSync } from 'node:fs';
import { JSONWebKeySet, JWK, createLocalJWKSet, createRemoteJWKSet } from 'jose';

export type KeyResolver = ReturnType<typeof createLocalJWKSet>;

/**
 * A SPIFFE trust bundle is a JWK Set whose JWT-SVID keys carry `use: "jwt-svid"`. jose's key sets
 * ignore keys whose `use` is not "sig", so the bundle is adapted: JWT-SVID keys (and plain keys with no
 * `use` or `use: "sig"`) are kept with `use: "sig"`; X.509-SVID keys and keys without a `kid` are dropped.
 */
export function adaptTrustBundle(bundle: unknown): JSONWebKeySet {
  const keys = (bundle as { keys?: unknown })?.keys;
  if (!Array.isArray(keys)) throw new Error('a trust bundle must be a JWK Set with a "keys" array');
  const usable = keys
    .filter((k): k is JWK => Boolean(k) && typeof k === 'object')
    .filter((k) => (k.use === undefined || k.use === 'sig' || k.use === 'jwt-svid') && typeof k.kid === 'string' && k.kid !== '')
    .filter((k) => k.kty !== 'oct') // symmetric keys never verify identity tokens
    .map((k) => ({ ...k, use: 'sig' }));
  return { keys: usable };
}

export function keySetFromFile(path: string): KeyResolver {
  let doc: unknown;
  try {
    doc = JSON.parse(readFileSync(path, 'utf8'));
  } catch (err) {
    throw new Error(`cannot read key set ${path}: ${(err as Error).message}`);
  }
  return createLocalJWKSet(adaptTrustBundle(doc));
}

/** Remote keys: cached, refetched on an unknown kid at most once per cooldown (jose keeps one fetch in flight). */
export function keySetFromUrl(url: string): KeyResolver {
  return createRemoteJWKSet(new URL(url), { cooldownDuration: 30_000, cacheMaxAge: 600_000, timeoutDuration: 5_000 });
}
