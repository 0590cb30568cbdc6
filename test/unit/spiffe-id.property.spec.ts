import fc from 'fast-check';
import { parseSpiffeId } from '../../src/identity/spiffe-id';

/** Property tests of the SPIFFE ID parser against the grammar of the SPIFFE-ID spec. */
const tdChar = fc.constantFrom(...'abcdefghijklmnopqrstuvwxyz0123456789.-_'.split(''));
const segChar = fc.constantFrom(...'abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789.-_'.split(''));
const trustDomain = fc.string({ unit: tdChar, minLength: 1, maxLength: 40 });
const segment = fc.string({ unit: segChar, minLength: 1, maxLength: 20 }).filter((s) => s !== '.' && s !== '..');
const path = fc.array(segment, { maxLength: 6 }).map((segs) => segs.map((s) => `/${s}`).join(''));
const validId = fc.tuple(trustDomain, path).map(([td, p]) => `spiffe://${td}${p}`);

describe('parseSpiffeId (properties)', () => {
  it('accepts every ID the grammar produces and splits it into trust domain and path', () => {
    fc.assert(
      fc.property(trustDomain, path, (td, p) => {
        const id = parseSpiffeId(`spiffe://${td}${p}`);
        return id !== undefined && id.trustDomain === td && id.path === p && id.toString() === `spiffe://${td}${p}`;
      }),
    );
  });

  it('refuses any ID with a character outside the grammar', () => {
    const bad = fc.constantFrom('%', '?', '#', '@', ':', ' ', '\\', 'é', 'а', '\u0000', '+', '*', '~');
    fc.assert(
      fc.property(validId, bad, fc.nat(), (id, ch, at) => {
        const pos = 'spiffe://'.length + (at % (id.length - 'spiffe://'.length + 1));
        return parseSpiffeId(id.slice(0, pos) + ch + id.slice(pos)) === undefined;
      }),
    );
  });

  it('refuses uppercase in the trust domain', () => {
    fc.assert(
      fc.property(trustDomain.filter((td) => /[a-z]/.test(td)), path, (td, p) => parseSpiffeId(`spiffe://${td.toUpperCase()}${p}`) === undefined),
    );
  });

  it('refuses empty, "." and ".." segments and a trailing slash', () => {
    fc.assert(
      fc.property(validId, fc.constantFrom('//x', '/./x', '/../x', '/', '/.', '/..'), (id, tail) => parseSpiffeId(id + tail) === undefined),
    );
  });

  it('refuses other schemes and anything over 2048 bytes', () => {
    fc.assert(fc.property(validId, fc.constantFrom('https://', 'SPIFFE://', 'spiffe:/', 'spiffe:'), (id, scheme) => parseSpiffeId(id.replace('spiffe://', scheme)) === undefined));
    fc.assert(
      fc.property(trustDomain, (td) => {
        const long = `spiffe://${td}/${'a'.repeat(2048)}`;
        return parseSpiffeId(long) === undefined;
      }),
    );
  });

  it('never throws, whatever the input', () => {
    fc.assert(fc.property(fc.anything(), (input) => parseSpiffeId(input) === undefined || typeof input === 'string'));
  });
});
