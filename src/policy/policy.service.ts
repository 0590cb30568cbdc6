import { Inject, Injectable } from '@nestjs/common';
import { CONFIG } from '../config/config.module';
import { TesseraConfig } from '../config/config.loader';
import { Identity } from '../identity/identity';
import { PrincipalMatcher, compileSubjectRules } from './subject-rules';

interface CompiledRule {
  policy: string;
  /** Issuer and subject: a rule written for one issuer never matches another's identical subject. */
  matches: PrincipalMatcher;
  claims: ReadonlyArray<[string, string | number | boolean]>;
  creds: ReadonlySet<string>;
  statics: ReadonlySet<string>;
  maxTtl?: number;
}

export type Decision =
  | { allowed: true; policy: string; /** the largest max_ttl among the rules that allow it; undefined = no cap */ maxTtl?: number }
  | { allowed: false };

/** Deny-by-default decisions, made at request time from the config's policies. */
@Injectable()
export class PolicyService {
  private readonly rules: CompiledRule[];

  constructor(@Inject(CONFIG) config: TesseraConfig) {
    this.rules = config.policies.flatMap((policy) => {
      const matches = compileSubjectRules(policy.subjects);
      const claims = Object.entries(policy.claims ?? {});
      return policy.allow.map((rule) => ({
        policy: policy.name,
        matches,
        claims,
        creds: new Set(rule.creds ?? []),
        statics: new Set(rule.static ?? []),
        maxTtl: rule.max_ttl,
      }));
    });
  }

  canIssue(identity: Identity, role: string): Decision {
    const allowing = this.applicable(identity).filter((r) => r.creds.has(role));
    if (!allowing.length) return { allowed: false };
    const capped = allowing.every((r) => r.maxTtl !== undefined);
    return {
      allowed: true,
      policy: allowing[0].policy,
      maxTtl: capped ? Math.max(...allowing.map((r) => r.maxTtl!)) : undefined,
    };
  }

  canReadStatic(identity: Identity, name: string): Decision {
    const allowing = this.applicable(identity).filter((r) => r.statics.has(name));
    return allowing.length ? { allowed: true, policy: allowing[0].policy } : { allowed: false };
  }

  private applicable(identity: Identity): CompiledRule[] {
    return this.rules.filter(
      (r) => r.matches(identity) && r.claims.every(([k, v]) => Object.hasOwn(identity.claims, k) && identity.claims[k] === v),
    );
  }
}
