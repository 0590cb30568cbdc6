export const LEASE_STATES = ['pending', 'active', 'revoking', 'revoked', 'failed', 'revoke_failed'] as const;
export type LeaseState = (typeof LEASE_STATES)[number];

export interface LeaseRow {
  id: string;
  role: string;
  connection: string;
  plugin: string;
  account: string;
  owner: string;
  owner_issuer: string;
  run_id: string | null;
  state: LeaseState;
  created_at: Date;
  updated_at: Date;
  expires_at: Date;
  max_expires_at: Date;
  activated_at: Date | null;
  revoked_at: Date | null;
  last_error: string | null;
}

/** The lease as the API shows it (DESIGN §5): every field present, null when unset, never a secret. */
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
  last_error: string | null;
}

/** The answer to POST /v1/creds/{role}: the only place a lease's secret ever appears. */
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

export interface LeasePage {
  items: LeaseView[];
  next_cursor: string | null;
}

export function leaseView(row: LeaseRow): LeaseView {
  return {
    lease_id: row.id,
    role: row.role,
    plugin: row.plugin,
    account: row.account,
    owner: row.owner,
    run_id: row.run_id,
    state: row.state,
    created_at: row.created_at.toISOString(),
    expires_at: row.expires_at.toISOString(),
    max_expires_at: row.max_expires_at.toISOString(),
    revoked_at: row.revoked_at?.toISOString() ?? null,
    last_error: row.last_error,
  };
}

export interface LeaseFilter {
  role?: string;
  connection?: string;
  state?: LeaseState;
  runId?: string;
  owner?: string;
  ownerIssuer?: string;
}
