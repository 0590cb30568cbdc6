import { randomBytes } from 'node:crypto';
import { SecretBox } from './secret-box';

const key = () => randomBytes(32).toString('base64');

describe('SecretBox', () => {
  it('round-trips a secret and never stores it in the clear', () => {
    const box = new SecretBox(key());
    const sealed = box.seal('hunter2-correct-horse', 'static:billing:v1');
    expect(sealed.blob.includes(Buffer.from('hunter2'))).toBe(false);
    expect(box.open(sealed, 'static:billing:v1')).toBe('hunter2-correct-horse');
  });

  it('refuses a ciphertext moved to another row (different associated data)', () => {
    const box = new SecretBox(key());
    const sealed = box.seal('s3cret', 'static:a:v1');
    expect(() => box.open(sealed, 'static:b:v1')).toThrow();
  });

  it('refuses a tampered ciphertext', () => {
    const box = new SecretBox(key());
    const sealed = box.seal('s3cret', 'x');
    sealed.blob[sealed.blob.length - 1] ^= 1;
    expect(() => box.open(sealed, 'x')).toThrow();
  });

  it('opens secrets sealed under a previous key after the master key rotates', () => {
    const oldKey = key();
    const sealed = new SecretBox(oldKey).seal('kept', 'x');
    const rotated = new SecretBox(key(), [oldKey]);
    expect(rotated.currentKeyId).not.toBe(sealed.keyId);
    expect(rotated.open(sealed, 'x')).toBe('kept');
    expect(() => new SecretBox(key()).open(sealed, 'x')).toThrow(/no encryption key/);
  });
});
