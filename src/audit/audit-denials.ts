import { Inject, Injectable } from '@nestjs/common';
import { DomainError } from '../common/errors';
import { CONFIG } from '../config/config.module';
import type { TesseraConfig } from '../config/config.loader';
import { TokenBucket } from '../common/token-bucket';
import { Metrics } from '../metrics/metrics';
import { AuditLog } from './audit.log';
import { addressKey } from '../common/client-address';

export interface Denial {
  status: number;
  /** What was refused: a route's action (`events`, `bootstrap`, `static.creds`, `lease.read`…) or `METHOD path`. */
  action: string;
  reason?: string;
  /** The object asked for (a lease id, a secret's name), when there is one. */
  target?: string;
  /** Who was refused, when the request proved it. */
  identity?: { subject: string; issuer: string } | null;
  /** The client address: refusals without an identity are limited per address. */
  client?: string | null;
}

/**
 * The one way a refused request is recorded: counted in `tessera_denied_requests_total`, audited as
 * `request.denied` with the same fields everywhere, sampled per identity by the audit log (a probe of
 * many ids writes a few rows and a summary), and — when nobody is identified — bounded per client
 * address so a flood of bad tokens cannot become a flood of audit writes (429 beyond it).
 */
@Injectable()
export class AuditDenials {
  /** limits.unidentified_denials_per_address_rps, bursts of twice that. */
  private readonly perAddress: TokenBucket;

  constructor(
    @Inject(CONFIG) config: TesseraConfig,
    private readonly audit: AuditLog,
    private readonly metrics: Metrics,
  ) {
    const rps = config.limits.unidentified_denials_per_address_rps;
    this.perAddress = new TokenBucket(rps, rps * 2);
  }

  async denied(d: Denial): Promise<void> {
    this.metrics.deniedRequests.inc({ status: String(d.status) });
    if (!d.identity && !this.perAddress.take(addressKey(d.client))) {
      throw new DomainError('rate_limited', 'too_many_denied_requests', 'too many refused requests from this address; slow down');
    }
    await this.audit.append({
      type: 'request.denied',
      actor: d.identity?.subject ?? null,
      detail: {
        status: d.status,
        action: d.action,
        ...(d.reason !== undefined && { reason: d.reason }),
        ...(d.target !== undefined && { target: d.target }),
        issuer: d.identity?.issuer ?? null,
        client: d.client ?? null,
      },
    });
  }
}
