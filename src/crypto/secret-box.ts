import { createCipheriv, createDecipheriv, createHash, randomBytes } from 'node:crypto';

/** A secret sealed for storage: the key id is stored beside the ciphertext so the master key can rotate. */
export interface Sealed {
  keyId: string;
  /** 12-byte IV | 16-byte GCM tag | ciphertext */
  blob: Buffer;
}

/**
 * AES-256-GCM envelope for secrets at rest. `aad` binds a ciphertext to the row it belongs to (for
 * example a static secret's name and version), so a ciphertext copied into another row fails to open.
 * New secrets are sealed with the current key; older keys stay able to open what they sealed.
 */
export class SecretBox {
  private readonly keys = new Map<string, Buffer>();
  readonly currentKeyId: string;

  constructor(currentKey: string, previousKeys: readonly string[] = []) {
    this.currentKeyId = this.add(currentKey);
    for (const key of previousKeys) this.add(key);
  }

  seal(plaintext: string, aad: string): Sealed {
    const iv = randomBytes(12);
    const cipher = createCipheriv('aes-256-gcm', this.keys.get(this.currentKeyId)!, iv);
    cipher.setAAD(Buffer.from(aad, 'utf8'));
    const body = Buffer.concat([cipher.update(plaintext, 'utf8'), cipher.final()]);
    return { keyId: this.currentKeyId, blob: Buffer.concat([iv, cipher.getAuthTag(), body]) };
  }

  open(sealed: Sealed, aad: string): string {
    const key = this.keys.get(sealed.keyId);
    if (!key) throw new Error(`no encryption key with id ${sealed.keyId} is configured`);
    const decipher = createDecipheriv('aes-256-gcm', key, sealed.blob.subarray(0, 12));
    decipher.setAuthTag(sealed.blob.subarray(12, 28));
    decipher.setAAD(Buffer.from(aad, 'utf8'));
    return Buffer.concat([decipher.update(sealed.blob.subarray(28)), decipher.final()]).toString('utf8');
  }

  private add(base64Key: string): string {
    const key = Buffer.from(base64Key, 'base64');
    if (key.length !== 32) throw new Error('encryption keys must be 32 bytes');
    // The id names the key without revealing it: a truncated hash of a 256-bit random key.
    const id = createHash('sha256').update('tessera-key-id').update(key).digest('hex').slice(0, 16);
    this.keys.set(id, key);
    return id;
  }
}
