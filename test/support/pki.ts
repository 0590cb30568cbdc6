/** A throwaway PKI for mTLS tests: a CA, a server certificate, and X.509-SVIDs good and bad. */
import 'reflect-metadata';
import * as x509 from '@peculiar/x509';
import { webcrypto } from 'node:crypto';

type CryptoKey = webcrypto.CryptoKey;
type CryptoKeyPair = webcrypto.CryptoKeyPair;
import { mkdtempSync, writeFileSync } from 'node:fs';
import { request } from 'node:https';
import { tmpdir } from 'node:os';
import { join } from 'node:path';

x509.cryptoProvider.set(webcrypto as unknown as Parameters<typeof x509.cryptoProvider.set>[0]);
const ALG = { name: 'ECDSA', namedCurve: 'P-256', hash: 'SHA-256' };
const day = 86_400_000;

export interface Issued {
  cert: string;
  key: string;
}

async function keyPem(key: CryptoKey): Promise<string> {
  const der = Buffer.from(await webcrypto.subtle.exportKey('pkcs8', key as never));
  return `-----BEGIN PRIVATE KEY-----\n${der.toString('base64').replace(/(.{64})/g, '$1\n')}\n-----END PRIVATE KEY-----\n`;
}

export class TestCa {
  private constructor(
    private readonly keys: CryptoKeyPair,
    readonly cert: x509.X509Certificate,
  ) {}

  static async create(name = 'Tessera Test CA'): Promise<TestCa> {
    const keys = (await webcrypto.subtle.generateKey(ALG, true, ['sign', 'verify'])) as CryptoKeyPair;
    const cert = await x509.X509CertificateGenerator.createSelfSigned({
      serialNumber: '01',
      name: `CN=${name}`,
      notBefore: new Date(Date.now() - day),
      notAfter: new Date(Date.now() + day),
      keys,
      signingAlgorithm: ALG,
      extensions: [new x509.BasicConstraintsExtension(true, 2, true), new x509.KeyUsagesExtension(x509.KeyUsageFlags.keyCertSign | x509.KeyUsageFlags.cRLSign, true)],
    });
    return new TestCa(keys, cert);
  }

  get pem(): string {
    return this.cert.toString('pem');
  }

  /** A new key pair and a certificate for it, signed by this CA and valid for a day either side of now. */
  private async sign(subject: string, extensions: x509.Extension[]): Promise<{ keys: CryptoKeyPair; cert: x509.X509Certificate }> {
    const keys = (await webcrypto.subtle.generateKey(ALG, true, ['sign', 'verify'])) as CryptoKeyPair;
    const cert = await x509.X509CertificateGenerator.create({
      serialNumber: Date.now().toString(16) + Math.floor(Math.random() * 1e6).toString(16),
      subject,
      issuer: this.cert.subject,
      notBefore: new Date(Date.now() - day),
      notAfter: new Date(Date.now() + day),
      signingKey: this.keys.privateKey,
      publicKey: keys.publicKey,
      signingAlgorithm: ALG,
      extensions,
    });
    return { keys, cert };
  }

  /** An intermediate CA signed by this one; what it issues carries it in the chain it presents. */
  async intermediate(name = 'Tessera Test Intermediate CA'): Promise<TestCa> {
    const { keys, cert } = await this.sign(`CN=${name}`, [
      new x509.BasicConstraintsExtension(true, 1, true),
      new x509.KeyUsagesExtension(x509.KeyUsageFlags.keyCertSign | x509.KeyUsageFlags.cRLSign, true),
    ]);
    const child = new TestCa(keys, cert);
    child.chain = [child.pem, ...this.chain];
    return child;
  }

  /** This CA and the intermediates above it, nearest first, up to (not including) the root. */
  private chain: string[] = [];

  async issue(opts: { uris?: string[]; dns?: string[]; ips?: string[]; ca?: boolean; usage?: number; serverAuth?: boolean }): Promise<Issued> {
    const names = [
      ...(opts.uris ?? []).map((value) => ({ type: 'url' as const, value })),
      ...(opts.dns ?? []).map((value) => ({ type: 'dns' as const, value })),
      ...(opts.ips ?? []).map((value) => ({ type: 'ip' as const, value })),
    ];
    const { keys, cert } = await this.sign('CN=test', [
      new x509.BasicConstraintsExtension(opts.ca ?? false, undefined, true),
      new x509.KeyUsagesExtension(opts.usage ?? x509.KeyUsageFlags.digitalSignature, true),
      new x509.ExtendedKeyUsageExtension([opts.serverAuth ? x509.ExtendedKeyUsage.serverAuth : x509.ExtendedKeyUsage.clientAuth]),
      ...(names.length ? [new x509.SubjectAlternativeNameExtension(names)] : []),
    ]);
    // A leaf of an intermediate presents its chain: leaf, then each intermediate up to the root.
    return { cert: [cert.toString('pem'), ...this.chain].join('\n'), key: await keyPem(keys.privateKey) };
  }
}

export const KeyUsage = x509.KeyUsageFlags;

export function writePem(files: Record<string, string>): Record<string, string> {
  const dir = mkdtempSync(join(tmpdir(), 'tessera-pki-'));
  return Object.fromEntries(Object.entries(files).map(([name, pem]) => [name, (writeFileSync(join(dir, name), pem), join(dir, name))]));
}

/** An HTTPS request trusting the test CA, with an optional client certificate and bearer token. */
export function httpsJson(
  url: string,
  opts: { ca: string; client?: Issued; token?: string; method?: string },
): Promise<{ status: number; body: any }> {
  return new Promise((resolve, reject) => {
    const req = request(
      url,
      {
        method: opts.method ?? 'GET',
        ca: opts.ca,
        cert: opts.client?.cert,
        key: opts.client?.key,
        headers: opts.token ? { authorization: `Bearer ${opts.token}` } : {},
      },
      (res) => {
        let text = '';
        res.on('data', (c) => (text += c));
        res.on('end', () => resolve({ status: res.statusCode ?? 0, body: text ? JSON.parse(text) : undefined }));
      },
    );
    req.on('error', reject);
    req.end();
  });
}
