import { compileSubjectPattern, patternProblem } from '../../src/policy/subject-pattern';
import { compileSubjectRules } from '../../src/policy/subject-rules';
import { parseSpiffeId } from '../../src/identity/spiffe-id';

describe('subject patterns match whole path segments only', () => {
  const payments = compileSubjectPattern('spiffe://prod.example/ns/payments/*');

  it.each(['spiffe://prod.example/ns/payments/api', 'spiffe://prod.example/ns/payments/a/b/c'])('matches %s', (s) =>
    expect(payments(s)).toBe(true),
  );

  it.each([
    'spiffe://prod.example/ns/payments-evil/x',
    'spiffe://prod.example/ns/payments',
    'spiffe://prod.example/ns/payments/',
    'spiffe://prod.example/ns/payments//x',
    'spiffe://prod.example/ns/paymentsx/api',
    'spiffe://other.example/ns/payments/api',
    'spiffe://prod.example.evil/ns/payments/api',
  ])('does not match %s', (s) => expect(payments(s)).toBe(false));

  it('a middle "*" matches exactly one segment', () => {
    const m = compileSubjectPattern('spiffe://d/ns/*/sa/api');
    expect(m('spiffe://d/ns/a/sa/api')).toBe(true);
    expect(m('spiffe://d/ns/a/b/sa/api')).toBe(false);
    expect(m('spiffe://d/ns//sa/api')).toBe(false);
  });

  it('exact patterns match exactly', () => {
    const m = compileSubjectPattern('spiffe://d/ns/a');
    expect(m('spiffe://d/ns/a')).toBe(true);
    expect(m('spiffe://d/ns/a/b')).toBe(false);
  });

  it('"*" inside a segment is a config error', () => {
    expect(patternProblem('spiffe://d/ns/pay*')).toMatch(/whole path segment/);
    expect(patternProblem('spiffe://d/ns/*')).toBeUndefined();
  });
});

describe('parseSpiffeId', () => {
  it.each(['spiffe://example.org/ns/app', 'spiffe://example.org', 'spiffe://a-b_c.d/x.y/Z_9'])('accepts %s', (id) =>
    expect(parseSpiffeId(id)).toBeDefined(),
  );
  it.each([
    'spiffe://Example.org/ns',
    'spiffe://example.org/',
    'spiffe://example.org//x',
    'spiffe://example.org/a/../b',
    'spiffe://example.org/./b',
    'spiffe://example.org/a%2Fb',
    'spiffe://example.org:8443/a',
    'spiffe://user@example.org/a',
    'spiffe://example.org/a?x=1',
    'spiffe://example.org/a#f',
    'SPIFFE://example.org/a',
    'https://example.org/a',
    'spiffe:///a',
    `spiffe://example.org/${'a'.repeat(2040)}`,
    'spiffe://exаmple.org/a', // Cyrillic "а"
  ])('refuses %s', (id) => expect(parseSpiffeId(id)).toBeUndefined());
});

describe('subject rules compare issuer and subject', () => {
  const rules = compileSubjectRules([
    'spiffe://prod.example/ns/payments/*',
    { issuer: 'cluster-a', subject: 'system:serviceaccount:payments:api' },
    { issuer: 'bootstrap', subject: 'bootstrap/billing' },
  ]);

  it('a qualified rule matches its own issuer\'s subject only', () => {
    expect(rules({ issuer: 'cluster-a', subject: 'system:serviceaccount:payments:api' })).toBe(true);
    expect(rules({ issuer: 'cluster-b', subject: 'system:serviceaccount:payments:api' })).toBe(false);
    expect(rules({ issuer: 'bootstrap', subject: 'system:serviceaccount:payments:api' })).toBe(false);
  });

  it('a plain SPIFFE pattern matches JWT-SVIDs and X.509-SVIDs, never a broker-signed identity', () => {
    expect(rules({ issuer: 'prod', subject: 'spiffe://prod.example/ns/payments/api' })).toBe(true);
    expect(rules({ issuer: 'x509', subject: 'spiffe://prod.example/ns/payments/api' })).toBe(true);
    expect(rules({ issuer: 'bootstrap', subject: 'spiffe://prod.example/ns/payments/api' })).toBe(false);
  });

  it('a bootstrap identity is matched only by the rule naming issuer bootstrap', () => {
    expect(rules({ issuer: 'bootstrap', subject: 'bootstrap/billing' })).toBe(true);
    expect(rules({ issuer: 'cluster-a', subject: 'bootstrap/billing' })).toBe(false);
  });
});
