/**
 * XML rendering for the AWS Query protocol as IAM and STS speak it; used by ./iam-server.ts.
 *
 * A plain JS value renders as follows: an object becomes child elements (undefined/null fields are
 * left out), an array becomes `<member>` elements, a Date becomes an ISO-8601 timestamp without
 * milliseconds (as IAM sends them), and everything else becomes escaped text.
 */

export const IAM_NS = 'https://iam.amazonaws.com/doc/2010-05-08/';
export const STS_NS = 'https://sts.amazonaws.com/doc/2011-06-15/';

export type XmlValue = string | number | boolean | Date | null | undefined | XmlValue[] | { [tag: string]: XmlValue };

const ENTITIES: Record<string, string> = {
  '&': '&amp;',
  '<': '&lt;',
  '>': '&gt;',
  '"': '&quot;',
  "'": '&apos;',
  // A raw CR would be normalised to LF by any XML parser (the SDK's included), so send it as a reference.
  '\r': '&#xD;',
};

export function escapeXml(text: string): string {
  return text.replace(/[&<>"'\r]/g, (c) => ENTITIES[c]);
}

export function isoDate(d: Date): string {
  return d.toISOString().replace(/\.\d{3}Z$/, 'Z');
}

export function toXml(value: XmlValue): string {
  if (value === undefined || value === null) return '';
  if (Array.isArray(value)) return value.map((v) => `<member>${toXml(v)}</member>`).join('');
  if (value instanceof Date) return isoDate(value);
  if (typeof value === 'object') {
    return Object.entries(value)
      .filter(([, v]) => v !== undefined && v !== null)
      .map(([tag, v]) => `<${tag}>${toXml(v)}</${tag}>`)
      .join('');
  }
  return escapeXml(String(value));
}

/** `<{Action}Response>` with a `<{Action}Result>` unless `result` is undefined (e.g. DeleteUser). */
export function successXml(action: string, ns: string, result: XmlValue, requestId: string): string {
  const body = result === undefined ? '' : `<${action}Result>${toXml(result)}</${action}Result>`;
  return (
    `<${action}Response xmlns="${ns}">${body}` +
    `<ResponseMetadata><RequestId>${escapeXml(requestId)}</RequestId></ResponseMetadata></${action}Response>`
  );
}

export function errorXml(ns: string, type: 'Sender' | 'Receiver', code: string, message: string, requestId: string): string {
  return (
    `<ErrorResponse xmlns="${ns}"><Error><Type>${type}</Type><Code>${escapeXml(code)}</Code>` +
    `<Message>${escapeXml(message)}</Message></Error><RequestId>${escapeXml(requestId)}</RequestId></ErrorResponse>`
  );
}
