import { readFileSync } from 'node:fs';
import { JSONWebKeySet, JWK, JWTVerifyGetKey, createLocalJWKSet, errors as joseErrors } from 'jose';

export type KeyResolver = JWTVerifyGetKey;

/** Issuer keys could not be had at all (endpoint down and nothing cached): a 503, not the caller's fault. */
export class KeysUnavailableError extends Error {}

/**
 * A SPIFFE trust bundle is a JWK Set whose JWT-SVID keys carry `use: "jwt-svid"`. jose's key sets
 * ignore keys whose `use` is not "sig", so the bundle is adapted: JWT-SVID keys (and plain keys with no
 * `use` or `use: "sig"`) are kept with `use: "sig"`; X.509-SVID keys, symmetric keys and keys without a
 * `kid` are dropped.
 */
export function adaptTrustBundle(bundle: unknown): JSONWebKeySet {
  const keys = (bundle as { keys?: unknown })?.keys;
  if (!Array.isArray(keys)) throw new Error('a trust bundle must be a JWK Set with a "keys" array');
  const usable = keys
    .filter((k): k is JWK => Boolean(k) && typeof k === 'object')
    .filter((k) => (k.use === undefined || k.use === 'sig' || k.use === 'jwt-svid') && typeof k.kid === 'string' && k.kid !== '')
    .filter((k) => k.kty !== 'oct')
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

export interface RemoteKeySetOptions {
  /** At most one fetch per this many ms when a token names an unknown kid. */
  cooldownMs: number;
  /** Keys older than this are refreshed before use. */
  maxAgeMs: number;
  /** When a refresh fails, keys up to this old are still used (then the issuer is unavailable). */
  staleMs: number;
  timeoutMs: number;
}

export const MAX_DOCUMENT_BYTES = 512 * 1024;

/**
 * GETs a JSON document of at most `maxBytes` (after any content decoding). The limit is enforced
 * while reading: an endpoint that streams without end is cut off, not buffered.
 */
export async function fetchJson(url: string, timeoutMs: number, maxBytes = MAX_DOCUMENT_BYTES): Promise<unknown> {
  // Aborting (not just cancelling the body) closes the connection: nothing more is read from it.
  const hangUp = new AbortController();
  const signal = AbortSignal.any([hangUp.signal, AbortSignal.timeout(timeoutMs)]);
  const res = await fetch(url, { signal, redirect: 'error', headers: { accept: 'application/json' } });
  const tooLarge = () => {
    hangUp.abort();
    return new Error(`GET ${url}: document larger than ${maxBytes} bytes`);
  };
  if (!res.ok) {
    hangUp.abort();
    throw new Error(`GET ${url}: HTTP ${res.status}`);
  }
  if (Number(res.headers.get('content-length') ?? 0) > maxBytes) throw tooLarge();
  const chunks: Uint8Array[] = [];
  let total = 0;
  if (res.body) {
    const reader = res.body.getReader();
    for (let part = await reader.read(); !part.done; part = await reader.read()) {
      total += part.value.byteLength;
      if (total > maxBytes) throw tooLarge();
      chunks.push(part.value);
    }
  }
  return JSON.parse(Buffer.concat(chunks).toString('utf8'));
}

/** A key's identity for change detection: its members in a fixed order. */
const fingerprint = (key: JWK) => JSON.stringify(key, Object.keys(key).sort());

/**
 * Remote keys (a SPIFFE bundle endpoint, an OIDC jwks_uri): cached, refreshed when old, refetched on an
 * unknown kid at most once per cooldown, one fetch in flight at a time, and the last good keys kept for
 * a bounded time while the endpoint fails. Every document is adapted like a trust bundle.
 */
export class RemoteKeySet {
  private keys?: KeyResolver;
  /** The current keys by kid, to tell whether a fetch removed or changed any. */
  private known = new Map<string, string>();
  private fetchedAt = 0;
  private lastAttempt = 0;
  private inflight?: Promise<void>;
  /** How many documents were fetched: lets tests (and metrics) see the cooldown work. */
  fetches = 0;

  constructor(
    private readonly locate: () => Promise<string>,
    private readonly opts: RemoteKeySetOptions,
    /**
     * Called after a fetch that removed or changed a key: tokens verified with it must be checked
     * again. A fetch that found the same keys (say, for a random unknown kid) or only added keys
     * does not call it, so it cannot be used to empty a cache of verified tokens.
     */
    private readonly onKeysRemoved: () => void = () => undefined,
  ) {}

  readonly resolve: KeyResolver = async (header, token) => {
    await this.ensureFresh();
    try {
      return await this.keys!(header, token);
    } catch (err) {
      if (!(err instanceof joseErrors.JWKSNoMatchingKey) || !this.mayFetch()) throw err;
      await this.refresh().catch(() => undefined);
      return this.keys!(header, token);
    }
  };

  private mayFetch(): boolean {
    return Date.now() - this.lastAttempt >= this.opts.cooldownMs;
  }

  private async ensureFresh(): Promise<void> {
    const age = Date.now() - this.fetchedAt;
    if (this.keys && age < this.opts.maxAgeMs) return;
    if (this.mayFetch() || this.inflight) {
      try {
        await this.refresh();
        return;
      } catch {
        /* fall back to the last good keys below */
      }
    }
    if (this.keys && Date.now() - this.fetchedAt < this.opts.staleMs) return;
    throw new KeysUnavailableError('issuer keys are unavailable');
  }

  private refresh(): Promise<void> {
    this.inflight ??= this.load().finally(() => (this.inflight = undefined));
    return this.inflight;
  }

  private async load(): Promise<void> {
    this.lastAttempt = Date.now();
    this.fetches++;
    const doc = await fetchJson(await this.locate(), this.opts.timeoutMs);
    const set = adaptTrustBundle(doc);
    const next = new Map(set.keys.map((k) => [k.kid!, fingerprint(k)]));
    const removed = [...this.known].some(([kid, print]) => next.get(kid) !== print);
    this.keys = createLocalJWKSet(set);
    this.known = next;
    this.fetchedAt = Date.now();
    if (removed) this.onKeysRemoved();
  }
}

/** https everywhere except on loopback, where test servers and local agents live. */
export function isAllowedKeyUrl(url: string): boolean {
  try {
    const u = new URL(url);
    if (u.protocol === 'https:') return true;
    return u.protocol === 'http:' && ['127.0.0.1', 'localhost', '[::1]'].includes(u.hostname);
  } catch {
    return false;
  }
}
