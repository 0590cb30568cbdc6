import { createHash, createHmac, hkdfSync } from 'node:crypto';

interface KeyPair {
  /** Keys each event's link in the chain. */
  event: Buffer;
  /** Keys the head's seal (a separate key, so a seal can never pass for an event's link). */
  head: Buffer;
}

const SALT = Buffer.from('tessera-audit', 'utf8');

/**
 * The audit chain's MAC keys, derived from the master keys with HKDF-SHA256 (so the master key itself
 * never keys anything but encryption), by key id. New events use the current master key's; the
 * previous keys' stay available so events chained before a master key rotation still verify.
 */
export class AuditKeys {
  readonly currentId: string;
  private readonly keys = new Map<string, KeyPair>();

  constructor(masterKey: string, previousKeys: readonly string[] = []) {
    this.currentId = this.add(masterKey);
    for (const key of previousKeys) this.add(key);
  }

  has(keyId: string): boolean {
    return this.keys.has(keyId);
  }

  /** An event's link: HMAC-SHA256 over the previous link and the event's canonical text. */
  link(prev: Buffer, body: string, keyId = this.currentId): Buffer | undefined {
    const key = this.keys.get(keyId);
    return key && createHmac('sha256', key.event).update(prev).update(body, 'utf8').digest();
  }

  /** The head's seal over the newest link: without the key, no shorter chain can be sealed. */
  seal(head: Buffer, keyId = this.currentId): Buffer | undefined {
    const key = this.keys.get(keyId);
    return key && createHmac('sha256', key.head).update(head).digest();
  }

  private add(base64Key: string): string {
    const master = Buffer.from(base64Key, 'base64');
    const derive = (info: string) => Buffer.from(hkdfSync('sha256', master, SALT, Buffer.from(info, 'utf8'), 32));
    const pair = { event: derive('tessera audit chain v1'), head: derive('tessera audit head v1') };
    // The id names the derived key without revealing it or the master key.
    const id = `audit-${createHash('sha256').update('tessera-audit-key-id').update(pair.event).digest('hex').slice(0, 16)}`;
    this.keys.set(id, pair);
    return id;
  }
}
