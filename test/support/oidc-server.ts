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
  /** What the discovery document names as jwks_uri (defaults to this server's /keys). */
  jwksUri?: string;
  /** Serve /keys as an endless stream with no content-length, as a hostile endpoint would. */
  endlessKeys = false;
  /** Bytes of the endless stream written before the client went away, once it has. */
  endlessBytesWritten?: number;
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
        res.writeHead(200, { 'content-type': 'application/json' }).end(JSON.stringify({ issuer: this.claimedIssuer ?? this.url, jwks_uri: this.jwksUri ?? `${this.url}/keys` }));
      } else if (req.url === '/keys' && this.endlessKeys) {
        this.jwksHits++;
        res.writeHead(200, { 'content-type': 'application/json' });
        const chunk = `{"keys":[${'{"kty":"oct","k":"AAAA"},'.repeat(2000)}`;
        let written = 0;
        const pump = () => {
          while (!res.destroyed) {
            written += chunk.length;
            if (!res.write(chunk)) return void res.once('drain', pump);
          }
        };
        res.on('close', () => (this.endlessBytesWritten = written));
        pump();
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
