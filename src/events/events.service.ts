import { Inject, Injectable } from '@nestjs/common';
import type { Request } from 'express';
import { createHmac, timingSafeEqual } from 'node:crypto';
import { z } from 'zod';
import { AuditLog } from '../audit/audit.log';
import { DomainError } from '../common/errors';
import { CONFIG } from '../config/config.module';
import { NAME } from '../config/config.schema';
import { TesseraConfig } from '../config/config.loader';
import { AuditDenials } from '../audit/audit-denials';
import { Identity } from '../identity/identity';
import { runIdInput, subjectInput } from '../http/validation';
import { IdentityService } from '../identity/identity.service';
import { LeaseService } from '../leases/lease.service';
import { EventSignatureRepository } from './event-signature.repository';
import { StaticService } from '../statics/static.service';

const name = z.string().regex(NAME, 'not a valid name');
export const eventBody = z.union([
  z.object({ type: z.literal('secret.exposed'), static: name }).strict(),
  z.object({ type: z.literal('secret.exposed'), connection: name }).strict(),
  z
    .object({
      type: z.literal('workload.completed'),
      subject: subjectInput,
      /** The name of the issuer that vouches for the subject: required unless the subject is a SPIFFE ID. */
      issuer: name.optional(),
      run_id: runIdInput.optional(),
    })
    .strict(),
]);
export type EventBody = z.infer<typeof eventBody>;

/** `t=<unix seconds>,v1=<hex HMAC-SHA256>`; the old `sha256=<hex>` form (no timestamp) is refused. */
const SIGNATURE = /^t=(\d{1,12}),v1=([0-9a-f]{64})$/;
/** How far a signature's timestamp may be from the broker's clock. */
export const SIGNATURE_TOLERANCE_SECONDS = 300;

/**
 * Signed webhooks (and operators) reporting that a secret leaked or a workload finished. The signature
 * is an HMAC-SHA256 keyed with events.hmac_key over `<t>.` followed by the raw body, compared in
 * constant time; `t` must be within five minutes of now, and each signature is accepted once.
 */
@Injectable()
export class EventsService {
  constructor(
    @Inject(CONFIG) private readonly config: TesseraConfig,
    private readonly identities: IdentityService,
    private readonly statics: StaticService,
    private readonly leases: LeaseService,
    private readonly audit: AuditLog,
    private readonly denials: AuditDenials,
    private readonly signatures: EventSignatureRepository,
  ) {}

  /** Who sent the event: 'webhook' for a valid signature, else an operator's identity. */
  async authenticate(req: Request & { rawBody?: Buffer }): Promise<string> {
    const header = req.headers['x-tessera-signature'];
    if (header === undefined) {
      const identity = await this.identities.authenticate(req).catch(async (err: unknown) => {
        await this.deny(req, 401, 'no valid signature or token');
        throw err;
      });
      if (identity.operator) return identity.subject;
      await this.deny(req, 403, 'operator or signature required', identity);
      throw new DomainError('forbidden', 'operator_only', 'events need a valid X-Tessera-Signature or an operator token');
    }
    const match = typeof header === 'string' ? SIGNATURE.exec(header) : null;
    const key = this.config.events?.hmac_key;
    const expected =
      key && req.rawBody && match
        ? createHmac('sha256', Buffer.from(key, 'utf8')).update(`${match[1]}.`, 'utf8').update(req.rawBody).digest()
        : undefined;
    const signature = match ? Buffer.from(match[2], 'hex') : undefined;
    if (!match || !expected || !signature || !timingSafeEqual(signature, expected)) {
      await this.deny(req, 401, 'bad signature');
      throw new DomainError('unauthenticated', 'invalid_signature', 'X-Tessera-Signature must be t=<unix seconds>,v1=<hex HMAC-SHA256 of "<t>." and the body>');
    }
    const t = Number(match[1]);
    if (Math.abs(Date.now() / 1000 - t) > SIGNATURE_TOLERANCE_SECONDS) {
      await this.deny(req, 401, 'stale signature');
      throw new DomainError('unauthenticated', 'stale_signature', `the signature's timestamp is more than ${SIGNATURE_TOLERANCE_SECONDS}s from the broker's clock`);
    }
    if (!(await this.signatures.claim(signature, new Date((t + 2 * SIGNATURE_TOLERANCE_SECONDS) * 1000)))) {
      await this.deny(req, 401, 'replayed signature');
      throw new DomainError('unauthenticated', 'replayed_signature', 'this signature was already used');
    }
    return 'webhook';
  }

  async handle(actor: string, event: EventBody): Promise<{ rotation_ids: string[] } | { revoked: number }> {
    await this.audit.append({ type: 'event.received', actor, detail: { ...event } });
    if (event.type === 'workload.completed') return this.leases.completeWorkload({ subject: event.subject, issuer: event.issuer }, event.run_id, actor);
    if ('connection' in event) return this.statics.rotateConnection(actor, event.connection, 'event', 'secret.exposed');
    return { rotation_ids: [(await this.statics.rotateFromEvent(actor, event.static)).rotation_id] };
  }

  private deny(req: Request, status: number, reason: string, identity: Identity | null = null): Promise<void> {
    return this.denials.denied({ status, action: 'events', reason, identity, client: req.ip ?? null });
  }
}
