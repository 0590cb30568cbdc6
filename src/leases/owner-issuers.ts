import { DomainError } from '../common/errors';
import { TesseraConfig } from '../config/config.loader';
import { BOOTSTRAP_ISSUER_NAME, X509_ISSUER_NAME } from '../identity/identity';
import { parseSpiffeId } from '../identity/spiffe-id';

/**
 * The owner_issuer values under which a subject named from outside (a workload.completed event) owns
 * leases. A subject means something only with its issuer (DESIGN §6): `issuer`, an issuer's name, is
 * required unless the subject is a SPIFFE ID, whose trust domain picks the issuers that vouch for it
 * (that domain's JWT-SVID issuers, and mTLS).
 */
export function ownerIssuers(config: Pick<TesseraConfig, 'identity'>, subject: string, issuer: string | undefined): string[] {
  const configured = config.identity.issuers;
  if (issuer !== undefined) {
    if (![...configured.map((i) => i.name), BOOTSTRAP_ISSUER_NAME, X509_ISSUER_NAME].includes(issuer)) {
      throw new DomainError('invalid', 'unknown_issuer', `issuer: no issuer named ${JSON.stringify(issuer)} is configured`);
    }
    return [issuer];
  }
  const spiffeId = parseSpiffeId(subject);
  if (!spiffeId) {
    throw new DomainError('invalid', 'issuer_required', 'issuer: required when the subject is not a SPIFFE ID (a subject means something only with its issuer)');
  }
  return [...configured.filter((i) => i.type === 'jwt-svid' && i.trust_domain === spiffeId.trustDomain).map((i) => i.name), X509_ISSUER_NAME];
}
