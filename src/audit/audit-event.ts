/** What an audit event is: its types, and the canonical text that the chain links and verify re-reads. */

/** Event types written to the audit trail. */
export type AuditType =
  | 'lease.issued'
  | 'lease.issue_failed'
  | 'lease.renewed'
  | 'lease.revoked'
  | 'lease.expired'
  | 'lease.revoke_failed'
  | 'lease.abandoned'
  | 'lease.bulk_revoke'
  | 'role.sessions_revoked'
  | 'request.denied'
  | 'request.denied_summary'
  | 'audit.keyed'
  | 'audit.heartbeat'
  | 'audit.head_broken'
  | 'audit.shards'
  | 'bootstrap.created'
  | 'bootstrap.used'
  | 'static.rotated'
  | 'static.exposure_contained'
  | 'static.late_sessions_ended'
  | 'static.rotation_failed'
  | 'static.imported'
  | 'static.read'
  | 'static.rotation_requested'
  | 'event.received'
  | 'vault.token_created'
  | 'vault.token_renewed'
  | 'vault.token_revoked'
  | 'console.signed_in'
  | 'console.signed_out';

export interface AuditEvent {
  type: AuditType;
  actor?: string | null;
  leaseId?: string | null;
  /** Names, ids, counts and reasons. Never a password, key or token. */
  detail?: Record<string, unknown>;
}

/** An event ready to be chained: its columns, and `body`, the canonical text its link covers. */
export interface StoredEvent {
  at: string;
  type: AuditType;
  actor: string | null;
  leaseId: string | null;
  body: string;
}

/** Stamps an event with its time and fixes its canonical text (the columns are copies of the text's fields). */
export function storedEvent(event: AuditEvent, now: Date = new Date()): StoredEvent {
  const at = now.toISOString();
  const actor = event.actor ?? null;
  const leaseId = event.leaseId ?? null;
  const body = JSON.stringify({ at, type: event.type, actor, lease_id: leaseId, detail: event.detail ?? {} });
  return { at, type: event.type, actor, leaseId, body };
}
