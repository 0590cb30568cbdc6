import { TesseraConfig } from '../config/config.loader';
import { Database } from '../storage/database';
import { AuditLog, LegacySeal } from './audit.log';

/**
 * `tessera audit seal-legacy`: run against the state database directly (it needs the master key, which
 * only the broker's config has), beside running brokers; see AuditLog.sealLegacy.
 */
export async function sealLegacyAudit(config: TesseraConfig): Promise<LegacySeal> {
  const db = new Database(config.storage.postgres_url, 1);
  try {
    return await new AuditLog(db, config).sealLegacy();
  } finally {
    await db.close();
  }
}

export function describeLegacySeal(result: LegacySeal): string {
  switch (result.status) {
    case 'accepted':
      return `accepted ${result.events} unkeyed audit events (ids ${result.first_id} to ${result.boundary_id}); recorded in keyed event ${result.event_id}`;
    case 'already_accepted':
      return `the ${result.events} unkeyed audit events up to id ${result.boundary_id} were already accepted`;
    case 'nothing_to_accept':
      return 'the audit trail has no unkeyed events; nothing to accept';
  }
}
