import { Inject, Injectable } from '@nestjs/common';
import type { Request } from 'express';
import { createHmac, timingSafeEqual } from 'node:crypto';
import { z } from 'zod';
import { AuditLog } from '../audit/audit.log';
import { DomainError } from '../common/errors';
import { CONFIG } from '../config/config.module';
import { NAME } from '../config/config.schema';
import { TesseraConfig } from '../config/config.loader';
import { DenialLimiter } from '../http/denial-limiter';
import { runIdInput } from '../http/validation';
import { IdentityService } from '../identity/identity.service';
import { LeaseService } from '../leases/lease.service';
import { StaticService } from './static.service';

const name = z.string().regex(NAME, 'not a valid name');
export const eventBody = z.union([
  z.object({ type: z.literal('secret.exposed'), static: name }).strict(),
  z.object({ type: z.literal('secret.exposed'), connection: name }).strict(),
  z
    .object({
      type: z.literal('workload.completed'),
      subject: z.string().min(1).max(2048).regex(/^[^\u0000-\u001f\u007f]+$/, 'must not contain control characters'),
      run_id: runIdInput.optional(),
    })
    .strict(),
]);
export type EventBody = z.infer<typeof eventBody>;

const SIGNATURE = /^sha256=([0-9a-f]{64})$/;

/**
 * Signed webhooks (and operators) reporting that a secret leaked or a workload finished. The signature
 * is an HMAC-SHA256 over the raw body, keyed with events.hmac_key, compared in constant time.
 */
@Injectable()
export class EventsService {
  constructor(
    @Inject(CONFIG) private readonly config: TesseraConfig,
    private readonly identities: IdentityService,
    private readonly statics: StaticService,
    private readonly leases: LeaseService,
    private readonly audit: AuditLog,
    private readonly denials: DenialLimiter,
  ) {}

  /** Who sent the event: 'webhook' for a valid signature, else an operator's identity. */
  async authenticate(req: Request & { rawBody?: Buffer }): Promise<string> {
    const header = req.headers['x-tessera-signature'];
    if (header === undefined) {
      const identity = await this.identities.authenticate(req).catch(async (err: unknown) => {
        await this.deny(req, null, 401, 'no valid signature or token');
        throw err;
      });
      if (identity.operator) return identity.subject;
      await this.deny(req, identity.subject, 403, 'operator or signature required');
      throw new DomainError('forbidden', 'operator_only', 'events need a valid X-Tessera-Signature or an operator token');
    }
    const match = typeof header === 'string' ? SIGNATURE.exec(header) : null;
    const key = this.config.events?.hmac_key;
    const expected = key && req.rawBody ? createHmac('sha256', Buffer.from(key, 'utf8')).update(req.rawBody).digest() : undefined;
    if (!match || !expected || !timingSafeEqual(Buffer.from(match[1], 'hex'), expected)) {
      await this.deny(req, null, 401, 'bad signature');
      throw new DomainError('unauthenticated', 'invalid_signature', 'X-Tessera-Signature does not match the body');
    }
    return 'webhook';
  }

  async handle(actor: string, event: EventBody): Promise<{ rotation_ids: string[] } | { revoked: number }> {
    await this.audit.append({ type: 'event.received', actor, detail: { ...event } });
    if (event.type === 'workload.completed') return this.leases.completeWorkload(event.subject, event.run_id, actor);
    if ('connection' in event) return this.statics.rotateConnection(actor, event.connection, 'event', 'secret.exposed');
    return { rotation_ids: [(await this.statics.rotateFromEvent(actor, event.static)).rotation_id] };
  }

  private async deny(req: Request, actor: string | null, status: number, reason: string): Promise<void> {
    this.denials.check(req);
    await this.audit.append({ type: 'request.denied', actor, detail: { status, action: 'events', reason } });
  }
}
