import { Inject, Injectable, Logger, OnModuleInit } from '@nestjs/common';
import { JWK, KeyLike, SignJWT, createLocalJWKSet, exportJWK, generateKeyPair, importJWK } from 'jose';
import { randomBytes } from 'node:crypto';
import { CONFIG } from '../config/config.module';
import { TesseraConfig } from '../config/config.loader';
import { SecretBox } from '../crypto/secret-box';
import { Database } from '../storage/database';
import { KeyResolver } from './key-sets';

/** The `iss` of tokens the broker signs itself. */
export const BROKER_ISSUER = 'tessera:broker';

/**
 * The broker's own ES256 signing key, shared by every replica through the state database (sealed with
 * the master key, bound to its kid). The first replica to start creates it; the others load it.
 * Verification keys are derived from the sealed private keys, never read from the public_jwk column:
 * whoever can write the state database but lacks the master key cannot plant a key the broker trusts.
 */
@Injectable()
export class BrokerKeys implements OnModuleInit {
  private readonly log = new Logger(BrokerKeys.name);
  private signing?: { kid: string; key: KeyLike | Uint8Array };
  private verifyKeys?: KeyResolver;

  constructor(
    @Inject(CONFIG) private readonly config: TesseraConfig,
    @Inject(Database) private readonly db: Database,
    @Inject(SecretBox) private readonly box: SecretBox,
  ) {}

  async onModuleInit(): Promise<void> {
    const { publicKey, privateKey } = await generateKeyPair('ES256', { extractable: true });
    const kid = `broker-${randomBytes(6).toString('hex')}`;
    const sealed = this.box.seal(JSON.stringify(await exportJWK(privateKey)), `broker-key:${kid}`);
    // Only the first replica's insert lands; everyone then uses the oldest key. public_jwk is written
    // for people reading the table; the broker itself does not trust it.
    await this.db.query(
      `INSERT INTO broker_keys (kid, key_id, sealed, public_jwk)
       SELECT $1, $2, $3, $4 WHERE NOT EXISTS (SELECT 1 FROM broker_keys)`,
      [kid, sealed.keyId, sealed.blob, { ...(await exportJWK(publicKey)), kid, alg: 'ES256', use: 'sig' }],
    );
    const { rows } = await this.db.query<{ kid: string; key_id: string; sealed: Buffer }>(
      'SELECT kid, key_id, sealed FROM broker_keys ORDER BY created_at, kid',
    );
    const opened = rows.flatMap((row) => {
      const privateJwk = this.open(row);
      return privateJwk ? [{ kid: row.kid, privateJwk }] : [];
    });
    if (!opened.length) throw new Error('no broker signing key in broker_keys opens with the configured encryption keys');
    const current = opened[0];
    this.signing = { kid: current.kid, key: await importJWK(current.privateJwk, 'ES256') };
    this.verifyKeys = createLocalJWKSet({ keys: opened.map(({ kid, privateJwk }) => publicPart(kid, privateJwk)) });
  }

  get keys(): KeyResolver {
    return this.verifyKeys!;
  }

  async sign(subject: string, ttlSeconds: number): Promise<{ token: string; expiresAt: Date }> {
    const now = Math.floor(Date.now() / 1000);
    const expiresAt = new Date((now + ttlSeconds) * 1000);
    const token = await new SignJWT({})
      .setProtectedHeader({ alg: 'ES256', kid: this.signing!.kid, typ: 'JWT' })
      .setIssuer(BROKER_ISSUER)
      .setSubject(subject)
      .setAudience(this.config.identity.audience)
      .setIssuedAt(now)
      .setExpirationTime(now + ttlSeconds)
      .setJti(randomBytes(12).toString('base64url'))
      .sign(this.signing!.key);
    return { token, expiresAt };
  }

  /** The row's private key, or undefined when it does not open (another master key, or planted). */
  private open(row: { kid: string; key_id: string; sealed: Buffer }): JWK | undefined {
    try {
      const jwk = JSON.parse(this.box.open({ keyId: row.key_id, blob: row.sealed }, `broker-key:${row.kid}`)) as JWK;
      if (jwk.kty !== 'EC' || jwk.crv !== 'P-256' || typeof jwk.d !== 'string') throw new Error('not an ES256 private key');
      return jwk;
    } catch (err) {
      this.log.warn(`broker key ${row.kid} ignored: its sealed private key does not open (${(err as Error).message})`);
      return undefined;
    }
  }
}

/** The public half of an EC private JWK, as a verification key. */
function publicPart(kid: string, privateJwk: JWK): JWK {
  return { kty: privateJwk.kty, crv: privateJwk.crv, x: privateJwk.x, y: privateJwk.y, kid, alg: 'ES256', use: 'sig' };
}
