import { Inject, Injectable } from '@nestjs/common';
import { Database } from '../storage/database';

export interface PendingLogin {
  state: string;
  nonce: string;
  code_verifier: string;
}

export interface SessionRow {
  subject: string;
  issuer: string;
  display_name: string | null;
  csrf_token: string;
  expires_at: Date;
}

/** The SQL of the console's sign-ins under way (`console_logins`) and sessions (`console_sessions`). */
@Injectable()
export class ConsoleSessionRepository {
  constructor(@Inject(Database) private readonly db: Database) {}

  /**
   * Records a sign-in under way unless `maxPending` are already pending (false then: nothing written).
   * The count and the insert are one statement; concurrent starts may pass the cap by a few at most.
   */
  /**
   * Records a sign-in that has begun. At most `maxPending` are kept: beyond that the oldest unfinished
   * ones are dropped to make room, so a flood of sign-in starts can delay a sign-in already under way
   * by forcing it to begin again, but can never refuse a new one.
   */
  async insertLogin(idHash: Buffer, login: PendingLogin, expiresAt: Date, maxPending: number): Promise<void> {
    // Expired sign-ins nobody finished go as new ones start: the table stays small without a sweeper.
    await this.db.query('DELETE FROM console_logins WHERE expires_at <= now()');
    await this.db.query(
      'DELETE FROM console_logins WHERE id_hash IN (SELECT id_hash FROM console_logins ORDER BY created_at DESC, id_hash OFFSET $1)',
      [maxPending - 1],
    );
    await this.db.query(
      'INSERT INTO console_logins (id_hash, state, nonce, code_verifier, expires_at) VALUES ($1, $2, $3, $4, $5)',
      [idHash, login.state, login.nonce, login.code_verifier, expiresAt],
    );
  }

  /** Removes the sign-in and returns it when it has not expired: each is used once. */
  async takeLogin(idHash: Buffer): Promise<PendingLogin | undefined> {
    const { rows } = await this.db.query<PendingLogin & { live: boolean }>(
      'DELETE FROM console_logins WHERE id_hash = $1 RETURNING state, nonce, code_verifier, expires_at > now() AS live',
      [idHash],
    );
    return rows[0]?.live ? rows[0] : undefined;
  }

  async insertSession(idHash: Buffer, session: Omit<SessionRow, 'expires_at'>, expiresAt: Date): Promise<void> {
    await this.db.query('DELETE FROM console_sessions WHERE expires_at <= now()');
    await this.db.query(
      'INSERT INTO console_sessions (id_hash, subject, issuer, display_name, csrf_token, expires_at) VALUES ($1, $2, $3, $4, $5, $6)',
      [idHash, session.subject, session.issuer, session.display_name, session.csrf_token, expiresAt],
    );
  }

  async session(idHash: Buffer): Promise<SessionRow | undefined> {
    const { rows } = await this.db.query<SessionRow>(
      'SELECT subject, issuer, display_name, csrf_token, expires_at FROM console_sessions WHERE id_hash = $1 AND expires_at > now()',
      [idHash],
    );
    return rows[0];
  }

  /** Ends a session; false when there was none. */
  async deleteSession(idHash: Buffer): Promise<boolean> {
    const { rowCount } = await this.db.query('DELETE FROM console_sessions WHERE id_hash = $1', [idHash]);
    return (rowCount ?? 0) > 0;
  }
}
