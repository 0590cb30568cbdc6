/**
 * Operator-written statement templates. Only broker-generated values are substituted, and each is
 * already quoted for the target (an identifier or a literal), so a template cannot be tricked into
 * changing the statement's structure. Unknown placeholders are an error at boot, not at issue time.
 */
export type Quoted = Record<string, string>;

const PLACEHOLDER = /\{\{\s*([a-z_]+)\s*\}\}/g;

export function placeholdersOf(template: string): string[] {
  return [...template.matchAll(PLACEHOLDER)].map((m) => m[1]);
}

export function checkTemplate(template: string, allowed: readonly string[]): string | undefined {
  const unknown = placeholdersOf(template).filter((p) => !allowed.includes(p));
  return unknown.length ? `unknown placeholder {{${unknown[0]}}} (allowed: ${allowed.join(', ')})` : undefined;
}

export function renderTemplate(template: string, values: Quoted): string {
  return template.replace(PLACEHOLDER, (_, key: string) => {
    const value = values[key];
    if (value === undefined) throw new Error(`template placeholder {{${key}}} has no value`);
    return value;
  });
}
