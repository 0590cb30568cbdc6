import { Inject, Injectable } from '@nestjs/common';
import { JWTPayload, decodeJwt, decodeProtectedHeader, errors as joseErrors, jwtVerify } from 'jose';
import { DomainError } from '../common/errors';
import { CONFIG } from '../config/config.module';
import { TesseraConfig } from '../config/config.loader';
import { TokenBucket } from '../common/token-bucket';
import { Principal, PrincipalMatcher, compileSubjectRules } from '../policy/subject-rules';
import { BROKER_ISSUER, BrokerKeys } from './broker-keys';
import { BOOTSTRAP_ISSUER_NAME, Identity } from './identity';
import { KeyResolver, KeysUnavailableError, RemoteKeySet, fetchJson, isAllowedKeyUrl, keySetFromFile } from './key-sets';
import { parseSpiffeId } from './spiffe-id';
import { addressKey } from '../common/client-address';

/** Asymmetric algorithms only: the JWT-SVID spec's list. HS*, none and EdDSA are refused. */
export const ALLOWED_ALGORITHMS = ['RS256', 'RS384', 'RS512', 'ES256', 'ES384', 'ES512', 'PS256', 'PS384', 'PS512'];
export const MAX_TOKEN_BYTES = 8192;
const CLOCK_SKEW_SECONDS = 30;
const FETCH_TIMEOUT_MS = 5000;
const VERIFIED_CACHE_MS = 60_000;
const VERIFIED_CACHE_SIZE = 10_000;

interface IssuerEntry {
  name: string;
  keys: KeyResolver;
  multipleAudiences: boolean;
  /** The exact `iss` required (OIDC and broker tokens); JWT-SVIDs are chosen by trust domain instead. */
  iss?: string;
  remote?: RemoteKeySet;
}

const deny = (message: string) => new DomainError('unauthenticated', 'invalid_token', message);

/**
 * Verifies bearer tokens: JWT-SVIDs, chosen by the trust domain of `sub` (never a union of key sets
 * across issuers); OIDC tokens, chosen by an exact `iss` match; and the broker's own tokens.
 */
@Injectable()
export class TokenVerifier {
  private readonly byTrustDomain = new Map<string, IssuerEntry>();
  private readonly byIss = new Map<string, IssuerEntry>();
  private readonly operators: PrincipalMatcher;
  /** Signature checks per client address: charged before one is made, cache hits are free. */
  private readonly perAddress: TokenBucket;

  constructor(
    @Inject(CONFIG) private readonly config: TesseraConfig,
    brokerKeys: BrokerKeys,
  ) {
    for (const issuer of config.identity.issuers) {
      const remote = (locate: () => Promise<string>) =>
        // A refresh that dropped or changed a key: tokens verified with it must be checked again.
        new RemoteKeySet(locate, { cooldownMs: issuer.jwks_cooldown * 1000, maxAgeMs: 600_000, staleMs: 86_400_000, timeoutMs: FETCH_TIMEOUT_MS }, () => {
          this.generation++;
          this.verified.clear();
        });
      if (issuer.type === 'jwt-svid') {
        const fromUrl = issuer.bundle_url ? remote(async () => issuer.bundle_url!) : undefined;
        const keys = fromUrl?.resolve ?? keySetFromFile(issuer.jwks_file!);
        this.byTrustDomain.set(issuer.trust_domain, { name: issuer.name, keys, remote: fromUrl, multipleAudiences: issuer.allow_multiple_audiences });
      } else {
        const fromUrl = issuer.jwks_file ? undefined : remote(issuer.jwks_url ? async () => issuer.jwks_url! : () => discoverJwksUri(issuer.issuer, issuer.jwks_origins));
        const keys = fromUrl?.resolve ?? keySetFromFile(issuer.jwks_file!);
        this.byIss.set(issuer.issuer, { name: issuer.name, keys, remote: fromUrl, multipleAudiences: issuer.allow_multiple_audiences, iss: issuer.issuer });
      }
    }
    this.byIss.set(BROKER_ISSUER, { name: BOOTSTRAP_ISSUER_NAME, keys: (h, t) => brokerKeys.keys(h, t), multipleAudiences: false, iss: BROKER_ISSUER });
    this.operators = compileSubjectRules(config.operators);
    const rps = config.identity.verify_per_address_rps;
    this.perAddress = new TokenBucket(rps, rps * 2);
  }

