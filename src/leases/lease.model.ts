export const LEASE_STATES = ['pending', 'active', 'revoking', 'revoked', 'failed', 'revoke_failed'] as const;
export type LeaseState = (typeof LEASE_STATES)[number];

/** Why a lease is being revoked: decided once, by the transition that moves it to `revoking`. */
export const REVOKE_REASONS = ['expired', 'revoked', 'bulk', 'owner', 'abandoned', 'issue_failed'] as const;
export type RevokeReason = (typeof REVOKE_REASONS)[number];

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
  /** The target's own text of the last failure: operators only. */
  last_error: string | null;
  /** Its stable code (see lease-errors.ts): what the owner sees. */
  last_error_code: string | null;
  /** The session lock of the process that issued it (see IssuerSession). */
  issuer_lock: number | null;
  /** Set by the move to `revoking` (see lease-state.ts); null before it. */
  revoke_reason: RevokeReason | null;
  /** False when the target cannot withdraw the credential (STS): revoking ends the record only. */
  revocable: boolean;
}

/** The lease as the API shows it (DESIGN §5): every field present, null when unset, never a secret. */
export interface LeaseView {
  lease_id: string;
  role: string;
  plugin: string;
  account: string;
  owner: string;
  /** The issuer the owner's subject is qualified by (DESIGN §6). */
  owner_issuer: string;
  run_id: string | null;
  state: LeaseState;
  created_at: string;
  expires_at: string;
  max_expires_at: string;
  revoked_at: string | null;
  /** A stable code for the last failure (e.g. target_unavailable, abandoned), or null. */
  last_error: string | null;
  /** The target's own words about it: shown to operators only (null for anyone else). */
  last_error_detail: string | null;
}

/** The answer to POST /v1/creds/{role}: the only place a lease's secret ever appears. */
export interface IssuedLease {
  lease_id: string;
  role: string;
  plugin: string;
  /**
   * postgres/mysql: username, password (+ host, port, database); aws-iam: access_key_id, secret_access_key, iam_user.
   * redis: username, password, host, port (+ tls: "true" on a rediss:// connection).
   */
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

/**
 * `operator` decides whether last_error_detail is shown: a target's error text can name hosts, users and
 * internals that are not the workload's business, so its owner gets the code only.
 */
export function leaseView(row: LeaseRow, operator: boolean): LeaseView {
  return {
    lease_id: row.id,
    role: row.role,
    plugin: row.plugin,
    account: row.account,
    owner: row.owner,
    owner_issuer: row.owner_issuer,
    run_id: row.run_id,
    state: row.state,
    created_at: row.created_at.toISOString(),
    expires_at: row.expires_at.toISOString(),
    max_expires_at: row.max_expires_at.toISOString(),
    revoked_at: row.revoked_at?.toISOString() ?? null,
    // Rows from before error codes have text only.
    last_error: row.last_error_code ?? (row.last_error === null ? null : 'error'),
    last_error_detail: operator ? row.last_error : null,
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
