import { JWK } from 'jose';
import { AddressInfo } from 'node:net';
import { Server, createServer } from 'node:http';

/** A local OIDC issuer: discovery document and JWKS, with keys a test can rotate and an outage switch. */
export class OidcTestServer {
  private server?: Server;
  keys: JWK[] = [];
  jwksHits = 0;
  discoveryHits = 0;
  down = false;
  /** Every request, answered or not. */
  requests = 0;
  /** What the discovery document claims as its issuer (defaults to the server's own URL). */
  claimedIssuer?: string;
  url = '';

  async start(): Promise<string> {
    this.server = createServer((req, res) => {
      this.requests++;
      if (this.down) {
        res.writeHead(503).end();
        return;
      }
      if (req.url === '/.well-known/openid-configuration') {
        this.discoveryHits++;
        res.writeHead(200, { 'content-type': 'application/json' }).end(JSON.stringify({ issuer: this.claimedIssuer ?? this.url, jwks_uri: `${this.url}/keys` }));
      } else if (req.url === '/keys') {
        this.jwksHits++;
        res.writeHead(200, { 'content-type': 'application/json' }).end(JSON.stringify({ keys: this.keys }));
      } else {
        res.writeHead(404).end();
      }
    });
    await new Promise<void>((r) => this.server!.listen(0, '127.0.0.1', r));
    this.url = `http://127.0.0.1:${(this.server!.address() as AddressInfo).port}`;
    return this.url;
  }

  async stop(): Promise<void> {
    this.server?.closeAllConnections();
    await new Promise<void>((r) => (this.server ? this.server.close(() => r()) : r()));
  }
}
