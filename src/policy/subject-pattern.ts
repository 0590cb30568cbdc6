/**
 * Subject patterns for policies and operators. A pattern is an exact subject or uses "*" as a whole
 * "/"-separated segment: a "*" in the middle matches exactly one segment, a trailing "*" matches one or
 * more segments. Matching never crosses a segment boundary, so "spiffe://d/ns/payments/*" matches
 * "spiffe://d/ns/payments/api" and "spiffe://d/ns/payments/a/b" but never "spiffe://d/ns/payments-evil/x".
 */
export type SubjectMatcher = (subject: string) => boolean;

export function patternProblem(pattern: string): string | undefined {
  const bad = pattern.split('/').find((segment) => segment.includes('*') && segment !== '*');
  return bad === undefined ? undefined : `"*" must be a whole path segment (found "${bad}")`;
}

export function compileSubjectPattern(pattern: string): SubjectMatcher {
  if (!pattern.includes('*')) return (subject) => subject === pattern;
  const parts = pattern.split('/');
  return (subject) => {
    const segments = subject.split('/');
    for (let i = 0; i < parts.length; i++) {
      const last = i === parts.length - 1;
      if (parts[i] === '*') {
        if (i >= segments.length || segments[i] === '') return false;
        if (last) return segments.slice(i).every((s) => s !== '');
        continue;
      }
      if (segments[i] !== parts[i]) return false;
    }
    return segments.length === parts.length;
  };
}

export function compileSubjectPatterns(patterns: readonly string[]): SubjectMatcher {
  const matchers = patterns.map(compileSubjectPattern);
  return (subject) => matchers.some((m) => m(subject));
}
