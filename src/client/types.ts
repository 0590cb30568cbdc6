/** Shapes of the broker's HTTP API (DESIGN.md §5), as the client sees them. */

// The lease shapes are the broker's own (type-only: the client loads none of the broker's code).
export type { IssuedLease, LeasePage, LeaseState, LeaseView } from '../leases/lease.model';
import type { LeaseState } from '../leases/lease.model';

/** A duration as the API takes it: "90s", "15m", "1h", or whole seconds. */
export type Duration = string | number;

export interface Whoami {
  subject: string;
  issuer: string;
  operator: boolean;
}


export interface LeaseListFilter {
  role?: string;
  state?: LeaseState;
  runId?: string;
  owner?: string;
  limit?: number;
  cursor?: string;
}

export interface BulkRevokeFilter {
  role?: string;
  connection?: string;
  owner?: string;
  /** The owner's issuer (a name in identity.issuers): required with an owner that is not a SPIFFE ID. */
  ownerIssuer?: string;
  runId?: string;
}

export interface AuditVerifyResult {
  ok: boolean;
  events_checked: number;
  first_bad_id?: string | number | null;
}

/** `GET /v1/static/{name}/creds` (not served by every broker version). */
export interface StaticCreds {
  name: string;
  username?: string;
  password?: string;
  access_key_id?: string;
  secret_access_key?: string;
  version: number;
  rotated_at: string | null;
  next_rotation_at: string | null;
}

export interface RotationStatus {
  status: 'queued' | 'running' | 'succeeded' | 'failed';
  steps?: unknown;
  error?: string;
}
