import { Inject, Injectable } from '@nestjs/common';
import { GroupCommit } from '../../plugins/contract';
import { Database, Queryable } from '../storage/database';

export interface VaultTokenRow {
  id: string;
  hash: Buffer;
  subject: string;
  issuer: string;
  claims: Record<string, unknown>;
  created_at: Date;
  renewed_at: Date | null;
  expires_at: Date;
  max_expires_at: Date;
  revoked_at: Date | null;
}

export interface NewVaultToken {
  id: string;
  hash: Buffer;
  subject: string;
  issuer: string;
  claims: Record<string, unknown>;
  expiresAt: Date;
  maxExpiresAt: Date;
}

const TOKEN_COLUMNS = 'id, hash, subject, issuer, claims, created_at, renewed_at, expires_at, max_expires_at, revoked_at';

/** The SQL of Vault client tokens (the `vault_tokens` and `vault_token_leases` tables). */
@Injectable()
export class VaultTokenRepository {
  constructor(@Inject(Database) private readonly db: Database) {}

  tx<T>(fn: (q: Queryable) => Promise<T>): Promise<T> {
    return this.db.tx(fn);
  }

  async insert(token: NewVaultToken, q: Queryable = this.db): Promise<void> {
    await q.query(
      `INSERT INTO vault_tokens (id, hash, subject, issuer, claims, expires_at, max_expires_at) VALUES ($1, $2, $3, $4, $5, $6, $7)`,
      [token.id, token.hash, token.subject, token.issuer, JSON.stringify(token.claims), token.expiresAt, token.maxExpiresAt],
    );
  }

  /**
   * A token's row, read after the call (a revoke committed before it is seen). The reads of requests
   * arriving together share one statement (group commit): a Vault client's every request reads its
   * token, and one round trip each was a tenth of such a request's cost.
   */
  get(id: string): Promise<VaultTokenRow | undefined> {
    return this.reads.submit(id);
  }

  private readonly reads = new GroupCommit<string, VaultTokenRow | undefined>(
    async (ids) => {
      const { rows } = await this.db.query<VaultTokenRow>(`SELECT ${TOKEN_COLUMNS} FROM vault_tokens WHERE id = ANY($1::text[])`, [[...new Set(ids)]]);
      const byId = new Map(rows.map((r) => [r.id, r]));
      return ids.map((id) => byId.get(id));
    },
    { maxBatch: 64, inFlight: 2 },
  );

  /** Moves the expiry of a live token; undefined when it was revoked or expired meanwhile. */
  async renew(id: string, expiresAt: Date): Promise<VaultTokenRow | undefined> {
    const { rows } = await this.db.query<VaultTokenRow>(
      `UPDATE vault_tokens SET expires_at = $2, renewed_at = now() WHERE id = $1 AND revoked_at IS NULL AND expires_at > now() RETURNING *`,
      [id, expiresAt],
    );
    return rows[0];
  }

  /** Marks the token revoked; false when it already was. */
  async revoke(id: string, q: Queryable = this.db): Promise<boolean> {
    const { rowCount } = await q.query('UPDATE vault_tokens SET revoked_at = now() WHERE id = $1 AND revoked_at IS NULL', [id]);
    return (rowCount ?? 0) > 0;
  }

  async recordLease(tokenId: string, leaseId: string): Promise<void> {
    await this.db.query('INSERT INTO vault_token_leases (token_id, lease_id) VALUES ($1, $2) ON CONFLICT DO NOTHING', [tokenId, leaseId]);
  }

  async leasesOf(tokenId: string): Promise<string[]> {
    const { rows } = await this.db.query<{ lease_id: string }>('SELECT lease_id FROM vault_token_leases WHERE token_id = $1', [tokenId]);
    return rows.map((r) => r.lease_id);
  }

  /** Leases recorded for tokens that are revoked or expired: what revoke_leases_with_token still has to revoke. */
  async leasesOfEndedTokens(limit: number): Promise<Array<{ token_id: string; subject: string; issuer: string; lease_id: string }>> {
    const { rows } = await this.db.query(
      `SELECT l.token_id, t.subject, t.issuer, l.lease_id FROM vault_token_leases l JOIN vault_tokens t ON t.id = l.token_id
        WHERE t.revoked_at IS NOT NULL OR t.expires_at <= now() LIMIT $1`,
      [limit],
    );
    return rows;
  }

  async forgetLease(tokenId: string, leaseId: string): Promise<void> {
    await this.db.query('DELETE FROM vault_token_leases WHERE token_id = $1 AND lease_id = $2', [tokenId, leaseId]);
  }

  /** Deletes tokens that ended (expired or revoked) more than `olderThanSeconds` ago; returns how many. */
  async deleteEnded(olderThanSeconds: number): Promise<number> {
    const { rowCount } = await this.db.query(
      `DELETE FROM vault_tokens WHERE LEAST(expires_at, COALESCE(revoked_at, expires_at)) < now() - make_interval(secs => $1)`,
      [olderThanSeconds],
    );
    return rowCount ?? 0;
  }
}
