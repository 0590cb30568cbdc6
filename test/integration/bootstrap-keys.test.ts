import { TestBroker, startBroker } from '../support/broker';
import { claims, otherKey, signRaw } from '../support/forge';

/**
 * Someone who can write the state database but does not hold the master key must not be able to make
 * the broker accept tokens they sign: the verification key comes from the sealed private key only.
 */
describe('broker token keys come from the sealed private key, not the public_jwk column', () => {
  let broker: TestBroker;
  let key: string;
  /** Tokens an attacker signed with keys they wrote into broker_keys. */
  let forged: { realKid: string; plantedKid: string };

  const name = 'bootkeys';
  // The restarted broker keeps the master key, so it can open the key it sealed.
  const setup = (doc: Record<string, any>) => {
    if (key) doc.encryption.key = key;
  };

  beforeAll(async () => {
    const first = await startBroker(name, setup);
    key = first.doc.encryption.key;
    // The broker key exists once a broker has started.
    const [real] = await first.state<{ kid: string }>('SELECT kid FROM broker_keys');
    const attacker = await otherKey(real.kid);
    // Tamper with the stored public key, and plant a row of the attacker's whose sealed key is garbage.
    await first.state('UPDATE broker_keys SET public_jwk = $1 WHERE kid = $2', [attacker.publicJwk, real.kid]);
    const planted = await otherKey('planted');
    await first.state(`INSERT INTO broker_keys (kid, key_id, sealed, public_jwk) VALUES ('planted', 'x', '\\x00', $1)`, [planted.publicJwk]);
    await first.close();
    broker = await startBroker(name, setup, { reset: false });
    forged = {
      realKid: await signRaw({ alg: 'ES256', kid: real.kid }, claims('bootstrap/billing', { iss: 'tessera:broker' }), attacker.privateJwk),
      plantedKid: await signRaw({ alg: 'ES256', kid: 'planted' }, claims('bootstrap/billing', { iss: 'tessera:broker' }), planted.privateJwk),
    };
  });
  afterAll(() => broker.close());

  it('a token signed with the key written into a tampered public_jwk row is refused', async () => {
    const res = await broker.api('GET', '/v1/whoami', { token: forged.realKid });
    expect(res.status).toBe(401);
    expect(res.body.error.code).toBe('invalid_token');
  });

  it('a token signed with the key of a planted row is refused', async () => {
    expect((await broker.api('GET', '/v1/whoami', { token: forged.plantedKid })).status).toBe(401);
  });

  it('the genuine key still signs and verifies after the restart', async () => {
    const operator = await broker.token('ops/erin');
    const created = await broker.api('POST', '/v1/auth/bootstrap-secrets', { token: operator, body: { subject: 'bootstrap/billing' } });
    const exchanged = await broker.api('POST', '/v1/auth/bootstrap', { body: { secret_id: created.body.secret_id } });
    expect(exchanged.status).toBe(200);
    const whoami = await broker.api('GET', '/v1/whoami', { token: exchanged.body.token });
    expect(whoami.body).toEqual({ subject: 'bootstrap/billing', issuer: 'bootstrap', operator: false });
  });
});
