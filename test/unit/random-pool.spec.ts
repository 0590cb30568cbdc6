import { randomBytesPooled } from '../../plugins/contract';

describe('pooled random bytes', () => {
  it('hands out every byte once, as buffers of their own that later draws never change', () => {
    const drawn = Array.from({ length: 2000 }, () => randomBytesPooled(18)); // several pools' worth
    const copies = drawn.map((b) => Buffer.from(b));
    randomBytesPooled(4000);
    for (let i = 0; i < 50; i++) randomBytesPooled(24);
    drawn.forEach((b, i) => expect(b.equals(copies[i])).toBe(true));
    expect(new Set(drawn.map((b) => b.toString('hex'))).size).toBe(drawn.length);
  });

  it('refuses a size that is not a byte count, and the next draw is still fresh', () => {
    for (const bad of [-4, 1.5, Number.NaN]) expect(() => randomBytesPooled(bad)).toThrow(RangeError);
    expect(randomBytesPooled(0)).toHaveLength(0);
    expect(randomBytesPooled(16).equals(Buffer.alloc(16))).toBe(false);
  });

  it('draws sizes larger than a quarter pool directly, and looks random (no byte value more than twice as common as another)', () => {
    expect(randomBytesPooled(5000)).toHaveLength(5000);
    const counts = new Array(256).fill(0);
    for (const b of randomBytesPooled(256 * 400)) counts[b]++;
    expect(Math.max(...counts) / Math.min(...counts)).toBeLessThan(2);
  });
});
