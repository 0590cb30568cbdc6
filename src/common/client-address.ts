import ipaddr from 'ipaddr.js';
import { isIPv4 } from 'node:net';

/** NAT64's well-known prefix (RFC 6052): the client's IPv4 address is the last 32 bits. */
const NAT64 = ipaddr.IPv6.parseCIDR('64:ff9b::/96');
/** 6to4 (RFC 3056): the client's IPv4 address is bits 16-47. */
const SIX_TO_FOUR = ipaddr.IPv6.parseCIDR('2002::/16');

/**
 * The key a per-address limit counts a client under. An IPv4 client is its address, also when it
 * arrives as IPv6 carrying it (IPv4-mapped or -compatible, NAT64, 6to4: many IPv4 clients behind a
 * translator must not share one key, nor one IPv4 host get a key per IPv6 form). Any other IPv6
 * client is its /64, the block one host or one customer is handed: counted per address, a single
 * client could take a fresh limit from each of its 2^64 addresses. What is not an address (no socket
 * address known) is counted together.
 */
export function addressKey(ip: string | null | undefined): string {
  if (!ip) return 'unknown';
  // Every request asks (several limits count it), and parsing takes ipaddr.js 3-6 µs: a plain IPv4
  // address is its own key, and the last keys worked out are kept.
  if (isIPv4(ip)) return ip;
  let key = recent.get(ip);
  if (key === undefined) {
    if (recent.size >= RECENT_MAX) recent.clear();
    recent.set(ip, (key = keyOf(ip)));
  }
  return key;
}

const RECENT_MAX = 10_000;
const recent = new Map<string, string>();

function keyOf(ip: string): string {
  const text = ip.replace(/%.*$/, '');
  let addr: ipaddr.IPv4 | ipaddr.IPv6;
  try {
    addr = ipaddr.parse(text);
  } catch {
    // ipaddr.js 1.9 refuses a dotted IPv4 tail after '::' other than ::ffff: (how Node prints an
    // IPv4-compatible peer, ::a.b.c.d): that tail is the client.
    const tail = /:(\d{1,3}(?:\.\d{1,3}){3})$/.exec(text)?.[1];
    return tail && ipaddr.IPv4.isValidFourPartDecimal(tail) ? tail : 'unknown';
  }
  if (addr.kind() === 'ipv4') return addr.toString();
  const v6 = addr as ipaddr.IPv6;
  const p = v6.parts;
  if (v6.isIPv4MappedAddress()) return v6.toIPv4Address().toString();
  if (v6.match(NAT64)) return ipv4(p[6], p[7]);
  if (v6.match(SIX_TO_FOUR)) return ipv4(p[1], p[2]);
  return `${p.slice(0, 4).map((x) => x.toString(16)).join(':')}::/64`;
}

function ipv4(high: number, low: number): string {
  return [high >> 8, high & 0xff, low >> 8, low & 0xff].join('.');
}
