import { Inject, Injectable, Logger, OnApplicationBootstrap, OnApplicationShutdown } from '@nestjs/common';
import { SchedulerRegistry } from '@nestjs/schedule';
import { DomainError } from '../common/errors';
import { CONFIG } from '../config/config.module';
import { TesseraConfig } from '../config/config.loader';
import { Ticker } from '../jobs/ticker';
import { LeaseService } from '../leases/lease.service';
import { VaultTokenRepository } from './vault-token.repository';

const BATCH = 1000;
/** Ended tokens are kept this long (lookups of a just-expired token still find the row), then deleted. */
const KEEP_ENDED_SECONDS = 86_400;

/**
 * Every reconciler interval: with vault.revoke_leases_with_token, revokes the leases of client tokens
 * that expired or were revoked (Vault's behaviour; revoke-self already did it for its own, this also
 * covers expiry and a revoke-self that failed half-way); and deletes tokens that ended a day ago.
 */
@Injectable()
export class VaultTokenSweeper implements OnApplicationBootstrap, OnApplicationShutdown {
  private readonly ticker: Ticker;

  constructor(
    @Inject(CONFIG) private readonly config: TesseraConfig,
    scheduler: SchedulerRegistry,
    private readonly tokens: VaultTokenRepository,
    private readonly leases: LeaseService,
  ) {
    this.ticker = new Ticker(scheduler, 'vault-token-sweeper', new Logger(VaultTokenSweeper.name));
  }

  onApplicationBootstrap(): void {
    this.ticker.start(this.config.reconcile_every, () => this.tick());
  }

  onApplicationShutdown(): void {
    this.ticker.stop();
  }

  /** Returns how many leases it revoked and tokens it deleted. */
  async tick(): Promise<{ revoked: number; deleted: number }> {
    let revoked = 0;
    if (this.config.vault.revoke_leases_with_token) {
      for (const row of await this.tokens.leasesOfEndedTokens(BATCH)) {
        const owner = { subject: row.subject, issuer: row.issuer, operator: false, claims: {} };
        await this.leases.revoke(owner, row.lease_id).catch((err: unknown) => {
          if (!(err instanceof DomainError && err.kind === 'not_found')) throw err;
        });
        await this.tokens.forgetLease(row.token_id, row.lease_id);
        revoked++;
      }
    }
    return { revoked, deleted: await this.tokens.deleteEnded(KEEP_ENDED_SECONDS) };
  }
}
