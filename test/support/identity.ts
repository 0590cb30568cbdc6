import { JWK, exportJWK, generateKeyPair } from 'jose';
import { mkdtempSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { MintOptions, mintJwtSvid } from '../../scripts/tokens';

export const TRUST_DOMAIN = 'test.example';
export const spiffe = (path: string) => `spiffe://${TRUST_DOMAIN}/${path}`;

export interface TestIssuer {
  jwksFile: string;
  privateJwk: JWK;
  mint(subject: string, opts?: Omit<MintOptions, 'subject'>): Promise<string>;
}

let cached: Promise<TestIssuer> | undefined;

/** One ES256 key per test process, published as a SPIFFE bundle (use: "jwt-svid") in a temp file. */
export function testIssuer(): Promise<TestIssuer> {
  cached ??= (async () => {
    const { publicKey, privateKey } = await generateKeyPair('ES256', { extractable: true });
    const kid = `test-${process.pid}`;
    const privateJwk = { ...(await exportJWK(privateKey)), kid, alg: 'ES256' };
    const dir = mkdtempSync(join(tmpdir(), 'tessera-test-'));
    const jwksFile = join(dir, 'bundle.json');
    writeFileSync(jwksFile, JSON.stringify({ keys: [{ ...(await exportJWK(publicKey)), kid, use: 'jwt-svid', alg: 'ES256' }] }));
    return { jwksFile, privateJwk, mint: (subject, opts = {}) => mintJwtSvid(privateJwk, { ...opts, subject }) };
  })();
  return cached;
}
