/**
 * SPIFFE ID parsing per the SPIFFE-ID specification: scheme "spiffe", a trust domain of lowercase
 * letters, digits, ".", "-" and "_", and a path of segments of letters, digits, ".", "-" and "_" with no
 * empty, "." or ".." segment and no trailing "/". No percent-encoding, query, fragment, userinfo or port;
 * at most 2048 bytes.
 */
export interface SpiffeId {
  trustDomain: string;
  path: string;
  toString(): string;
}

const TRUST_DOMAIN = /^[a-z0-9._-]+$/;
const SEGMENT = /^[A-Za-z0-9._-]+$/;
const PREFIX = 'spiffe://';

export function parseSpiffeId(input: unknown): SpiffeId | undefined {
  if (typeof input !== 'string' || Buffer.byteLength(input, 'utf8') > 2048) return undefined;
  if (!input.startsWith(PREFIX)) return undefined;
  const rest = input.slice(PREFIX.length);
  const slash = rest.indexOf('/');
  const trustDomain = slash === -1 ? rest : rest.slice(0, slash);
  const path = slash === -1 ? '' : rest.slice(slash);
  if (!trustDomain || trustDomain.length > 255 || !TRUST_DOMAIN.test(trustDomain)) return undefined;
  if (path) {
    const segments = path.slice(1).split('/');
    for (const segment of segments) {
      if (!SEGMENT.test(segment) || segment === '.' || segment === '..') return undefined;
    }
  }
  return { trustDomain, path, toString: () => input };
}