  /** Whether the operators list names this issuer's subject. Broker-signed identities never are operators. */
  isOperator(who: Principal): boolean {
    return who.issuer !== BOOTSTRAP_ISSUER_NAME && this.operators(who);
  }

  /**
   * Verified tokens, by their exact text, for at most a minute and never past their exp: a workload
   * presents the same token many times, and a signature check is the costliest step of a request.
   * The cache is bounded; only successes are cached.
   */
  private readonly verified = new Map<string, { identity: Identity; until: number }>();
  /** Bumped when a refresh removed or changed a key: a verification begun before then is not cached. */
  private generation = 0;
  /** Verifications under way, by token text: concurrent requests with one token share one check. */
  private readonly inflight = new Map<string, Promise<Identity>>();

  async verify(token: string, client: { ip?: string }): Promise<Identity> {
    const hit = this.verified.get(token);
    if (hit && hit.until > Date.now()) return hit.identity;
    const running = this.inflight.get(token);
    if (running) return running;
    // Rate limited before any parsing or signature check: forged tokens cost the sender, not the broker.
    if (!this.perAddress.take(addressKey(client.ip))) {
      throw new DomainError('rate_limited', 'too_many_verifications', 'too many new tokens from this address; slow down');
    }
    const verification = this.verifyAndCache(token).finally(() => this.inflight.delete(token));
    this.inflight.set(token, verification);
    return verification;
  }

  private async verifyAndCache(token: string): Promise<Identity> {
    const generation = this.generation;
    const identity = await this.verifyUncached(token);
    if (generation !== this.generation) return identity;
    if (this.verified.size >= VERIFIED_CACHE_SIZE) this.verified.delete(this.verified.keys().next().value!);
    const exp = (identity.claims.exp as number) * 1000;
    this.verified.set(token, { identity, until: Math.min(Date.now() + VERIFIED_CACHE_MS, exp) });
    return identity;
  }

  private async verifyUncached(token: string): Promise<Identity> {
    if (token.length > MAX_TOKEN_BYTES) throw deny('token too large');
    // Compact JWS only: three base64url parts. JWE (five parts) and JSON serialisation are refused.
    if (!/^[A-Za-z0-9_-]+\.[A-Za-z0-9_-]+\.[A-Za-z0-9_-]+$/.test(token)) throw deny('not a signed JWT');
    let header: ReturnType<typeof decodeProtectedHeader>;
    let unverified: JWTPayload;
    try {
      header = decodeProtectedHeader(token);
      unverified = decodeJwt(token);
    } catch {
      throw deny('not a signed JWT');
    }
    if (typeof header.alg !== 'string' || !ALLOWED_ALGORITHMS.includes(header.alg)) throw deny('algorithm not allowed');
    if (typeof header.kid !== 'string' || !header.kid) throw deny('kid required');
    // Keys are only ever the configured ones: jku, x5u, jwk and x5c headers are never followed.

    const entry = this.chooseIssuer(unverified);
    let payload: JWTPayload;
    try {
      ({ payload } = await jwtVerify(token, entry.keys, {
        algorithms: ALLOWED_ALGORITHMS,
        audience: this.config.identity.audience,
        issuer: entry.iss,
        requiredClaims: ['exp', 'sub', 'aud'],
        clockTolerance: CLOCK_SKEW_SECONDS,
      }));
    } catch (err) {
      if (err instanceof KeysUnavailableError) throw new DomainError('unavailable', 'identity_keys_unavailable', `keys of issuer ${entry.name} are unavailable`);
      throw deny(describeJoseError(err));
    }
    if (Array.isArray(payload.aud) && payload.aud.length > 1 && !entry.multipleAudiences) throw deny('several audiences');
    this.checkLifetime(payload);
    const subject = payload.sub;
    if (typeof subject !== 'string' || subject.length === 0 || subject.length > 2048 || /[\u0000-\u001f\u007f]/.test(subject)) throw deny('invalid sub');
    // Only a JWT-SVID issuer speaks for SPIFFE IDs: an OIDC token claiming one would impersonate a
    // workload of a trust domain its issuer does not own.
    if (entry.iss !== undefined && entry.iss !== BROKER_ISSUER && subject.startsWith('spiffe:')) throw deny('OIDC token with a SPIFFE ID subject');
    // The broker signs only subjects of the bootstrap namespace; anything else is not one of its tokens.
    if (entry.iss === BROKER_ISSUER && !subject.startsWith(this.config.identity.bootstrap.subject_prefix)) throw deny('broker token outside the bootstrap namespace');
    return { subject, issuer: entry.name, operator: this.isOperator({ issuer: entry.name, subject }), claims: payload };
  }

