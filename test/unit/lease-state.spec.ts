import { DomainError } from '../../src/common/errors';
import { LEASE_STATES, LeaseState } from '../../src/leases/lease.model';
import {
  TRANSITIONS,
  Transition,
  checkRenewable,
  enforcementStep,
  finishedState,
  may,
  renewedExpiry,
  revokeReasonAfter,
  revokeReasonOf,
  revokeStep,
} from '../../src/leases/lease-state';

/** The states each transition may start from (DESIGN §3), written out independently of the module. */
const ALLOWED: Record<Transition, LeaseState[]> = {
  issue: [],
  activate: ['pending'],
  renew: ['active'],
  expire: ['active'],
  beginRevoke: ['active', 'revoking', 'revoke_failed'],
  beginRevokeMatching: ['pending', 'active', 'revoke_failed'],
  failIssue: ['pending'],
  abandon: ['pending'],
  finish: ['revoking', 'revoke_failed'],
  markRevokeFailed: ['revoking'],
};

const conflict = (code: string) => expect.objectContaining({ kind: 'conflict', code });

function thrown(fn: () => unknown): unknown {
  try {
    fn();
  } catch (err) {
    return err;
  }
  throw new Error('nothing was thrown');
}

describe('the lease state machine', () => {
  it('names every transition', () => {
    expect(Object.keys(TRANSITIONS).sort()).toEqual(Object.keys(ALLOWED).sort());
  });

  describe.each(Object.keys(ALLOWED) as Transition[])('%s', (transition) => {
    it.each(LEASE_STATES.map((s) => [s]))(`from %s`, (state) => {
      expect(may(transition, state)).toBe(ALLOWED[transition].includes(state));
    });
  });

  it('moves to the states DESIGN §3 names', () => {
    expect(TRANSITIONS.activate.to).toEqual(['active']);
    expect(TRANSITIONS.finish.to).toEqual(['revoked', 'failed']);
    expect(TRANSITIONS.markRevokeFailed.to).toEqual(['revoke_failed']);
    for (const t of ['expire', 'beginRevoke', 'beginRevokeMatching', 'failIssue', 'abandon'] as const) expect(TRANSITIONS[t].to).toEqual(['revoking']);
  });

  it('nothing leaves revoked or failed', () => {
    for (const t of Object.keys(TRANSITIONS) as Transition[]) {
      expect(may(t, 'revoked')).toBe(false);
      expect(may(t, 'failed')).toBe(false);
    }
  });

  it('finish ends a lease that went live as revoked, and one that never did as failed', () => {
    expect(finishedState({ activated_at: new Date() })).toBe('revoked');
    expect(finishedState({ activated_at: null })).toBe('failed');
  });

  it('records the reason of the first move to revoking; a later one does not change it', () => {
    expect(TRANSITIONS.expire.reason).toBe('expired');
    expect(TRANSITIONS.beginRevoke.reason).toBe('revoked');
    expect(TRANSITIONS.failIssue.reason).toBe('issue_failed');
    expect(TRANSITIONS.abandon.reason).toBe('abandoned');
    expect(revokeReasonAfter({ revoke_reason: null }, 'revoked')).toBe('revoked');
    expect(revokeReasonAfter({ revoke_reason: 'expired' }, 'revoked')).toBe('expired');
    // Rows moved to revoking before reasons were recorded.
    expect(revokeReasonOf({ revoke_reason: null, activated_at: new Date() })).toBe('revoked');
    expect(revokeReasonOf({ revoke_reason: null, activated_at: null })).toBe('abandoned');
    expect(revokeReasonOf({ revoke_reason: 'bulk', activated_at: new Date() })).toBe('bulk');
  });

  describe('renew', () => {
    const now = new Date('2030-01-01T00:00:00Z');
    const later = new Date(now.getTime() + 60_000);

    it('is allowed for an active, unexpired lease', () => {
      expect(() => checkRenewable({ state: 'active', expires_at: later }, now)).not.toThrow();
    });

    it.each(LEASE_STATES.filter((s) => s !== 'active').map((s) => [s]))('of a %s lease is refused with 409 lease_not_active', (state) => {
      const err = thrown(() => checkRenewable({ state, expires_at: later }, now));
      expect(err).toBeInstanceOf(DomainError);
      expect(err).toEqual(conflict('lease_not_active'));
    });

    it('of an active lease whose time is up is refused with 409 lease_expired', () => {
      expect(thrown(() => checkRenewable({ state: 'active', expires_at: now }, now))).toEqual(conflict('lease_expired'));
    });

    it('moves expires_at to now + increment, capped at max_expires_at', () => {
      const max = new Date(now.getTime() + 3600_000);
      expect(renewedExpiry({ max_expires_at: max }, now, 60)).toEqual(later);
      expect(renewedExpiry({ max_expires_at: max }, now, 7200)).toEqual(max);
    });
  });

  describe('an explicit revoke', () => {
    it('of a revoked or failed lease is done already (idempotent)', () => {
      expect(revokeStep('revoked')).toBe('done');
      expect(revokeStep('failed')).toBe('done');
    });

    it('of a pending lease is refused with 409 lease_pending', () => {
      expect(thrown(() => revokeStep('pending'))).toEqual(conflict('lease_pending'));
    });

    it.each([['active'], ['revoking'], ['revoke_failed']] as const)('of a %s lease begins (or takes over) its revocation', (state) => {
      expect(revokeStep(state)).toBe('begin');
      expect(may('beginRevoke', state)).toBe(true);
    });
  });

  it('the expiry job waits for an active lease, abandons a pending one, finishes a revocation, leaves a done one', () => {
    expect(enforcementStep('active')).toBe('wait');
    expect(enforcementStep('pending')).toBe('abandon');
    expect(enforcementStep('revoking')).toBe('finish');
    expect(enforcementStep('revoke_failed')).toBe('finish');
    expect(enforcementStep('revoked')).toBe('none');
    expect(enforcementStep('failed')).toBe('none');
  });
});
