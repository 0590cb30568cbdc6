import { LEASE_ID, newAccountName, newLeaseId, newPassword } from '../../src/leases/names';

describe('broker-generated names', () => {
  it('lease ids carry 144 random bits and match their pattern', () => {
    const ids = new Set(Array.from({ length: 1000 }, newLeaseId));
    expect(ids.size).toBe(1000);
    for (const id of ids) expect(id).toMatch(LEASE_ID);
  });

  it.each([63, 32, 16])('account names fit a %i-character limit and use only [a-z0-9_]', (max) => {
    for (const role of ['payments-ro', 'a'.repeat(100), "x'; DROP ROLE postgres;--", 'rôle-ünïcode', '---']) {
      const name = newAccountName(role, max);
      expect(name.length).toBeLessThanOrEqual(max);
      expect(name).toMatch(/^tsr_[a-z0-9_]+$/);
    }
  });

  it('passwords have at least 128 bits and need no quoting', () => {
    const p = newPassword();
    expect(p).toMatch(/^[A-Za-z0-9_-]{33}$/);
    expect(newPassword()).not.toBe(p);
  });
});
