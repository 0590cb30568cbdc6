/** Who is calling, as established by a verified token. */
export interface Identity {
  subject: string;
  /**
   * The configured issuer's name (not the token's iss), or one of the reserved names below. Policy
   * and operator matching compare it along with the subject, and leases record it as owner_issuer, so
   * two issuers that emit the same subject never share rights or leases.
   */
  issuer: string;
  operator: boolean;
  claims: Readonly<Record<string, unknown>>;
}

/** The issuer name of identities from broker-signed tokens (the bootstrap exchange). */
export const BOOTSTRAP_ISSUER_NAME = 'bootstrap';
/** The issuer name of identities from X.509-SVIDs presented over mTLS. */
export const X509_ISSUER_NAME = 'x509';
/** Names a configured issuer may not take: they stand for the broker itself and for mTLS. */
export const RESERVED_ISSUER_NAMES: readonly string[] = [BOOTSTRAP_ISSUER_NAME, X509_ISSUER_NAME];
