import { DomainError } from '../common/errors';
import { LeaseRow, LeaseState, RevokeReason } from './lease.model';

/**
 * The lease state machine (DESIGN §3): each transition, the states it may start from and the revoke
 * reason it records. The repository's SQL takes its conditions from here, and so do the unit tests'
 * in-memory fakes, so the two cannot drift apart. Every transition is conditional on the state it
 * leaves: of two racing callers, one wins and the other finds the lease moved on.
 *
 *   (issue) ─▶ pending ──activate──▶ active ──renew──▶ active
 *                 │                    │
 *        failIssue, abandon,     expire, beginRevoke,
 *        beginRevokeMatching     beginRevokeMatching
 *                 ▼                    ▼
 *              revoking ◀──beginRevoke(Matching)── revoke_failed
 *                 │   └─────markRevokeFailed─────────▲
 *               finish (also from revoke_failed) ─▶ revoked (it went live) or failed (it never did)
 */
interface TransitionSpec {
  readonly from: readonly LeaseState[];
  readonly to: readonly LeaseState[];
  /** The reason a move to `revoking` records, when the transition fixes it. */
  readonly reason?: RevokeReason;
}

export const TRANSITIONS = {
  /** The pending row is written before the target is touched (intent before side effect). */
  issue: { from: [], to: ['pending'] },
  /** The account exists on the target. */
  activate: { from: ['pending'], to: ['active'] },
  /** A new expires_at, only while unexpired, never past max_expires_at. */
  renew: { from: ['active'], to: ['active'] },
  /** Its expires_at has passed. */
  expire: { from: ['active'], to: ['revoking'], reason: 'expired' },
  /** An explicit revoke of one lease; it also takes over a revocation in flight or one that failed. */
  beginRevoke: { from: ['active', 'revoking', 'revoke_failed'], to: ['revoking'], reason: 'revoked' },
  /**
   * A revoke of many (an owner's, a bulk request's; the reason is the caller's). A pending lease is
   * taken too: its issue then finds it gone and removes the account.
   */
  beginRevokeMatching: { from: ['pending', 'active', 'revoke_failed'], to: ['revoking'] },
  /** The target refused to create the account; whatever it left is removed next. */
  failIssue: { from: ['pending'], to: ['revoking'], reason: 'issue_failed' },
  /** Its issuing process is gone (issuer lock free) or it is older than pending_timeout. */
  abandon: { from: ['pending'], to: ['revoking'], reason: 'abandoned' },
  /** The account is gone from the target. */
  finish: { from: ['revoking', 'revoke_failed'], to: ['revoked', 'failed'] },
  /** A permanent error or the last attempt: listed for operators, retried by the reconciler. */
  markRevokeFailed: { from: ['revoking'], to: ['revoke_failed'] },
} as const satisfies Record<string, TransitionSpec>;

export type Transition = keyof typeof TRANSITIONS;

/** Whether a lease in `state` may take this transition. */
export function may(transition: Transition, state: LeaseState): boolean {
  return (TRANSITIONS[transition].from as readonly LeaseState[]).includes(state);
}

/** A lease's revoke reason once it moves to `revoking`: the first reason given stands. */
export function revokeReasonAfter(lease: Pick<LeaseRow, 'revoke_reason'>, reason: RevokeReason): RevokeReason {
  return lease.revoke_reason ?? reason;
}

/** The reason a lease being revoked records, for rows moved to `revoking` before reasons were stored. */
export function revokeReasonOf(lease: Pick<LeaseRow, 'revoke_reason' | 'activated_at'>): RevokeReason {
  return lease.revoke_reason ?? (lease.activated_at ? 'revoked' : 'abandoned');
}

/** Where `finish` leaves a lease: revoked if its credential ever went live, failed otherwise. */
export function finishedState(lease: Pick<LeaseRow, 'activated_at'>): 'revoked' | 'failed' {
  return lease.activated_at ? 'revoked' : 'failed';
}

/** Revoked and failed leases are done: nothing moves them again. */
export function isFinal(state: LeaseState): state is 'revoked' | 'failed' {
  return state === 'revoked' || state === 'failed';
}

export function isExpired(lease: Pick<LeaseRow, 'expires_at'>, now: Date): boolean {
  return lease.expires_at.getTime() <= now.getTime();
}

/** Refuses (409) a renew of a lease that is not active, or whose time is up. */
export function checkRenewable(lease: Pick<LeaseRow, 'state' | 'expires_at'>, now: Date): void {
  if (!may('renew', lease.state)) throw new DomainError('conflict', 'lease_not_active', `lease is ${lease.state}; only active leases renew`);
  if (isExpired(lease, now)) throw new DomainError('conflict', 'lease_expired', 'lease has expired');
}

/** Renew's rule: expires_at = min(now + increment, max_expires_at). */
export function renewedExpiry(lease: Pick<LeaseRow, 'max_expires_at'>, now: Date, incrementSeconds: number): Date {
  return new Date(Math.min(now.getTime() + incrementSeconds * 1000, lease.max_expires_at.getTime()));
}

/**
 * What an explicit revoke of one lease does: nothing for one already done (revoke is idempotent), a
 * 409 for one still being issued, otherwise `beginRevoke`.
 */
export function revokeStep(state: LeaseState): 'done' | 'begin' {
  if (isFinal(state)) return 'done';
  if (state === 'pending') throw new DomainError('conflict', 'lease_pending', 'lease is still being issued');
  return 'begin';
}

/**
 * What the expiry job does with a lease it did not find expired: `wait` (renewed since the job was
 * scheduled: run again at expires_at), `abandon` (pending: take it if its issuer is gone), `finish`
 * (a revocation to complete) or nothing.
 */
export function enforcementStep(state: LeaseState): 'wait' | 'abandon' | 'finish' | 'none' {
  if (state === 'active') return 'wait';
  if (may('abandon', state)) return 'abandon';
  if (may('finish', state)) return 'finish';
  return 'none';
}
