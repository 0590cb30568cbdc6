import 'reflect-metadata';
import { BasicConstraintsExtension, KeyUsageFlags, KeyUsagesExtension, SubjectAlternativeNameExtension, X509Certificate } from '@peculiar/x509';
import { X509Certificate as NodeX509Certificate } from 'node:crypto';
import { readFileSync } from 'node:fs';
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

const MAX_CHAIN_DEPTH = 8;
const PEM_CERTIFICATE = /-----BEGIN CERTIFICATE-----[\s\S]+?-----END CERTIFICATE-----/g;

/**
 * The client CA bundles of server.tls.client_ca, one per trust domain. The TLS handshake trusts their
 * union; this decides whether a chain it accepted ends in the bundle of the SVID's own trust domain,
 * so a CA of a.example cannot vouch for spiffe://b.example/... .
 */
export class TrustDomainBundles {
  private readonly byDomain = new Map<string, NodeX509Certificate[]>();

  constructor(files: Readonly<Record<string, string>>, read: (path: string) => string = (path) => readFileSync(path, 'utf8')) {
    for (const [domain, file] of Object.entries(files)) {
      const pems = read(file).match(PEM_CERTIFICATE) ?? [];
      if (!pems.length) throw new Error(`server.tls.client_ca.${domain}: ${file} holds no PEM certificate`);
      this.byDomain.set(domain, pems.map((pem) => new NodeX509Certificate(pem)));
    }
  }

  get trustDomains(): string[] {
    return [...this.byDomain.keys()];
  }

  /**
   * `chain` is the leaf first, then the certificates above it. Walks up, checking every link's
   * signature and validity, until a certificate is issued by (or is) a CA of the trust domain's bundle.
   */
  chainEndsIn(trustDomain: string, chain: readonly NodeX509Certificate[], now = new Date()): boolean {
    const anchors = this.byDomain.get(trustDomain);
    if (!anchors || !chain.length) return false;
    const issuedBy = (cert: NodeX509Certificate, ca: NodeX509Certificate) => ca.ca && cert.checkIssued(ca) && cert.verify(ca.publicKey);
    const valid = (cert: NodeX509Certificate) => new Date(cert.validFrom) <= now && now <= new Date(cert.validTo);
    for (let i = 0; i < Math.min(chain.length, MAX_CHAIN_DEPTH); i++) {
      const cert = chain[i];
      if (i > 0 && anchors.some((a) => a.raw.equals(cert.raw))) return true;
      if (anchors.some((a) => valid(a) && issuedBy(cert, a))) return true;
      const next = chain[i + 1];
      if (!next || next.raw.equals(cert.raw) || !valid(next) || !issuedBy(cert, next)) return false;
    }
    return false;
  }
}
