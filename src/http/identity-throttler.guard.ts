import { ExecutionContext, Injectable } from '@nestjs/common';
import { ThrottlerGuard } from '@nestjs/throttler';
import type { AuthedRequest } from './auth.guard';
import { addressKey } from '../common/client-address';

/**
 * limits.per_identity_rps, per identity (issuer and subject) once authenticated, per client address
 * for public routes, per route. Runs after the auth guard, so the identity is known. Counts are per
 * process (see WindowThrottlerStorage).
 */
@Injectable()
export class IdentityThrottlerGuard extends ThrottlerGuard {
  protected override async getTracker(req: Record<string, any>): Promise<string> {
    const identity = (req as AuthedRequest).identity;
    return identity ? `id:${identity.issuer}:${identity.subject}` : `ip:${addressKey(req.ip)}`;
  }

  /** The library's key, unhashed: the storage is an in-process map, and hashing every request's key buys nothing. */
  protected override generateKey(context: ExecutionContext, tracker: string, name: string): string {
    return `${context.getClass().name}-${context.getHandler().name}-${name}-${tracker}`;
  }
}
