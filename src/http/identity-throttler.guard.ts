import { Injectable } from '@nestjs/common';
import { ThrottlerGuard } from '@nestjs/throttler';
import type { AuthedRequest } from './auth.guard';

/**
 * limits.per_identity_rps, per identity (issuer and subject) once authenticated, per client address
 * for public routes. Runs after the auth guard, so the identity is known. Counts are per process.
 */
@Injectable()
export class IdentityThrottlerGuard extends ThrottlerGuard {
  protected override async getTracker(req: Record<string, any>): Promise<string> {
    const identity = (req as AuthedRequest).identity;
    return identity ? `id:${identity.issuer}:${identity.subject}` : `ip:${req.ip}`;
  }
}
