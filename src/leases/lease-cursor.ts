import { DomainError } from '../common/errors';
import { LeaseRow } from './lease.model';
import { LEASE_ID } from './names';

/** List cursors: opaque to callers, the (created_at, id) of the last row of a page. */
export function encodeCursor(row: LeaseRow): string {
  return Buffer.from(JSON.stringify([row.created_at.toISOString(), row.id])).toString('base64url');
}

export function decodeCursor(cursor: string): { createdAt: Date; id: string } {
  try {
    const [createdAt, id] = JSON.parse(Buffer.from(cursor, 'base64url').toString('utf8'));
    const date = new Date(createdAt);
    const year = date.getUTCFullYear();
    if (typeof id === 'string' && LEASE_ID.test(id) && year >= 2000 && year <= 9999) return { createdAt: date, id };
  } catch {
    /* fall through */
  }
  throw new DomainError('invalid', 'invalid_cursor', 'cursor is not one this API returned');
}
