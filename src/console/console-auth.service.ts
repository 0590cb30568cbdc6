import { Inject, Injectable } from '@nestjs/common';
import { createHash, randomBytes } from 'node:crypto';
import { AuditDenials } from '../audit/audit-denials';
import { AuditLog } from '../audit/audit.log';
import { Clock } from '../common/clock';
import { DomainError } from '../common/errors';
import { TesseraConfig } from '../config/config.loader';
import { CONFIG } from '../config/config.module';
import { Identity } from '../identity/identity';
import { TokenVerifier } from '../identity/token-verifier';
import { ConsoleSessionRepository, PendingLogin } from './console-session.repository';
import { OidcClient, sameText } from './oidc-client';

/** How long a sign-in may take at the identity provider. */
const LOGIN_TTL_MS = 10 * 60_000;

/** A signed-in operator: who they are, and the token their forms must carry. */
export interface ConsoleSession {
  identity: Identity;
  displayName: string | null;
  csrfToken: string;
  expiresAt: Date;
}

const random = () => randomBytes(32).toString('base64url');
/** Session and login ids are 256 random bits: a plain hash is enough to keep them out of the database. */
const hashOf = (id: string) => createHash('sha256').update(id).digest();
/** Cookie values are ours: 43 base64url characters. Anything else is not looked up. */
const WELL_FORMED = /^[A-Za-z0-9_-]{43}$/;

const signInExpired = () => new DomainError('unauthenticated', 'sign_in_expired', 'this sign-in expired or was already used; sign in again');

/**
 * Operators' sign-in to the console (DESIGN §12): OIDC authorization code flow with PKCE against
 * ui.oidc, then a server-side session. Only a subject that, qualified by the issuer's name, matches
 * `operators` gets a session; the rest are refused (and audited as denied).
 */
@Injectable()
export class ConsoleAuthService {
  readonly oidc: OidcClient;
  private readonly sessionTtlMs: number;
  private readonly maxPendingSignIns: number;

  constructor(
    @Inject(CONFIG) config: TesseraConfig,
    private readonly sessions: ConsoleSessionRepository,
    private readonly tokens: TokenVerifier,
    private readonly audit: AuditLog,
    private readonly denials: AuditDenials,
    @Inject(Clock) private readonly clock: Clock,
  ) {
    const ui = config.ui!;
    const issuer = config.identity.issuers.find((i) => i.name === ui.oidc.issuer);
    if (!issuer || issuer.type !== 'oidc') throw new Error(`ui.oidc.issuer: no oidc issuer named ${ui.oidc.issuer}`);
    this.oidc = new OidcClient({
      name: issuer.name,
      issuer: issuer.issuer,
      jwksFile: issuer.jwks_file,
      jwksUrl: issuer.jwks_url,
      jwksOrigins: issuer.jwks_origins,
      jwksCooldownSeconds: issuer.jwks_cooldown,
      clientId: ui.oidc.client_id,
      clientSecret: ui.oidc.client_secret,
      scopes: ui.oidc.scopes,
      redirectUri: `${ui.public_url}/ui/callback`,
    });
    this.sessionTtlMs = ui.session_ttl * 1000;
    this.maxPendingSignIns = ui.max_pending_sign_ins;
  }

  /** Starts a sign-in: the value for the browser's login cookie, and where to send the browser. */
  async beginSignIn(): Promise<{ loginId: string; redirectTo: string; maxAgeSeconds: number }> {
    const loginId = random();
    const login = { state: random(), nonce: random(), code_verifier: random() };
    const redirectTo = await this.oidc.authorizationUrl({ state: login.state, nonce: login.nonce, codeVerifier: login.code_verifier });
    await this.sessions.insertLogin(hashOf(loginId), login, new Date(this.clock.now().getTime() + LOGIN_TTL_MS), this.maxPendingSignIns);
    return { loginId, redirectTo, maxAgeSeconds: LOGIN_TTL_MS / 1000 };
  }

