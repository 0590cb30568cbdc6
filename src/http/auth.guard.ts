import { CanActivate, ExecutionContext, Injectable, SetMetadata } from '@nestjs/common';
import { Reflector } from '@nestjs/core';
import type { Request } from 'express';
import { AuditLog } from '../audit/audit.log';
import { DomainError } from '../common/errors';
import { Identity } from '../identity/identity';
import { TokenVerifier } from '../identity/token-verifier';
import { Metrics } from '../metrics/metrics';

const PUBLIC = 'tessera:public';
const OPERATOR = 'tessera:operator';
/** Health, metrics and docs: no token. */
export const Public = () => SetMetadata(PUBLIC, true);
/** Operator-only routes: any other identity gets 403. */
export const OperatorOnly = () => SetMetadata(OPERATOR, true);

export type AuthedRequest = Request & { identity?: Identity };

/** Authenticates every request but the public ones; denials are audited. */
@Injectable()
export class AuthGuard implements CanActivate {
  constructor(
    private readonly reflector: Reflector,
    private readonly verifier: TokenVerifier,
    private readonly audit: AuditLog,
    private readonly metrics: Metrics,
  ) {}

  async canActivate(context: ExecutionContext): Promise<boolean> {
    const targets = [context.getHandler(), context.getClass()];
    if (this.reflector.getAllAndOverride<boolean>(PUBLIC, targets)) return true;
    const req = context.switchToHttp().getRequest<AuthedRequest>();
    const header = req.headers.authorization;
    const match = typeof header === 'string' ? /^Bearer ([^\s]+)$/i.exec(header) : null;
    let identity: Identity;
    try {
      if (!match) throw new DomainError('unauthenticated', 'missing_token', 'Authorization: Bearer <token> required');
      identity = await this.verifier.verify(match[1]);
    } catch (err) {
      if (err instanceof DomainError) {
        await this.denied(req, 401, null, err.message);
        throw err;
      }
      throw err;
    }
    req.identity = identity;
    if (this.reflector.getAllAndOverride<boolean>(OPERATOR, targets) && !identity.operator) {
      await this.denied(req, 403, identity.subject, 'operator only');
      throw new DomainError('forbidden', 'operator_only', 'only operators may do this');
    }
    return true;
  }

  private async denied(req: Request, status: number, actor: string | null, reason: string): Promise<void> {
    this.metrics.deniedRequests.inc({ status: String(status) });
    await this.audit.append({
      type: 'request.denied',
      actor,
      detail: { status, reason, method: req.method, path: req.path.slice(0, 256) },
    });
  }
}
