import type { RawConfig } from '../config/config.schema';
import { BOOTSTRAP_ISSUER_NAME, X509_ISSUER_NAME } from '../identity/identity';
import { compileSubjectPattern } from './subject-pattern';

/**
 * A subject rule of `policies[].subjects` or `operators` (DESIGN §6): a SPIFFE pattern as a plain
 * string, or a pattern qualified by the name of the issuer it belongs to.
 */
export type SubjectRule = string | { issuer: string; subject: string };

/** Who is asking, as far as matching cares: the issuer's configured (or reserved) name and the subject. */
export interface Principal {
  issuer: string;
  subject: string;
}

export type PrincipalMatcher = (who: Principal) => boolean;

/**
 * Subjects are only meaningful with their issuer. A qualified rule matches its issuer's identities
 * only. A plain SPIFFE pattern matches the SPIFFE IDs a JWT-SVID issuer of that trust domain or an
 * X.509-SVID vouches for (the trust domain picked the keys or the CA), never a broker-signed identity:
 * those are matched only by rules naming `issuer: bootstrap`.
 */
export function compileSubjectRules(rules: readonly SubjectRule[]): PrincipalMatcher {
  const matchers: PrincipalMatcher[] = rules.map((rule) => {
    if (typeof rule === 'string') {
      const matches = compileSubjectPattern(rule);
      return (who) => who.issuer !== BOOTSTRAP_ISSUER_NAME && matches(who.subject);
    }
    const matches = compileSubjectPattern(rule.subject);
    return (who) => who.issuer === rule.issuer && matches(who.subject);
  });
  return (who) => matchers.some((m) => m(who));
}

const SPIFFE = 'spiffe://';

/**
 * Checks what the schema alone cannot: that every qualified rule names an issuer that exists and a
 * subject that issuer could ever vouch for. Each problem names its key.
 */
export function subjectRuleProblems(config: Pick<RawConfig, 'identity' | 'policies' | 'operators' | 'server'>): string[] {
  const issuers = new Map(config.identity.issuers.map((i) => [i.name, i]));
  const prefix = config.identity.bootstrap.subject_prefix;
  const known = [...issuers.keys(), BOOTSTRAP_ISSUER_NAME, ...(config.server.tls ? [X509_ISSUER_NAME] : [])];
  const problems: string[] = [];

  const check = (rule: SubjectRule, key: string, operators: boolean) => {
    if (typeof rule === 'string') return;
    const { issuer, subject } = rule;
    const spiffe = subject.startsWith(SPIFFE);
    if (issuer === BOOTSTRAP_ISSUER_NAME) {
      if (operators) problems.push(`${key}.issuer: broker-signed (bootstrap) identities are never operators`);
      else if (!subject.startsWith(prefix)) problems.push(`${key}.subject: bootstrap subjects start with identity.bootstrap.subject_prefix "${prefix}"`);
      return;
    }
    if (issuer === X509_ISSUER_NAME) {
      if (!config.server.tls) problems.push(`${key}.issuer: "x509" identities need server.tls`);
      else if (!spiffe) problems.push(`${key}.subject: an X.509-SVID's subject is a SPIFFE ID`);
      return;
    }
    const configured = issuers.get(issuer);
    if (!configured) {
      problems.push(`${key}.issuer: unknown issuer "${issuer}" (known: ${known.join(', ')})`);
    } else if (configured.type === 'jwt-svid' && !subject.startsWith(`${SPIFFE}${configured.trust_domain}/`) && subject !== `${SPIFFE}${configured.trust_domain}`) {
      problems.push(`${key}.subject: issuer "${issuer}" only vouches for SPIFFE IDs of ${configured.trust_domain}`);
    } else if (configured.type === 'oidc' && spiffe) {
      problems.push(`${key}.subject: an OIDC issuer never vouches for a SPIFFE ID`);
    }
  };

  config.policies.forEach((policy, i) => policy.subjects.forEach((rule, j) => check(rule, `policies.${i}.subjects.${j}`, false)));
  config.operators.forEach((rule, j) => check(rule, `operators.${j}`, true));
  return problems;
}
