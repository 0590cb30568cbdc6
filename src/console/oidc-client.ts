import { JWTPayload, errors as joseErrors, jwtVerify } from 'jose';
import { createHash, timingSafeEqual } from 'node:crypto';
import { DomainError } from '../common/errors';
import { KeyResolver, RemoteKeySet, fetchJson, isAllowedKeyUrl, keySetFromFile } from '../identity/key-sets';
import { ALLOWED_ALGORITHMS, MAX_TOKEN_BYTES, discoverJwksUri } from '../identity/token-verifier';

const FETCH_TIMEOUT_MS = 10_000;
const MAX_DISCOVERY_BYTES = 64 * 1024;
const MAX_TOKEN_RESPONSE_BYTES = 64 * 1024;
const CLOCK_SKEW_SECONDS = 30;

/** The `oidc` issuer the console signs in with (an identity.issuers entry) and the console's client. */
export interface OidcClientSettings {
  /** The issuer's configured name: identities are qualified with it (DESIGN §6). */
  name: string;
  issuer: string;
  jwksFile?: string;
  jwksUrl?: string;
  jwksOrigins: readonly string[];
  jwksCooldownSeconds: number;
  clientId: string;
  clientSecret?: string;
  scopes: readonly string[];
  redirectUri: string;
}

interface ProviderMetadata {
  authorization_endpoint: string;
  token_endpoint: string;
}

const b64url = (buf: Buffer) => buf.toString('base64url');
export const pkceChallenge = (verifier: string) => b64url(createHash('sha256').update(verifier).digest());

const unavailable = (message: string) => new DomainError('unavailable', 'identity_provider_unavailable', message);
const refused = (message: string) => new DomainError('unauthenticated', 'sign_in_failed', message);

/**
 * The console's OpenID Connect relying party: authorization code flow with PKCE (S256). It reuses
 * what identity/ does for the same issuer: the discovery rules, the key set (file, URL or discovered
 * jwks_uri, cached and refreshed on an unknown kid) and the algorithm list. The ID token must name this
 * issuer exactly, this client as its audience, the nonce of this sign-in, and be unexpired.
 */
export class OidcClient {
  private metadata?: Promise<ProviderMetadata>;
  private readonly keys: KeyResolver;

  constructor(private readonly settings: OidcClientSettings) {
    this.keys = settings.jwksFile
      ? keySetFromFile(settings.jwksFile)
      : new RemoteKeySet(settings.jwksUrl ? async () => settings.jwksUrl! : () => discoverJwksUri(settings.issuer, settings.jwksOrigins), {
          cooldownMs: settings.jwksCooldownSeconds * 1000,
          maxAgeMs: 600_000,
          staleMs: 86_400_000,
          timeoutMs: FETCH_TIMEOUT_MS,
        }).resolve;
  }

  get issuerName(): string {
    return this.settings.name;
  }

  get issuerUrl(): string {
    return this.settings.issuer;
  }

  async authorizationUrl(input: { state: string; nonce: string; codeVerifier: string }): Promise<string> {
    const { authorization_endpoint } = await this.discover();
    const url = new URL(authorization_endpoint);
    url.searchParams.set('response_type', 'code');
    url.searchParams.set('client_id', this.settings.clientId);
    url.searchParams.set('redirect_uri', this.settings.redirectUri);
    url.searchParams.set('scope', this.settings.scopes.join(' '));
    url.searchParams.set('state', input.state);
    url.searchParams.set('nonce', input.nonce);
    url.searchParams.set('code_challenge', pkceChallenge(input.codeVerifier));
    url.searchParams.set('code_challenge_method', 'S256');
    return url.toString();
  }

  /** Exchanges the code (with the PKCE verifier) and verifies the ID token; returns its claims. */
  async signIn(code: string, codeVerifier: string, nonce: string): Promise<JWTPayload & { sub: string; exp: number }> {
    const idToken = await this.exchange(code, codeVerifier);
    return this.verifyIdToken(idToken, nonce);
  }

  private discover(): Promise<ProviderMetadata> {
    this.metadata ??= this.fetchMetadata().catch((err) => {
      // Not cached: the next sign-in tries again.
      this.metadata = undefined;
      throw err;
    });
    return this.metadata;
  }

  private async fetchMetadata(): Promise<ProviderMetadata> {
    const url = `${this.settings.issuer.replace(/\/+$/, '')}/.well-known/openid-configuration`;
    let doc: { issuer?: unknown; authorization_endpoint?: unknown; token_endpoint?: unknown };
    try {
      doc = (await fetchJson(url, FETCH_TIMEOUT_MS, MAX_DISCOVERY_BYTES)) as typeof doc;
    } catch (err) {
      throw unavailable(`the discovery document of issuer ${this.settings.name} could not be read: ${(err as Error).message}`);
    }
    if (doc.issuer !== this.settings.issuer) throw unavailable(`the discovery document of issuer ${this.settings.name} names another issuer`);
    for (const key of ['authorization_endpoint', 'token_endpoint'] as const) {
      if (typeof doc[key] !== 'string' || !isAllowedKeyUrl(doc[key] as string)) {
        throw unavailable(`the discovery document of issuer ${this.settings.name} has no usable ${key} (https, or http on loopback)`);
      }
    }
    return { authorization_endpoint: doc.authorization_endpoint as string, token_endpoint: doc.token_endpoint as string };
  }

