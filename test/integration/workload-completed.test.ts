import { TestBroker, startBroker } from '../support/broker';
import { claims, otherKey, signRaw } from '../support/forge';
import { sign } from '../support/statics';
import { pgLogin } from '../support/target';

const EVENTS_KEY = 'workload-completed-events-key';
const SUB = 'system:serviceaccount:payments:api';

/**
 * A workload.completed event revokes leases of the subject under its issuer only: two clusters whose
 * issuers both emit `system:serviceaccount:payments:api` are two workloads (DESIGN §6).
 */
describe('workload.completed is scoped to the issuer', () => {
  let broker: TestBroker;
  let keyA: Awaited<ReturnType<typeof otherKey>>;
  let keyB: Awaited<ReturnType<typeof otherKey>>;

  const oidcToken = (key: typeof keyA, iss: string, sub: string) => signRaw({ alg: 'ES256', kid: key.privateJwk.kid }, claims(sub, { iss }), key.privateJwk);
  const event = (body: Record<string, unknown>) => {
    const raw = JSON.stringify({ type: 'workload.completed', ...body });
    return broker.api('POST', '/v1/events', { raw, headers: { 'x-tessera-signature': sign(EVENTS_KEY, raw) } });
  };
  const lease = async (token: string, runId: string) => {
    const res = await broker.api('POST', `/v1/creds/${broker.role}`, { token, body: { ttl: '5m', run_id: runId } });
    expect(res.status).toBe(201);
    return res.body;
  };
  const stateOf = async (id: string) => (await broker.state<{ state: string }>('SELECT state FROM leases WHERE id = $1', [id]))[0].state;

  beforeAll(async () => {
    keyA = await otherKey('cluster-a', 'ES256');
    keyB = await otherKey('cluster-b', 'ES256');
    broker = await startBroker('wdone', (doc) => {
      doc.events = { hmac_key: EVENTS_KEY };
      doc.identity.issuers.push({ name: 'cluster-a', type: 'oidc', issuer: 'https://a.k8s.example', jwks_file: keyA.file });
      doc.identity.issuers.push({ name: 'cluster-b', type: 'oidc', issuer: 'https://b.k8s.example', jwks_file: keyB.file });
      doc.policies.push({
        name: 'payments-api',
        subjects: [
          { issuer: 'cluster-a', subject: SUB },
          { issuer: 'cluster-b', subject: SUB },
        ],
        allow: [{ creds: ['wdone-ro'] }],
      });
    });
  });
  afterAll(() => broker.close());

  it('revokes the subject\'s leases under the named issuer only', async () => {
    const a = await lease(await oidcToken(keyA, 'https://a.k8s.example', SUB), 'deploy-1');
    const b = await lease(await oidcToken(keyB, 'https://b.k8s.example', SUB), 'deploy-1');
    const rows = await broker.state<{ owner_issuer: string }>('SELECT owner_issuer FROM leases WHERE id = ANY($1) ORDER BY owner_issuer', [[a.lease_id, b.lease_id]]);
    expect(rows.map((r) => r.owner_issuer)).toEqual(['cluster-a', 'cluster-b']);

    const res = await event({ subject: SUB, issuer: 'cluster-a', run_id: 'deploy-1' });
    expect(res.status).toBe(202);
    expect(res.body).toEqual({ revoked: 1 });
    expect(await stateOf(a.lease_id)).toBe('revoked');
    expect((await pgLogin(a.credentials)).ok).toBe(false);
    expect(await stateOf(b.lease_id)).toBe('active');
    expect((await pgLogin(b.credentials)).ok).toBe(true);

    expect((await event({ subject: SUB, issuer: 'cluster-b' })).body).toEqual({ revoked: 1 });
    expect(await stateOf(b.lease_id)).toBe('revoked');
  });

  it('a subject that is not a SPIFFE ID needs its issuer (422), which must be a configured one', async () => {
    const b = await lease(await oidcToken(keyB, 'https://b.k8s.example', SUB), 'deploy-2');
    const missing = await event({ subject: SUB, run_id: 'deploy-2' });
    expect(missing.status).toBe(422);
    expect(missing.body.error).toMatchObject({ code: 'issuer_required', message: expect.stringContaining('issuer') });
    const unknown = await event({ subject: SUB, issuer: 'cluster-z' });
    expect(unknown.status).toBe(422);
    expect(unknown.body.error.code).toBe('unknown_issuer');
    expect((await event({ subject: SUB, issuer: '../x' })).status).toBe(422);
    expect(await stateOf(b.lease_id)).toBe('active');
    await event({ subject: SUB, issuer: 'cluster-b' });
  });

  it('a SPIFFE ID needs no issuer: its trust domain\'s issuers are meant', async () => {
    const spiffeLease = await lease(await broker.token('ns/app/batch'), 'nightly');
    const oidcLease = await lease(await oidcToken(keyA, 'https://a.k8s.example', SUB), 'nightly');
    const res = await event({ subject: 'spiffe://test.example/ns/app/batch', run_id: 'nightly' });
    expect(res.body).toEqual({ revoked: 1 });
    expect(await stateOf(spiffeLease.lease_id)).toBe('revoked');
    expect(await stateOf(oidcLease.lease_id)).toBe('active');
    // Naming another issuer for it matches nothing.
    const again = await lease(await broker.token('ns/app/batch'), 'nightly-2');
    expect((await event({ subject: 'spiffe://test.example/ns/app/batch', issuer: 'cluster-a' })).body).toEqual({ revoked: 0 });
    expect(await stateOf(again.lease_id)).toBe('active');
  });
});
