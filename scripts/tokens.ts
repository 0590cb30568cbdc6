/** Minting JWT-SVIDs with a local key: for the demo, local experiments and tests. Not used by the broker. */
import { JWK, SignJWT, importJWK } from 'jose';

export interface MintOptions {
  subject: string;
  audience?: string | string[];
  ttlSeconds?: number;
  claims?: Record<string, unknown>;
}

export async function mintJwtSvid(privateJwk: JWK, opts: MintOptions): Promise<string> {
  const alg = privateJwk.alg ?? 'ES256';
  const key = await importJWK(privateJwk, alg);
  const now = Math.floor(Date.now() / 1000);
  return new SignJWT({ ...(opts.claims ?? {}) })
    .setProtectedHeader({ alg, kid: privateJwk.kid, typ: 'JWT' })
    .setSubject(opts.subject)
    .setAudience(opts.audience ?? 'tessera')
    .setIssuedAt(now)
    .setExpirationTime(now + (opts.ttlSeconds ?? 3600))
    .sign(key);
}
