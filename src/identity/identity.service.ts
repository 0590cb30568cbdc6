import { Inject, Injectable } from '@nestjs/common';
import type { Request } from 'express';
import { DomainError } from '../common/errors';
import { CREDENTIAL_EXTRACTORS, CredentialExtractor } from './credential-extractor';
import { Identity } from './identity';

/**
 * Establishes who is calling by asking each credential extractor in turn (a bearer token if one is
 * sent, else an X.509-SVID over mTLS): the first that finds a credential decides.
 */
@Injectable()
export class IdentityService {
  constructor(@Inject(CREDENTIAL_EXTRACTORS) private readonly extractors: readonly CredentialExtractor[]) {}

  async authenticate(req: Request): Promise<Identity> {
    for (const extractor of this.extractors) {
      const identity = await extractor.extract(req);
      if (identity) return identity;
    }
    throw new DomainError('unauthenticated', 'missing_token', 'Authorization: Bearer <token> required');
  }
}
