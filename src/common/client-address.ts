import ipaddr from 'ipaddr.js';

/**
 * The key a per-address limit counts a client under. An IPv4 client (also as an IPv4-mapped IPv6
 * address) is its address; an IPv6 client is its /64, the block one host or one customer is handed:
 * counted per address, a single client could take a fresh limit from each of its 2^64 addresses.
 * What is not an address (no socket address known) is counted together.
 */
export function addressKey(ip: string | undefined): string {
  if (!ip) return 'unknown';
  let addr: ipaddr.IPv4 | ipaddr.IPv6;
  try {
    addr = ipaddr.parse(ip.replace(/%.*$/, ''));
  } catch {
    return 'unknown';
  }
  if (addr.kind() === 'ipv6' && (addr as ipaddr.IPv6).isIPv4MappedAddress()) addr = (addr as ipaddr.IPv6).toIPv4Address();
  if (addr.kind() === 'ipv4') return addr.toString();
  const parts = (addr as ipaddr.IPv6).parts.slice(0, 4).map((p) => p.toString(16));
  return `${parts.join(':')}::/64`;
}
