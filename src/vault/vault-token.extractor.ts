import { Inject, Injectable } from '@nestjs/common';
import type { Request } from 'express';
import { CONFIG } from '../config/config.module';
import { TesseraConfig } from '../config/config.loader';
import { CredentialExtractor } from '../identity/credential-extractor';
import { Identity } from '../identity/identity';
import { TokenVerifier } from '../identity/token-verifier';
import { vaultRouteMatcher } from './vault-http';
import { VAULT_TOKEN_PREFIX, VaultTokenService } from './vault-token.service';

/** A request authenticated by a Vault client token carries its id, for the token's self-service routes. */
export type VaultTokenRequest = Request & { vaultTokenId?: string };

/**
 * `X-Vault-Token: <client token>` (or `Authorization: Bearer <client token>`, as some Vault clients
 * send it). `X-Vault-Token` may also carry a token the native API accepts (a JWT-SVID, an OIDC or a
 * broker-signed token). Any other `Authorization` header is left to the bearer token extractor.
 */
@Injectable()
export class VaultTokenExtractor implements CredentialExtractor {
  private readonly isVaultRoute: (req: Request) => boolean;

  constructor(
    private readonly vaultTokens: VaultTokenService,
    private readonly verifier: TokenVerifier,
    @Inject(CONFIG) config: TesseraConfig,
  ) {
    this.isVaultRoute = vaultRouteMatcher(config);
  }

  async extract(req: VaultTokenRequest): Promise<Identity | undefined> {
    // Client tokens are the Vault-compatible API's own: on the native API they are not credentials
    // (a login must not turn into a bearer token for every route).
    if (!this.isVaultRoute(req)) return undefined;
    const header = req.headers['x-vault-token'];
    const bearer = /^Bearer (tvs\.\S+)$/i.exec(req.headers.authorization ?? '')?.[1];
    const token = typeof header === 'string' && header !== '' ? header : bearer;
    if (token === undefined) return undefined;
    if (!token.startsWith(VAULT_TOKEN_PREFIX)) return this.verifier.verify(token, { ip: req.ip });
    const { identity, tokenId } = await this.vaultTokens.authenticate(token);
    req.vaultTokenId = tokenId;
    return identity;
  }
}
