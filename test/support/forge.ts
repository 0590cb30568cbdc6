/** Building tokens the broker must refuse: arbitrary headers and claims, wrong keys, wrong shapes. */
import { CompactSign, JWK, exportJWK, exportSPKI, generateKeyPair, importJWK } from 'jose';
import { mkdtempSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';

const b64 = (value: unknown) => Buffer.from(typeof value === 'string' ? value : JSON.stringify(value)).toString('base64url');

export async function signRaw(header: Record<string, unknown>, payload: unknown, key: JWK | Uint8Array, alg = String(header.alg)): Promise<string> {
  const material = key instanceof Uint8Array ? key : await importJWK(key, alg);
  return new CompactSign(Buffer.from(JSON.stringify(payload))).setProtectedHeader({ ...header, alg } as never).sign(material);
}

export function unsigned(header: Record<string, unknown>, payload: unknown): string {
  return `${b64(header)}.${b64(payload)}.`;
}

export function claims(subject: string, extra: Record<string, unknown> = {}): Record<string, unknown> {
  const now = Math.floor(Date.now() / 1000);
  return { sub: subject, aud: 'tessera', iat: now, exp: now + 600, ...extra };
}

/** A second signer, with its JWKS written to a file: another issuer's keys, or an attacker's. */
export async function otherKey(kid: string, alg: 'ES256' | 'RS256' | 'EdDSA' = 'ES256') {
  const { publicKey, privateKey } = await generateKeyPair(alg, { extractable: true });
  const privateJwk = { ...(await exportJWK(privateKey)), kid, alg };
  const publicJwk = { ...(await exportJWK(publicKey)), kid, alg, use: 'sig' };
  const file = join(mkdtempSync(join(tmpdir(), 'tessera-keys-')), 'jwks.json');
  writeFileSync(file, JSON.stringify({ keys: [publicJwk] }));
  return { privateJwk, publicJwk, file, spki: alg === 'EdDSA' ? '' : await exportSPKI(publicKey) };
}

export { b64 };

/** ES256 signed by hand, for headers jose itself refuses to produce (e.g. an unknown crit). */
export function signEs256ByHand(header: Record<string, unknown>, payload: unknown, privateJwk: JWK): string {
  const { createPrivateKey, sign } = require('node:crypto') as typeof import('node:crypto');
  const input = `${b64({ alg: 'ES256', ...header })}.${b64(payload)}`;
  const key = createPrivateKey({ key: privateJwk as never, format: 'jwk' });
  return `${input}.${sign('sha256', Buffer.from(input), { key, dsaEncoding: 'ieee-p1363' }).toString('base64url')}`;
}
