import { Inject, Injectable, OnModuleInit } from '@nestjs/common';
import { JWK, KeyLike, SignJWT, createLocalJWKSet, exportJWK, generateKeyPair, importJWK } from 'jose';
import { randomBytes } from 'node:crypto';
import { CONFIG } from '../config/config.module';
import { TesseraConfig } from '../config/config.loader';
import { SecretBox } from '../crypto/secret-box';
import { Database } from '../storage/database';
import { KeyResolver } from './key-sets';

/** The `iss` of tokens the broker signs itself. */
export const BROKER_ISSUER = 'tessera:broker';
/** The issuer name identities from broker-signed tokens carry. */
export const BOOTSTRAP_ISSUER_NAME = 'bootstrap';

/**
 * The broker's own ES256 signing key, shared by every replica through the state database (sealed with
 * the master key). The first replica to start creates it; the others load it.
 */
@Injectable()
export class BrokerKeys implements OnModuleInit {
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
    // Only the first replica's insert lands; everyone then uses the oldest key.
    await this.db.query(
      `INSERT INTO broker_keys (kid, key_id, sealed, public_jwk)
       SELECT $1, $2, $3, $4 WHERE NOT EXISTS (SELECT 1 FROM broker_keys)`,
      [kid, sealed.keyId, sealed.blob, { ...(await exportJWK(publicKey)), kid, alg: 'ES256', use: 'sig' }],
    );
    const { rows } = await this.db.query<{ kid: string; key_id: string; sealed: Buffer; public_jwk: JWK }>(
      'SELECT kid, key_id, sealed, public_jwk FROM broker_keys ORDER BY created_at, kid',
    );
    const current = rows[0];
    const privateJwk = JSON.parse(this.box.open({ keyId: current.key_id, blob: current.sealed }, `broker-key:${current.kid}`)) as JWK;
    this.signing = { kid: current.kid, key: await importJWK(privateJwk, 'ES256') };
    this.verifyKeys = createLocalJWKSet({ keys: rows.map((r) => r.public_jwk) });
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
}
