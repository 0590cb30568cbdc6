import { createHmac, hkdfSync, timingSafeEqual } from 'node:crypto';

const SALT = Buffer.from('tessera-bootstrap', 'utf8');
const INFO = Buffer.from('tessera bootstrap secret v1', 'utf8');

/**
 * Bootstrap secrets are stored as HMAC-SHA256 keyed from the master key (HKDF-SHA256), bound to the
 * secret's id: a copy of the table is no dictionary to test guesses against, and a hash moved to
 * another row does not match. Secrets made under a previous master key keep working until they expire.
 */
export class BootstrapHasher {
  private readonly keys: Buffer[];

  constructor(masterKey: string, previousKeys: readonly string[] = []) {
    this.keys = [masterKey, ...previousKeys].map((k) => Buffer.from(hkdfSync('sha256', Buffer.from(k, 'base64'), SALT, INFO, 32)));
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
