import { createHmac, hkdfSync, timingSafeEqual } from 'node:crypto';

const SALT = Buffer.from('tessera-bootstrap', 'utf8');
/** HKDF info of bootstrap secrets; another kind of stored secret passes its own, so each gets its own key. */
const BOOTSTRAP_INFO = 'tessera bootstrap secret v1';

/**
 * Bootstrap secrets are stored as HMAC-SHA256 keyed from the master key (HKDF-SHA256), bound to the
 * secret's id: a copy of the table is no dictionary to test guesses against, and a hash moved to
 * another row does not match. Secrets made under a previous master key keep working until they expire.
 * Vault client tokens are hashed the same way under their own `purpose` (a different derived key).
 */
export class BootstrapHasher {
  private readonly keys: Buffer[];

  constructor(masterKey: string, previousKeys: readonly string[] = [], purpose = BOOTSTRAP_INFO) {
    const info = Buffer.from(purpose, 'utf8');
    this.keys = [masterKey, ...previousKeys].map((k) => Buffer.from(hkdfSync('sha256', Buffer.from(k, 'base64'), SALT, info, 32)));
  }

  hash(id: string, secret: string): Buffer {
    return this.hashWith(this.keys[0], id, secret);
  }

  /** Constant time for each configured key; true when any of them made `stored`. */
  matches(stored: Buffer, id: string, secret: string): boolean {
    let ok = false;
    for (const key of this.keys) {
      const candidate = this.hashWith(key, id, secret);
      ok = (stored.length === candidate.length && timingSafeEqual(stored, candidate)) || ok;
    }
    return ok;
  }

  private hashWith(key: Buffer, id: string, secret: string): Buffer {
    return createHmac('sha256', key).update(id, 'utf8').update('.').update(secret, 'utf8').digest();
  }
}
