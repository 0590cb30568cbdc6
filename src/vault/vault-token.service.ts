import { Inject, Injectable } from '@nestjs/common';
import { randomBytes } from 'node:crypto';
import { AuditDenials } from '../audit/audit-denials';
import { AuditLog } from '../audit/audit.log';
import { Clock } from '../common/clock';
import { DomainError } from '../common/errors';
import { CONFIG } from '../config/config.module';
import { TesseraConfig } from '../config/config.loader';
import { BootstrapHasher } from '../identity/bootstrap-hash';
import { Identity } from '../identity/identity';
import { TokenVerifier } from '../identity/token-verifier';
import { LeaseService } from '../leases/lease.service';
import { VaultTokenRepository, VaultTokenRow } from './vault-token.repository';

/** `tvs.<id>.<secret>`: the id is the row's key (and the token's accessor); only the secret's keyed hash is stored. */
const TOKEN_FORMAT = /^tvs\.([A-Za-z0-9_-]{16})\.([A-Za-z0-9_-]{43})$/;
export const VAULT_TOKEN_PREFIX = 'tvs.';
const HASH_PURPOSE = 'tessera vault client token v1';

/** A Vault client token's identity: who logged in, with the token's id so self-service routes find it. */
export interface VaultTokenIdentity {
  identity: Identity;
  tokenId: string;
}

export const permissionDenied = () => new DomainError('unauthenticated', 'invalid_token', 'permission denied');

/**
 * Client tokens of the Vault-compatible API. A login exchanges a token the native API accepts for an
 * opaque client token that carries the caller's subject, issuer and claims, never a decision: policy and
 * operator status are evaluated at each request, as for the JWT itself.
 */
@Injectable()
export class VaultTokenService {
  private readonly hasher: BootstrapHasher;

  constructor(
    @Inject(CONFIG) private readonly config: TesseraConfig,
    private readonly tokens: VaultTokenRepository,
    private readonly verifier: TokenVerifier,
    private readonly leases: LeaseService,
    private readonly audit: AuditLog,
    private readonly denials: AuditDenials,
    @Inject(Clock) private readonly clock: Clock,
  ) {
    this.hasher = new BootstrapHasher(config.encryption.key, config.encryption.previous_keys, HASH_PURPOSE);
  }

  async login(jwt: string, client: { ip?: string }): Promise<{ token: string; row: VaultTokenRow; identity: Identity }> {
    // The login route is public, so the auth guard does not see a refused token: it is audited here.
    const identity = await this.verifier.verify(jwt, client).catch(async (err: unknown) => {
      if (err instanceof DomainError && err.kind === 'unauthenticated') {
        await this.denials.denied({ status: 403, action: 'vault.login', reason: err.message, identity: null, client: client.ip ?? null });
      }
      throw err;
    });
    const id = randomBytes(12).toString('base64url');
    const secret = randomBytes(32).toString('base64url');
    const now = this.clock.now().getTime();
    // A client token never outlives what the broker allows any token (identity.max_token_lifetime): a
    // login must not turn a short-lived JWT into a day-long credential.
    const lifetime = Math.min(this.config.vault.token_max_ttl, this.config.identity.max_token_lifetime);
    const token_ttl = Math.min(this.config.vault.token_ttl, lifetime);
    const token_max_ttl = lifetime;
    const row = {
      id,
      hash: this.hasher.hash(id, secret),
      subject: identity.subject,
      issuer: identity.issuer,
      claims: { ...identity.claims },
      expiresAt: new Date(now + token_ttl * 1000),
      maxExpiresAt: new Date(now + token_max_ttl * 1000),
    };
    await this.tokens.tx(async (tx) => {
      await this.tokens.insert(row, tx);
      await this.audit.append(
        { type: 'vault.token_created', actor: identity.subject, detail: { accessor: id, issuer: identity.issuer, expires_at: row.expiresAt.toISOString() } },
        tx,
      );
    });
    const stored: VaultTokenRow = {
      id,
      hash: row.hash,
      subject: row.subject,
      issuer: row.issuer,
      claims: row.claims,
      created_at: new Date(now),
      renewed_at: null,
      expires_at: row.expiresAt,
      max_expires_at: row.maxExpiresAt,
      revoked_at: null,
    };
    return { token: `${VAULT_TOKEN_PREFIX}${id}.${secret}`, row: stored, identity };
  }

  /** The identity behind a client token; a malformed, unknown, revoked or expired one is `permission denied`. */
  async authenticate(token: string): Promise<VaultTokenIdentity> {
    const match = TOKEN_FORMAT.exec(token);
    if (!match) throw permissionDenied();
    const [, id, secret] = match;
    const row = await this.tokens.get(id);
    if (!row || !this.hasher.matches(row.hash, id, secret) || row.revoked_at || row.expires_at <= this.clock.now()) throw permissionDenied();
    const who = { subject: row.subject, issuer: row.issuer };
    return { tokenId: id, identity: { ...who, operator: this.verifier.isOperator(who), claims: row.claims } };
  }

  async lookup(tokenId: string): Promise<VaultTokenRow> {
    const row = await this.tokens.get(tokenId);
    if (!row) throw permissionDenied();
    return row;
  }

  /** Vault's rule for tokens: from now, by the increment or token_ttl, never past the token's max. */
  async renew(tokenId: string, increment: number | undefined): Promise<{ row: VaultTokenRow; capped: boolean }> {
    const current = await this.lookup(tokenId);
    const now = this.clock.now().getTime();
    const wanted = now + (increment || this.config.vault.token_ttl) * 1000;
    const expiresAt = new Date(Math.min(wanted, current.max_expires_at.getTime()));
    const row = await this.tokens.renew(tokenId, expiresAt);
    if (!row) throw permissionDenied();
    // Audited like every other change of what a credential can do (the token's new expiry, never the token).
    await this.audit.append({ type: 'vault.token_renewed', actor: row.subject, detail: { accessor: tokenId, expires_at: row.expires_at.toISOString() } });
    return { row, capped: wanted > expiresAt.getTime() };
  }

  /**
   * Revokes the token. Its leases stay (they belong to the workload, as on the native API) unless
   * vault.revoke_leases_with_token restores Vault's behaviour.
   */
  async revoke(self: VaultTokenIdentity): Promise<void> {
    await this.tokens.tx(async (tx) => {
      if (await this.tokens.revoke(self.tokenId, tx)) {
        await this.audit.append({ type: 'vault.token_revoked', actor: self.identity.subject, detail: { accessor: self.tokenId } }, tx);
      }
    });
    if (!this.config.vault.revoke_leases_with_token) return;
    for (const leaseId of await this.tokens.leasesOf(self.tokenId)) {
      await this.leases.revoke(self.identity, leaseId).catch((err) => {
        if (!(err instanceof DomainError && err.kind === 'not_found')) throw err;
      });
      await this.tokens.forgetLease(self.tokenId, leaseId);
    }
  }

  /** With vault.revoke_leases_with_token, remembers which token issued a lease. */
  async issuedWith(tokenId: string | undefined, leaseId: string): Promise<void> {
    if (tokenId && this.config.vault.revoke_leases_with_token) await this.tokens.recordLease(tokenId, leaseId);
  }
}
