/** Shapes of the broker's HTTP API (DESIGN.md §5), as the client sees them. */

export type LeaseState = 'pending' | 'active' | 'revoking' | 'revoked' | 'failed' | 'revoke_failed';

/** A duration as the API takes it: "90s", "15m", "1h", or whole seconds. */
export type Duration = string | number;

export interface Whoami {
  subject: string;
  issuer: string;
  operator: boolean;
}

export interface IssuedLease {
  lease_id: string;
  role: string;
  plugin: string;
  /** postgres/mysql: username, password (+ host, port, database); aws-iam: access_key_id, secret_access_key, iam_user. */
  credentials: Record<string, string | number>;
  ttl_seconds: number;
  expires_at: string;
  max_expires_at: string;
  renewable: boolean;
}

export interface LeaseView {
  lease_id: string;
  role: string;
  plugin: string;
  account: string;
  owner: string;
  run_id: string | null;
  state: LeaseState;
  created_at: string;
  expires_at: string;
  max_expires_at: string;
  revoked_at: string | null;
  last_error?: string | null;
}

export interface LeasePage {
  items: LeaseView[];
  next_cursor: string | null;
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
