import { Injectable } from '@nestjs/common';
import type { Request } from 'express';
import { DomainError } from '../common/errors';
import { CredentialExtractor } from './credential-extractor';
import { Identity } from './identity';
import { TokenVerifier } from './token-verifier';

/** `Authorization: Bearer <token>`: a JWT-SVID, an OIDC token or a broker-signed token. */
@Injectable()
export class BearerTokenExtractor implements CredentialExtractor {
  constructor(private readonly tokens: TokenVerifier) {}

  async extract(req: Request): Promise<Identity | undefined> {
    const header = req.headers.authorization;
    if (header === undefined) return undefined;
    const match = /^Bearer ([^\s]+)$/i.exec(header);
    if (!match) throw new DomainError('unauthenticated', 'invalid_token', 'Authorization must be "Bearer <token>"');
    return this.tokens.verify(match[1], { ip: req.ip });
  }
}
