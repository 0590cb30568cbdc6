import { Inject, Injectable } from '@nestjs/common';
import type { Request } from 'express';
import type { TLSSocket } from 'node:tls';
import { DomainError } from '../common/errors';
import { CONFIG } from '../config/config.module';
import { TesseraConfig } from '../config/config.loader';
import { Identity } from './identity';
import { TokenVerifier } from './token-verifier';
import { checkX509Svid } from './x509-svid';

export const X509_ISSUER_NAME = 'x509';
const deny = (code: string, message: string) => new DomainError('unauthenticated', code, message);

/** Establishes who is calling: a bearer token if one is sent, else an X.509-SVID over mTLS. */
@Injectable()
export class IdentityService {
  constructor(
    @Inject(CONFIG) private readonly config: TesseraConfig,
    private readonly tokens: TokenVerifier,
  ) {}

  async authenticate(req: Request): Promise<Identity> {
    const header = req.headers.authorization;
    if (header !== undefined) {
      const match = /^Bearer ([^\s]+)$/i.exec(header);
      if (!match) throw deny('invalid_token', 'Authorization must be "Bearer <token>"');
      return this.tokens.verify(match[1]);
    }
    const svid = this.fromClientCertificate(req);
    if (svid) return svid;
    throw deny('missing_token', 'Authorization: Bearer <token> required');
  }

  private fromClientCertificate(req: Request): Identity | undefined {
    const socket = req.socket as TLSSocket;
    if (!socket.encrypted || typeof socket.getPeerCertificate !== 'function') return undefined;
    const cert = socket.getPeerCertificate();
    if (!cert || !cert.raw) return undefined;
    // The TLS stack validated the chain against client_ca; a cert it did not trust is refused here.
    if (!socket.authorized) throw deny('invalid_certificate', `client certificate not trusted (${socket.authorizationError})`);
    // Only trust domains the broker knows: those listed, else those of its JWT-SVID issuers.
    const domains =
      this.config.server.tls?.trust_domains ?? this.config.identity.issuers.flatMap((i) => (i.type === 'jwt-svid' ? [i.trust_domain] : []));
    const check = checkX509Svid(cert.raw, domains);
    if (!check.ok) throw deny('invalid_certificate', check.reason);
    return { subject: check.spiffeId, issuer: X509_ISSUER_NAME, operator: this.tokens.operatorSubject(check.spiffeId), claims: {} };
  }
}
