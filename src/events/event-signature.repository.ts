import { Inject, Injectable } from '@nestjs/common';
import { createHash } from 'node:crypto';
import { Database } from '../storage/database';

/** Webhook signatures already accepted, so a captured request cannot be replayed. */
@Injectable()
export class EventSignatureRepository {
  constructor(@Inject(Database) private readonly db: Database) {}

  /**
   * Records a signature as used until `expiresAt` (past the end of its timestamp window); false when
   * it was used before. Expired records are dropped on the way (webhooks are rare; the index keeps it cheap).
   */
  async claim(signature: Buffer, expiresAt: Date): Promise<boolean> {
    const digest = createHash('sha256').update(signature).digest();
    const { rowCount } = await this.db.query(
      `WITH gone AS (DELETE FROM event_signatures WHERE expires_at < now())
       INSERT INTO event_signatures (digest, expires_at) VALUES ($1, $2) ON CONFLICT (digest) DO NOTHING`,
      [digest, expiresAt],
    );
    return rowCount === 1;
  }
}