  private chooseIssuer(payload: JWTPayload): IssuerEntry {
    if (typeof payload.iss === 'string' && this.byIss.has(payload.iss)) return this.byIss.get(payload.iss)!;
    if (payload.iss !== undefined && !(typeof payload.sub === 'string' && payload.sub.startsWith('spiffe://'))) throw deny('unknown issuer');
    const spiffe = parseSpiffeId(payload.sub);
    if (!spiffe) throw deny(typeof payload.sub === 'string' && payload.sub.startsWith('spiffe:') ? 'invalid SPIFFE ID' : 'unknown issuer');
    const entry = this.byTrustDomain.get(spiffe.trustDomain);
    if (!entry) throw deny('untrusted trust domain');
    return entry;
  }

  /** The token must not stay valid longer than max_token_lifetime from now, nor claim a future iat. */
  private checkLifetime(payload: JWTPayload): void {
    const now = Math.floor(Date.now() / 1000);
    if (typeof payload.iat === 'number' && payload.iat > now + CLOCK_SKEW_SECONDS) throw deny('iat in the future');
    if (payload.exp! - now > this.config.identity.max_token_lifetime + CLOCK_SKEW_SECONDS) throw deny('token lifetime too long');
  }
}

/** Discovery documents are small; a key set gets the larger general limit. */
const MAX_DISCOVERY_BYTES = 64 * 1024;

/**
 * OIDC discovery: the document must name exactly this issuer, and its jwks_uri must be https and on
 * the issuer's own origin or one listed in jwks_origins: a document cannot send the broker to
 * loopback, the cloud metadata address or a host nobody configured.
 */
export async function discoverJwksUri(issuer: string, allowedOrigins: readonly string[] = []): Promise<string> {
  const url = `${issuer.replace(/\/+$/, '')}/.well-known/openid-configuration`;
  const doc = (await fetchJson(url, FETCH_TIMEOUT_MS, MAX_DISCOVERY_BYTES)) as { issuer?: unknown; jwks_uri?: unknown };
  if (doc.issuer !== issuer) throw new Error(`discovery document names issuer ${JSON.stringify(doc.issuer)}, not ${issuer}`);
  if (typeof doc.jwks_uri !== 'string' || !isAllowedKeyUrl(doc.jwks_uri)) throw new Error('discovery jwks_uri must be an https URL');
  const origin = new URL(doc.jwks_uri).origin;
  const allowed = [new URL(issuer).origin, ...allowedOrigins.map((o) => new URL(o).origin)];
  if (!allowed.includes(origin)) throw new Error(`discovery jwks_uri ${origin} is neither the issuer's origin nor in jwks_origins`);
  return doc.jwks_uri;
}

function describeJoseError(err: unknown): string {
  if (err instanceof joseErrors.JWTExpired) return 'token expired';
  if (err instanceof joseErrors.JWTClaimValidationFailed) return `claim ${err.claim} invalid`;
  if (err instanceof joseErrors.JWKSNoMatchingKey) return 'no matching key';
  if (err instanceof joseErrors.JWSSignatureVerificationFailed) return 'bad signature';
  return 'token rejected';
}
