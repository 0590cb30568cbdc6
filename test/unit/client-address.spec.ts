import { addressKey } from '../../src/common/client-address';
import { DenialSampler } from '../../src/audit/denial-sampler';

describe('the key a per-address limit counts a client under', () => {
  it('an IPv4 client is its address, also when it arrives IPv4-mapped', () => {
    expect(addressKey('203.0.113.7')).toBe('203.0.113.7');
    expect(addressKey('::ffff:203.0.113.7')).toBe('203.0.113.7');
    expect(addressKey('203.0.113.8')).not.toBe(addressKey('203.0.113.7'));
  });

  it('an IPv6 client is its /64: every address of one block shares one key, however it is written', () => {
    const key = addressKey('2001:db8:aa:bb::1');
    expect(key).toBe('2001:db8:aa:bb::/64');
    expect(addressKey('2001:0db8:00aa:00bb:ffff:ffff:ffff:fffe')).toBe(key);
    expect(addressKey('2001:db8:aa:bb:1234:5678:9abc:def0%eth0')).toBe(key);
    expect(addressKey('2001:db8:aa:bc::1')).not.toBe(key);
    expect(addressKey('::1')).toBe('0:0:0:0::/64');
  });

  it('an IPv4 client behind an IPv6 form is its IPv4 address: compatible, NAT64, 6to4', () => {
    expect(addressKey('::203.0.113.7')).toBe('203.0.113.7');
    expect(addressKey('64:ff9b::cb00:7107')).toBe('203.0.113.7');
    expect(addressKey('64:ff9b::203.0.113.7')).toBe('203.0.113.7');
    expect(addressKey('64:ff9b::cb00:7108')).toBe('203.0.113.8');
    expect(addressKey('2002:cb00:7107:1::1')).toBe('203.0.113.7');
    expect(addressKey('2002:cb00:7107:ffff::2')).toBe('203.0.113.7');
  });

  it('the console counts sign-ins by the same keys', () => {
    expect(addressKey('2001:db8:1:2:aaaa::1')).toBe('2001:db8:1:2::/64');
    expect(addressKey('2001:db8::1')).toBe('2001:db8:0:0::/64');
    expect(addressKey('2001:db8:1:2::')).toBe('2001:db8:1:2::/64');
    expect(addressKey('fe80::1%eth0')).toBe('fe80:0:0:0::/64');
  });

  it('what is not an address is counted together', () => {
    expect(addressKey(undefined)).toBe('unknown');
    expect(addressKey('')).toBe('unknown');
    expect(addressKey('not-an-address')).toBe('unknown');
  });
});

describe('audited refusals without an identity', () => {
  it('share one window per /64: rotating the host bits does not write a row per address', () => {
    const sampler = new DenialSampler(2, 60_000);
    const refusal = (client: string) => sampler.admit({ actor: null, issuer: null, client, status: '401' }, 1_000).write;
    expect([1, 2, 3, 4].map((i) => refusal(`2001:db8:aa:bb::${i}`))).toEqual([true, true, false, false]);
    expect(refusal('2001:db8:aa:bc::1')).toBe(true);
  });
});
