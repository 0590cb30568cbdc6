import { CanActivate, ExecutionContext, Injectable, SetMetadata } from '@nestjs/common';
import { Reflector } from '@nestjs/core';
import type { Request } from 'express';
import { AuditDenials } from '../audit/audit-denials';
import { DomainError } from '../common/errors';
import { Identity } from '../identity/identity';
import { IdentityService } from '../identity/identity.service';

const PUBLIC = 'tessera:public';
const OPERATOR = 'tessera:operator';
/** Health, metrics, docs and the bootstrap exchange: no identity needed. */
export const Public = () => SetMetadata(PUBLIC, true);
/** Operator-only routes: any other identity gets 403. */
export const OperatorOnly = () => SetMetadata(OPERATOR, true);

export type AuthedRequest = Request & { identity?: Identity };

/**
 * Authenticates every request but the public ones; denials are audited (and rate limited). New tokens
 * are rate limited per client address before their signature is checked (identity.verify_per_address_rps,
 * in the token verifier, so every route that authenticates gets it); that 429 writes no audit row.
 */
@Injectable()
export class AuthGuard implements CanActivate {
  constructor(
    private readonly reflector: Reflector,
    private readonly identities: IdentityService,
    private readonly denials: AuditDenials,
  ) {}

  async canActivate(context: ExecutionContext): Promise<boolean> {
    const targets = [context.getHandler(), context.getClass()];
    if (this.reflector.getAllAndOverride<boolean>(PUBLIC, targets)) return true;
    const req = context.switchToHttp().getRequest<AuthedRequest>();
    let identity: Identity;
    try {
      identity = await this.identities.authenticate(req);
    } catch (err) {
      if (err instanceof DomainError && err.kind === 'unauthenticated') await this.denied(req, 401, null, err.message);
      throw err;
    }
    req.identity = identity;
    if (this.reflector.getAllAndOverride<boolean>(OPERATOR, targets) && !identity.operator) {
      await this.denied(req, 403, identity, 'operator only');
      throw new DomainError('forbidden', 'operator_only', 'only operators may do this');
    }
    return true;
  }

  private denied(req: Request, status: number, identity: Identity | null, reason: string): Promise<void> {
    return this.denials.denied({ status, action: `${req.method} ${req.path.slice(0, 256)}`, reason, identity, client: req.ip ?? null });
  }
}
