/** The AWS Query protocol's request side, shared by the IAM and STS halves of the test server. */
import { randomInt } from 'node:crypto';

const NAME_RE = /^[\w+=,.@-]+$/;

export class IamError extends Error {
  constructor(
    readonly code: string,
    message: string,
  ) {
    super(message);
  }
}

export const randomString = (chars: string, n: number): string =>
  Array.from({ length: n }, () => chars[randomInt(chars.length)]).join('');

/** Request parameters of one Query-protocol call. */
export class Params {
  constructor(private readonly q: URLSearchParams) {}
  opt(name: string): string | undefined {
    return this.q.get(name) ?? undefined;
  }
  req(name: string): string {
    const v = this.q.get(name);
    if (v === null) throw validation(`Value null at '${camel(name)}' failed to satisfy constraint: Member must not be null`);
    return v;
  }
  /** `Prefix.member.N.Field` entries, in N order. */
  members(prefix: string, fields: string[]): Record<string, string | undefined>[] {
    const out: Record<string, string | undefined>[] = [];
    for (let n = 1; fields.some((f) => this.q.has(`${prefix}.member.${n}.${f}`)); n++) {
      out.push(Object.fromEntries(fields.map((f) => [f, this.opt(`${prefix}.member.${n}.${f}`)])));
    }
    return out;
  }
}

export const camel = (s: string): string => s[0].toLowerCase() + s.slice(1);
export const validation = (detail: string): IamError => new IamError('ValidationError', `1 validation error detected: ${detail}`);

export function checkName(value: string, field: string, max: number): string {
  if (value.length < 1 || value.length > max) {
    throw validation(`Value '${value}' at '${field}' failed to satisfy constraint: Member must have length between 1 and ${max}`);
  }
  if (!NAME_RE.test(value)) {
    throw validation(`Value '${value}' at '${field}' failed to satisfy constraint: Member must satisfy regular expression pattern: [\\w+=,.@-]+`);
  }
  return value;
}


export function checkPath(p: Params): string {
  const path = p.opt('Path') ?? '/';
  if (!/^\/([\x21-\x7e]*\/)?$/.test(path) || path.length > 512) {
    throw validation(`Value '${path}' at 'path' failed to satisfy constraint: Member must satisfy regular expression pattern: (\\u002F)|(\\u002F[\\u0021-\\u007E]+\\u002F)`);
  }
  return path;
}
