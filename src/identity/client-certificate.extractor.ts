import { Inject, Injectable } from '@nestjs/common';
import type { Request } from 'express';
import { X509Certificate } from 'node:crypto';
import type { DetailedPeerCertificate, TLSSocket } from 'node:tls';
import { DomainError } from '../common/errors';
import { CONFIG } from '../config/config.module';
import { TesseraConfig } from '../config/config.loader';
import { CredentialExtractor } from './credential-extractor';
import { Identity, X509_ISSUER_NAME } from './identity';
import { TokenVerifier } from './token-verifier';
import { TrustDomainBundles, checkX509Svid } from './x509-svid';

const deny = (code: string, message: string) => new DomainError('unauthenticated', code, message);

/** An X.509-SVID presented over mTLS (only when server.tls is configured). */
@Injectable()
export class ClientCertificateExtractor implements CredentialExtractor {
  private readonly bundles?: TrustDomainBundles;
  /** The identity of a connection's client certificate, checked once per certificate and connection. */
  private readonly bySocket = new WeakMap<TLSSocket, { fingerprint: string; identity: Identity }>();

  constructor(
    @Inject(CONFIG) config: TesseraConfig,
    private readonly tokens: TokenVerifier,
  ) {
    if (config.server.tls) this.bundles = new TrustDomainBundles(config.server.tls.client_ca);
  }

  async extract(req: Request): Promise<Identity | undefined> {
    return this.fromClientCertificate(req);
  }

  private fromClientCertificate(req: Request): Identity | undefined {
    const socket = req.socket as TLSSocket;
    if (!this.bundles || !socket.encrypted || typeof socket.getPeerCertificate !== 'function') return undefined;
    const peer = socket.getPeerCertificate(true);
    if (!peer || !peer.raw) return undefined;
    // The TLS stack validated the chain against the union of the client CA bundles...
    if (!socket.authorized) throw deny('invalid_certificate', `client certificate not trusted (${socket.authorizationError})`);
    if (Date.parse(peer.valid_to) < Date.now()) throw deny('invalid_certificate', 'client certificate expired');
    const cached = this.bySocket.get(socket);
    if (cached?.fingerprint === peer.fingerprint256) return cached.identity;
    const check = checkX509Svid(peer.raw, this.bundles.trustDomains);
    if (!check.ok) throw deny('invalid_certificate', check.reason);
    // ...and the chain must end in the bundle of the SVID's own trust domain, not any configured one.
    if (!this.bundles.chainEndsIn(check.trustDomain, chainOf(peer))) {
      throw deny('invalid_certificate', `the certificate is not signed by a CA of trust domain ${check.trustDomain}`);
    }
    const who = { subject: check.spiffeId, issuer: X509_ISSUER_NAME };
    const identity = { ...who, operator: this.tokens.isOperator(who), claims: {} };
    this.bySocket.set(socket, { fingerprint: peer.fingerprint256, identity });
    return identity;
  }
}

/** The leaf and the certificates above it, as the TLS stack linked them (a root links to itself). */
function chainOf(peer: DetailedPeerCertificate): X509Certificate[] {
  const chain: X509Certificate[] = [];
  const seen = new Set<string>();
  for (let cert: DetailedPeerCertificate | undefined = peer; cert?.raw && !seen.has(cert.fingerprint256); cert = cert.issuerCertificate) {
    seen.add(cert.fingerprint256);
    chain.push(new X509Certificate(cert.raw));
  }
  return chain;
}
