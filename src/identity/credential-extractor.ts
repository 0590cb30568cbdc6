import type { Request } from 'express';
import { Identity } from './identity';

/**
 * One way a request can prove who is calling (a bearer token, a client certificate; next a Vault
 * token header or a console session). A new surface adds an extractor instead of editing the guard.
 */
export interface CredentialExtractor {
  /**
   * The caller's identity when the request carries this kind of credential; undefined when it carries
   * none (the next extractor is asked); throws an `unauthenticated` DomainError when it carries a bad one.
   */
  extract(req: Request): Promise<Identity | undefined>;
}

/** The extractors in the order they are asked. */
export const CREDENTIAL_EXTRACTORS = Symbol('CREDENTIAL_EXTRACTORS');