  /**
   * Finishes a sign-in at the callback. The login cookie ties it to the browser that began it, the
   * state to this sign-in; the code is exchanged with the PKCE verifier and the ID token verified.
   */
  async finishSignIn(
    loginIds: readonly string[],
    callback: { code?: string; state?: string; error?: string; iss?: string },
    client: string | null,
  ): Promise<{ sessionId: string; session: ConsoleSession }> {
    // Several cookies of the name (one set by another service on this host, with a longer path): the
    // first that is a sign-in under way is this one.
    let login: PendingLogin | undefined;
    for (const loginId of loginIds.filter((id) => WELL_FORMED.test(id)).slice(0, 5)) {
      login = await this.sessions.takeLogin(hashOf(loginId));
      if (login) break;
    }
    if (!login) throw signInExpired();
    if (!callback.state || !sameText(callback.state, login.state)) throw new DomainError('unauthenticated', 'sign_in_mismatch', 'the answer of the identity provider does not belong to this sign-in; sign in again');
    // RFC 9207: a provider that names itself in the answer must be the one this sign-in went to.
    if (callback.iss !== undefined && callback.iss !== this.oidc.issuerUrl) throw new DomainError('unauthenticated', 'sign_in_mismatch', 'the answer came from another identity provider; sign in again');
    if (callback.error !== undefined) {
      const code = /^[A-Za-z0-9_.-]{1,64}$/.test(callback.error) ? callback.error : 'error';
      throw new DomainError('unauthenticated', 'sign_in_refused', `the identity provider did not sign you in (${code})`);
    }
    if (!callback.code) throw new DomainError('malformed', 'sign_in_malformed', 'the identity provider sent no authorization code');
    const claims = await this.oidc.signIn(callback.code, login.code_verifier, login.nonce);
    const identity: Identity = {
      subject: claims.sub,
      issuer: this.oidc.issuerName,
      operator: this.tokens.isOperator({ issuer: this.oidc.issuerName, subject: claims.sub }),
      claims,
    };
    if (!identity.operator) {
      await this.denials.denied({ status: 403, action: 'console.sign_in', reason: 'not an operator', identity, client });
      throw new DomainError('forbidden', 'not_an_operator', `${identity.subject} (issuer ${identity.issuer}) is not an operator of this broker`);
    }
    const now = this.clock.now().getTime();
    const expiresAt = new Date(Math.min(now + this.sessionTtlMs, claims.exp * 1000));
    const sessionId = random();
    const csrfToken = random();
    const displayName = displayNameOf(claims);
    await this.sessions.insertSession(hashOf(sessionId), { subject: identity.subject, issuer: identity.issuer, display_name: displayName, csrf_token: csrfToken }, expiresAt);
    await this.audit.append({ type: 'console.signed_in', actor: identity.subject, detail: { issuer: identity.issuer, expires_at: expiresAt.toISOString(), client } });
    return { sessionId, session: { identity, displayName, csrfToken, expiresAt } };
  }

  /**
   * The first live session among the values of the session cookie (a browser sends every cookie of
   * the name whose path matches, so one set by another service on this host may come first).
   */
  async firstSession(sessionIds: readonly string[]): Promise<{ id: string; session: ConsoleSession } | undefined> {
    for (const id of sessionIds.slice(0, 5)) {
      const session = await this.session(id);
      if (session) return { id, session };
    }
    return undefined;
  }

  /** The session a cookie names, if it is live and its subject is still an operator. */
  async session(sessionId: string | undefined): Promise<ConsoleSession | undefined> {
    if (!sessionId || !WELL_FORMED.test(sessionId)) return undefined;
    const row = await this.sessions.session(hashOf(sessionId));
    if (!row) return undefined;
    const operator = this.tokens.isOperator({ issuer: row.issuer, subject: row.subject });
    if (!operator) return undefined;
    return {
      identity: { subject: row.subject, issuer: row.issuer, operator, claims: {} },
      displayName: row.display_name,
      csrfToken: row.csrf_token,
      expiresAt: row.expires_at,
    };
  }

  async signOut(sessionId: string, session: ConsoleSession): Promise<void> {
    if (await this.sessions.deleteSession(hashOf(sessionId))) {
      await this.audit.append({ type: 'console.signed_out', actor: session.identity.subject, detail: { issuer: session.identity.issuer } });
    }
  }
}

/** A name to greet the operator with (never used for a decision). */
function displayNameOf(claims: Record<string, unknown>): string | null {
  for (const key of ['name', 'preferred_username', 'email']) {
    const v = claims[key];
    if (typeof v === 'string' && v.length > 0 && v.length <= 200 && !/[\u0000-\u001f\u007f]/.test(v)) return v;
  }
  return null;
}
