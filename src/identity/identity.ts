/** Who is calling, as established by a verified token. */
export interface Identity {
  subject: string;
  /** The configured issuer's name (not the token's iss), so leases of two issuers never mix. */
  issuer: string;
  operator: boolean;
  claims: Readonly<Record<string, unknown>>;
}