  private async exchange(code: string, codeVerifier: string): Promise<string> {
    const { token_endpoint } = await this.discover();
    const body = new URLSearchParams({ grant_type: 'authorization_code', code, redirect_uri: this.settings.redirectUri, code_verifier: codeVerifier });
    const headers: Record<string, string> = { 'content-type': 'application/x-www-form-urlencoded', accept: 'application/json' };
    if (this.settings.clientSecret !== undefined) {
      // RFC 6749 §2.3.1: both parts form-encoded before Basic.
      const user = encodeURIComponent(this.settings.clientId);
      const password = encodeURIComponent(this.settings.clientSecret);
      headers.authorization = `Basic ${Buffer.from(`${user}:${password}`).toString('base64')}`;
    } else {
      body.set('client_id', this.settings.clientId);
    }
    let res: Response;
    try {
      res = await fetch(token_endpoint, { method: 'POST', headers, body, redirect: 'error', signal: AbortSignal.timeout(FETCH_TIMEOUT_MS) });
    } catch (err) {
      throw unavailable(`the token endpoint of issuer ${this.settings.name} is unreachable: ${(err as Error).message}`);
    }
    const text = await readLimited(res, MAX_TOKEN_RESPONSE_BYTES);
    let parsed: { id_token?: unknown; error?: unknown };
    try {
      parsed = JSON.parse(text);
    } catch {
      throw unavailable(`the token endpoint of issuer ${this.settings.name} answered HTTP ${res.status} without JSON`);
    }
    if (!res.ok) {
      // The provider's error code only (e.g. invalid_grant): its description could echo request values.
      const error = typeof parsed.error === 'string' && /^[A-Za-z0-9_.-]{1,64}$/.test(parsed.error) ? parsed.error : 'error';
      throw refused(`the identity provider refused the sign-in (${error}); sign in again`);
    }
    if (typeof parsed.id_token !== 'string') throw refused('the identity provider returned no ID token; is the "openid" scope allowed for this client?');
    return parsed.id_token;
  }

  private async verifyIdToken(idToken: string, nonce: string): Promise<JWTPayload & { sub: string; exp: number }> {
    if (idToken.length > MAX_TOKEN_BYTES) throw refused('ID token too large');
    let payload: JWTPayload;
    try {
      ({ payload } = await jwtVerify(idToken, this.keys, {
        algorithms: ALLOWED_ALGORITHMS,
        issuer: this.settings.issuer,
        audience: this.settings.clientId,
        requiredClaims: ['exp', 'iat', 'sub', 'nonce'],
        clockTolerance: CLOCK_SKEW_SECONDS,
      }));
    } catch (err) {
      if (err instanceof joseErrors.JOSEError) throw refused(`the ID token was refused (${err.code})`);
      throw unavailable(`the keys of issuer ${this.settings.name} are unavailable`);
    }
    // OIDC Core §3.1.3.7: with several audiences, the token must have been issued to this client.
    if (Array.isArray(payload.aud) && payload.aud.length > 1 && payload.azp !== this.settings.clientId) throw refused('the ID token was issued to another client');
    if (typeof payload.nonce !== 'string' || !sameText(payload.nonce, nonce)) throw refused('the ID token does not belong to this sign-in (nonce)');
    const sub = payload.sub;
    if (typeof sub !== 'string' || sub.length === 0 || sub.length > 2048 || /[\u0000-\u001f\u007f]/.test(sub)) throw refused('the ID token has an invalid sub');
    // As for bearer tokens: only a JWT-SVID issuer speaks for SPIFFE IDs.
    if (sub.startsWith('spiffe:')) throw refused('an OIDC ID token may not carry a SPIFFE ID subject');
    return payload as JWTPayload & { sub: string; exp: number };
  }
}

export function sameText(a: string, b: string): boolean {
  const x = Buffer.from(a);
  const y = Buffer.from(b);
  return x.length === y.length && timingSafeEqual(x, y);
}

async function readLimited(res: Response, maxBytes: number): Promise<string> {
  if (!res.body) return '';
  const chunks: Uint8Array[] = [];
  let total = 0;
  const reader = res.body.getReader();
  for (let part = await reader.read(); !part.done; part = await reader.read()) {
    total += part.value.byteLength;
    if (total > maxBytes) {
      await reader.cancel().catch(() => undefined);
      throw unavailable('the token endpoint answered with a document too large');
    }
    chunks.push(part.value);
  }
  return Buffer.concat(chunks).toString('utf8');
}
