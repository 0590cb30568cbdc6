import { Inject, Injectable } from '@nestjs/common';
import { CONFIG } from '../config/config.module';
import { JWTPayload, decodeJwt, decodeProtectedHeader, errors as joseErrors, jwtVerify } from 'jose';
import { DomainError } from '../common/errors';
import { TesseraConfig } from '../config/config.loader';
import { compileSubjectPatterns, SubjectMatcher } from '../policy/subject-pattern';
import { Identity } from './identity';
import { KeyResolver, keySetFromFile, keySetFromUrl } from './key-sets';
import { parseSpiffeId } from './spiffe-id';

/** Asymmetric algorithms only: the JWT-SVID spec's list. HS*, none and EdDSA are refused. */
export const ALLOWED_ALGORITHMS = ['RS256', 'RS384', 'RS512', 'ES256', 'ES384', 'ES512', 'PS256', 'PS384', 'PS512'];
export const MAX_TOKEN_BYTES = 8192;
const CLOCK_SKEW_SECONDS = 30;

interface IssuerEntry {
  name: string;
  keys: KeyResolver;
  multipleAudiences: boolean;
  /** OIDC only: the exact `iss` value. */
  iss?: string;
}

const deny = (message: string) => new DomainError('unauthenticated', 'invalid_token', message);

/**
 * Verifies bearer tokens: JWT-SVIDs, chosen by the trust domain of `sub` (never a union of key sets
 * across issuers), and OIDC tokens, chosen by an exact `iss` match.
 */
@Injectable()
export class TokenVerifier {
  private readonly byTrustDomain = new Map<string, IssuerEntry>();
  private readonly byIss = new Map<string, IssuerEntry>();
  private readonly isOperator: SubjectMatcher;

  constructor(@Inject(CONFIG) private readonly config: TesseraConfig) {
    for (const issuer of config.identity.issuers) {
      if (issuer.type === 'jwt-svid') {
        const keys = issuer.jwks_file ? keySetFromFile(issuer.jwks_file) : keySetFromUrl(issuer.bundle_url!);
        this.byTrustDomain.set(issuer.trust_domain, { name: issuer.name, keys, multipleAudiences: issuer.allow_multiple_audiences });
      } else {
        const keys = issuer.jwks_file
          ? keySetFromFile(issuer.jwks_file)
          : keySetFromUrl(issuer.jwks_url ?? new URL('/.well-known/jwks.json', issuer.issuer).toString());
        this.byIss.set(issuer.issuer, { name: issuer.name, keys, multipleAudiences: issuer.allow_multiple_audiences, iss: issuer.issuer });
      }
    }
    this.isOperator = compileSubjectPatterns(config.operators);
  }

  async verify(token: string): Promise<Identity> {
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
      throw deny(describeJoseError(err));
    }
    if (Array.isArray(payload.aud) && payload.aud.length > 1 && !entry.multipleAudiences) throw deny('several audiences');
    this.checkLifetime(payload);
    const subject = payload.sub;
    if (typeof subject !== 'string' || subject.length === 0 || subject.length > 2048 || /[\u0000-\u001f\u007f]/.test(subject)) throw deny('invalid sub');
    // Only a JWT-SVID issuer speaks for SPIFFE IDs: an OIDC token claiming one would impersonate a
    // workload of a trust domain its issuer does not own.
    if (entry.iss !== undefined && subject.startsWith('spiffe:')) throw deny('OIDC token with a SPIFFE ID subject');
    return { subject, issuer: entry.name, operator: this.isOperator(subject), claims: payload };
  }

  private chooseIssuer(payload: JWTPayload): IssuerEntry {
    if (typeof payload.iss === 'string' && this.byIss.has(payload.iss)) return this.byIss.get(payload.iss)!;
    const spiffe = parseSpiffeId(payload.sub);
    if (!spiffe) throw deny(typeof payload.sub === 'string' && payload.sub.startsWith('spiffe:') ? 'invalid SPIFFE ID' : 'unknown issuer');
    const entry = this.byTrustDomain.get(spiffe.trustDomain);
    if (!entry) throw deny('untrusted trust domain');
    return entry;
  }

  /** The token must not outlive max_token_lifetime from now, and must not claim to be issued in the future. */
  private checkLifetime(payload: JWTPayload): void {
    const now = Math.floor(Date.now() / 1000);
    if (typeof payload.iat === 'number' && payload.iat > now + CLOCK_SKEW_SECONDS) throw deny('iat in the future');
    if (payload.exp! - now > this.config.identity.max_token_lifetime + CLOCK_SKEW_SECONDS) throw deny('token lifetime too long');
  }
}

function describeJoseError(err: unknown): string {
  if (err instanceof joseErrors.JWTExpired) return 'token expired';
  if (err instanceof joseErrors.JWTClaimValidationFailed) return `claim ${err.claim} invalid`;
  if (err instanceof joseErrors.JWKSNoMatchingKey) return 'no matching key';
  if (err instanceof joseErrors.JWSSignatureVerificationFailed) return 'bad signature';
  if (err instanceof joseErrors.JWKSTimeout || err instanceof joseErrors.JOSEError) return 'token rejected';
  return 'token rejected';
}
