import { Injectable } from '@nestjs/common';
import type { Request } from 'express';
import { CredentialExtractor } from '../identity/credential-extractor';
import { Identity } from '../identity/identity';
import { TokenVerifier } from '../identity/token-verifier';
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
  constructor(
    private readonly vaultTokens: VaultTokenService,
    private readonly verifier: TokenVerifier,
  ) {}

  async extract(req: VaultTokenRequest): Promise<Identity | undefined> {
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
