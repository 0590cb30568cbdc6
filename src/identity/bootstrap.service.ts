import { Inject, Injectable } from '@nestjs/common';
import { randomBytes } from 'node:crypto';
import { AuditLog } from '../audit/audit.log';
import { DomainError } from '../common/errors';
import { CONFIG } from '../config/config.module';
import { TesseraConfig } from '../config/config.loader';
import { AuditDenials } from '../audit/audit-denials';
import { Database } from '../storage/database';
import { BootstrapHasher } from './bootstrap-hash';
import { BrokerKeys } from './broker-keys';
import { Identity } from './identity';

const SECRET_FORMAT = /^tsb_([A-Za-z0-9_-]{16})\.([A-Za-z0-9_-]{43})$/;
/** What follows the namespace prefix: "/"-separated segments, none empty. */
const SUBJECT_REST = /^[A-Za-z0-9._:@-]+(\/[A-Za-z0-9._:@-]+)*$/;
const refused = () => new DomainError('unauthenticated', 'invalid_bootstrap_secret', 'bootstrap secret unknown, expired or used up');

/**
 * Bootstrap for legacy apps that have no workload identity: an operator creates a short-lived,
 * limited-use secret bound to a subject of the bootstrap namespace; the app exchanges it once for a
 * short-lived broker-signed token. Its identity has issuer "bootstrap": only policy rules naming that
 * issuer match it, so a bootstrap secret can never stand in for a workload or an operator. Secrets are
 * stored only as keyed hashes and compared in constant time.
 */
@Injectable()
export class BootstrapService {
  private readonly hasher: BootstrapHasher;

  constructor(
    @Inject(CONFIG) private readonly config: TesseraConfig,
    @Inject(Database) private readonly db: Database,
    private readonly keys: BrokerKeys,
    private readonly denials: AuditDenials,
    private readonly audit: AuditLog,
  ) {
    this.hasher = new BootstrapHasher(config.encryption.key, config.encryption.previous_keys);
  }

  async createSecret(operator: Identity, input: { subject: string; expiresIn?: number; uses?: number }): Promise<{ secret_id: string; expires_at: string }> {
    const prefix = this.config.identity.bootstrap.subject_prefix;
    if (!input.subject.startsWith(prefix) || !SUBJECT_REST.test(input.subject.slice(prefix.length))) {
      throw new DomainError(
        'invalid',
        'invalid_request',
        `subject: bootstrap subjects are "${prefix}NAME" (identity.bootstrap.subject_prefix); a workload's or operator's subject is refused`,
      );
    }
    const ttl = input.expiresIn ?? 3600;
    if (ttl > this.config.identity.bootstrap.max_secret_ttl) {
      throw new DomainError('invalid', 'invalid_request', `expires_in: at most ${this.config.identity.bootstrap.max_secret_ttl} seconds`);
    }
    const id = randomBytes(12).toString('base64url');
    const secret = randomBytes(32).toString('base64url');
    const expiresAt = new Date(Date.now() + ttl * 1000);
    await this.db.tx(async (tx) => {
      await tx.query(
        'INSERT INTO bootstrap_secrets (id, hash, subject, created_by, expires_at, uses_left) VALUES ($1, $2, $3, $4, $5, $6)',
        [id, this.hasher.hash(id, secret), input.subject, operator.subject, expiresAt, input.uses ?? 1],
      );
      await this.audit.append({ type: 'bootstrap.created', actor: operator.subject, detail: { id, subject: input.subject, uses: input.uses ?? 1, expires_at: expiresAt.toISOString() } }, tx);
    });
    return { secret_id: `tsb_${id}.${secret}`, expires_at: expiresAt.toISOString() };
  }

  async exchange(secretId: string, client: { ip?: string }): Promise<{ token: string; expires_at: string }> {
    const match = SECRET_FORMAT.exec(secretId);
    if (!match) throw refused();
    const denied = async (detail: { id: string; reason?: string }) => {
      await this.denials.denied({ status: 401, action: 'bootstrap', target: detail.id, reason: detail.reason, client: client.ip ?? null });
    };
    const [, id, secret] = match;
    const { rows } = await this.db.query<{ hash: Buffer }>('SELECT hash FROM bootstrap_secrets WHERE id = $1', [id]);
    if (!rows[0] || !this.hasher.matches(rows[0].hash, id, secret)) {
      await denied({ id });
      throw refused();
    }
    // One use, atomically: two exchanges racing for the last use cannot both win.
    const used = await this.db.tx(async (tx) => {
      const { rows: claimed } = await tx.query<{ subject: string }>(
        `UPDATE bootstrap_secrets SET uses_left = uses_left - 1 WHERE id = $1 AND uses_left > 0 AND expires_at > now() RETURNING subject`,
        [id],
      );
      if (claimed[0]) await this.audit.append({ type: 'bootstrap.used', actor: claimed[0].subject, detail: { id } }, tx);
      return claimed[0];
    });
    if (!used) {
      await denied({ id, reason: 'expired or used up' });
      throw refused();
    }
    const { token, expiresAt } = await this.keys.sign(used.subject, this.config.identity.bootstrap.token_ttl);
    return { token, expires_at: expiresAt.toISOString() };
  }
}
