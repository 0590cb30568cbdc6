import { Injectable } from '@nestjs/common';
import { DomainError } from '../common/errors';
import { TokenBucket } from './token-bucket';

/** Refused requests audited per client address per second; beyond it the client gets 429. */
const DENIALS_PER_SECOND = 20;

/**
 * Bounds the audit writes that refused requests cause (every append takes the audit chain's lock),
 * for the auth guard and for the public routes that authenticate by themselves (events, bootstrap).
 */
@Injectable()
export class DenialLimiter {
  private readonly buckets = new TokenBucket(DENIALS_PER_SECOND, DENIALS_PER_SECOND * 2);

  /** Throws 429 when this address has been refused too often to audit every refusal. */
  check(req: { ip?: string }): void {
    if (!this.buckets.take(req.ip ?? 'unknown')) {
      throw new DomainError('rate_limited', 'too_many_denied_requests', 'too many refused requests from this address; slow down');
    }
  }
}
