/**
 * HTML built from tagged templates: every interpolated value is escaped unless it is itself `Html`
 * (the output of another template). There is no other way to put text into a page, so a lease's
 * owner, an audit event's detail or a target's error text can never become markup.
 */
export class Html {
  constructor(readonly text: string) {}

  toString(): string {
    return this.text;
  }
}

export type HtmlValue = Html | string | number | boolean | null | undefined | readonly HtmlValue[];

const ESCAPES: Record<string, string> = { '&': '&amp;', '<': '&lt;', '>': '&gt;', '"': '&quot;', "'": '&#39;' };

export function escapeHtml(text: string): string {
  return text.replace(/[&<>"']/g, (c) => ESCAPES[c]);
}

function render(value: HtmlValue): string {
  if (value === null || value === undefined || value === false || value === true) return '';
  if (value instanceof Html) return value.text;
  if (Array.isArray(value)) return value.map(render).join('');
  return escapeHtml(String(value));
}

export function html(strings: TemplateStringsArray, ...values: HtmlValue[]): Html {
  let out = strings[0];
  values.forEach((value, i) => (out += render(value) + strings[i + 1]));
  return new Html(out);
}

/**
 * A console URL: a fixed path, path segments encoded, and the query's values encoded. Only paths
 * under /ui/ are built, so an href can never carry another scheme.
 */
export function uiUrl(path: string, query: Record<string, string | number | undefined | readonly string[]> = {}): string {
  if (!path.startsWith('/ui/')) throw new Error(`not a console path: ${path}`);
  const params = new URLSearchParams();
  for (const [key, value] of Object.entries(query)) {
    if (value === undefined || value === '') continue;
    for (const v of Array.isArray(value) ? value : [value]) params.append(key, String(v));
  }
  const qs = params.toString();
  return qs ? `${path}?${qs}` : path;
}

/** A path segment: a lease id, a secret's name. */
export const segment = (value: string) => encodeURIComponent(value);
