import 'reflect-metadata';
import { BasicConstraintsExtension, KeyUsageFlags, KeyUsagesExtension, SubjectAlternativeNameExtension, X509Certificate } from '@peculiar/x509';
import { parseSpiffeId } from './spiffe-id';

export type SvidCheck = { ok: true; spiffeId: string; trustDomain: string } | { ok: false; reason: string };

/**
 * Checks an X.509-SVID leaf after the TLS stack has validated its chain (SPIFFE X509-SVID spec §4, §5):
 * exactly one URI SAN, which is a SPIFFE ID; not a CA; key usage with digitalSignature and without
 * keyCertSign or cRLSign.
 */
export function checkX509Svid(der: Buffer, trustDomains?: readonly string[]): SvidCheck {
  let cert: X509Certificate;
  try {
    cert = new X509Certificate(der);
  } catch {
    return { ok: false, reason: 'unreadable certificate' };
  }
  const san = cert.getExtension(SubjectAlternativeNameExtension);
  const uris = san?.names.items.filter((n) => n.type === 'url').map((n) => n.value) ?? [];
  if (uris.length !== 1) return { ok: false, reason: `an X.509-SVID has exactly one URI SAN (found ${uris.length})` };
  const id = parseSpiffeId(uris[0]);
  if (!id) return { ok: false, reason: 'the URI SAN is not a SPIFFE ID' };
  if (cert.getExtension(BasicConstraintsExtension)?.ca) return { ok: false, reason: 'a CA certificate is not an X.509-SVID' };
  const usage = cert.getExtension(KeyUsagesExtension);
  if (!usage || !(usage.usages & KeyUsageFlags.digitalSignature)) return { ok: false, reason: 'key usage must include digitalSignature' };
  if (usage.usages & (KeyUsageFlags.keyCertSign | KeyUsageFlags.cRLSign)) return { ok: false, reason: 'a leaf SVID must not sign certificates or CRLs' };
  if (trustDomains && !trustDomains.includes(id.trustDomain)) return { ok: false, reason: `trust domain ${id.trustDomain} is not accepted` };
  return { ok: true, spiffeId: uris[0], trustDomain: id.trustDomain };
}
