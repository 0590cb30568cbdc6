import { TestBroker, startBroker } from '../support/broker';
import { Issued, KeyUsage, TestCa, httpsJson, writePem } from '../support/pki';

describe('X.509-SVIDs over mTLS', () => {
  let ca: TestCa;
  let broker: TestBroker;
  let url: string;

  beforeAll(async () => {
    ca = await TestCa.create();
    const server = await ca.issue({ dns: ['localhost'], ips: ['127.0.0.1'], serverAuth: true });
    const files = writePem({ 'ca.pem': ca.pem, 'server.pem': server.cert, 'server-key.pem': server.key });
    broker = await startBroker('mtls', (doc) => {
      doc.server.tls = { cert: files['server.pem'], key: files['server-key.pem'], client_ca: files['ca.pem'], trust_domains: ['test.example'] };
    });
    url = broker.url.replace(/^http:/, 'https:');
  });
  afterAll(() => broker.close());

  const whoami = (client?: Issued, token?: string) => httpsJson(`${url}/v1/whoami`, { ca: ca.pem, client, token });

  it('accepts a valid X.509-SVID as the workload\'s identity, and it can lease', async () => {
    const svid = await ca.issue({ uris: ['spiffe://test.example/ns/app/mtls'] });
    expect(await whoami(svid)).toEqual({ status: 200, body: { subject: 'spiffe://test.example/ns/app/mtls', issuer: 'x509', operator: false } });
    const issued = await httpsJson(`${url}/v1/creds/mtls-ro`, { ca: ca.pem, client: svid, method: 'POST' });
    expect(issued.status).toBe(201);
    const revoked = await httpsJson(`${url}/v1/leases/${issued.body.lease_id}/revoke`, { ca: ca.pem, client: svid, method: 'POST' });
    expect(revoked.body).toEqual({ state: 'revoked' });
  });

  it('bearer tokens keep working over TLS without a client certificate', async () => {
    expect((await whoami(undefined, await broker.token('ns/app/api'))).status).toBe(200);
    expect((await whoami()).status).toBe(401);
  });

  it.each<[string, Parameters<TestCa['issue']>[0]]>([
    ['a leaf with cA=true', { uris: ['spiffe://test.example/ns/app/x'], ca: true }],
    ['two URI SANs', { uris: ['spiffe://test.example/ns/app/a', 'spiffe://test.example/ns/app/b'] }],
    ['no SPIFFE ID (DNS SAN only)', { dns: ['app.test.example'] }],
    ['a URI SAN that is not a SPIFFE ID', { uris: ['https://test.example/ns/app'] }],
    ['a malformed SPIFFE ID', { uris: ['spiffe://test.example/ns//app'] }],
    ['key usage allowing certificate signing', { uris: ['spiffe://test.example/ns/app/x'], usage: KeyUsage.digitalSignature | KeyUsage.keyCertSign }],
    ['key usage without digitalSignature', { uris: ['spiffe://test.example/ns/app/x'], usage: KeyUsage.keyEncipherment }],
    ['a trust domain not accepted', { uris: ['spiffe://other.example/ns/app/x'] }],
  ])('refuses %s', async (_label, spec) => {
    const res = await whoami(await ca.issue(spec));
    expect(res.status).toBe(401);
    expect(res.body.error.code).toBe('invalid_certificate');
  });

  it('refuses a certificate from another CA', async () => {
    const rogue = await TestCa.create('Rogue CA');
    const res = await whoami(await rogue.issue({ uris: ['spiffe://test.example/ns/app/mtls'] }));
    expect(res.status).toBe(401);
    expect(res.body.error.code).toBe('invalid_certificate');
  });
});

describe('X.509-SVIDs are bound to the CA bundle of their own trust domain', () => {
  let caA: TestCa;
  let caB: TestCa;
  let broker: TestBroker;
  let url: string;

  beforeAll(async () => {
    caA = await TestCa.create('CA of test.example');
    caB = await TestCa.create('CA of b.example');
    const server = await caA.issue({ dns: ['localhost'], ips: ['127.0.0.1'], serverAuth: true });
    const files = writePem({ 'a.pem': caA.pem, 'b.pem': caB.pem, 'server.pem': server.cert, 'server-key.pem': server.key });
    broker = await startBroker('mtlsdomains', (doc) => {
      doc.server.tls = { cert: files['server.pem'], key: files['server-key.pem'], client_ca: { 'test.example': files['a.pem'], 'b.example': files['b.pem'] } };
      doc.operators.push('spiffe://b.example/ops/*');
    });
    url = broker.url.replace(/^http:/, 'https:');
  });
  afterAll(() => broker.close());

  const whoami = (client: Issued) => httpsJson(`${url}/v1/whoami`, { ca: caA.pem, client });

  it('accepts each trust domain\'s SVIDs from its own CA, directly or through an intermediate', async () => {
    expect(await whoami(await caB.issue({ uris: ['spiffe://b.example/ops/admin'] }))).toEqual({
      status: 200,
      body: { subject: 'spiffe://b.example/ops/admin', issuer: 'x509', operator: true },
    });
    expect((await whoami(await caA.issue({ uris: ['spiffe://test.example/ns/app/a'] }))).status).toBe(200);
    const intermediate = await caB.intermediate('Intermediate of b.example');
    expect((await whoami(await intermediate.issue({ uris: ['spiffe://b.example/ns/app/via-intermediate'] }))).status).toBe(200);
  });

  it.each<[string, () => Promise<Issued>]>([
    ['an operator ID of b.example signed by test.example\'s CA', () => caA.issue({ uris: ['spiffe://b.example/ops/admin'] })],
    ['a test.example ID signed by b.example\'s CA', () => caB.issue({ uris: ['spiffe://test.example/ns/app/a'] })],
    ['a b.example ID through an intermediate of test.example\'s CA', async () => (await caA.intermediate()).issue({ uris: ['spiffe://b.example/ops/admin'] })],
    ['an ID of a trust domain with no bundle, from a configured CA', () => caA.issue({ uris: ['spiffe://c.example/ops/admin'] })],
  ])('refuses %s', async (_label, make) => {
    const res = await whoami(await make());
    expect(res.status).toBe(401);
    expect(res.body.error.code).toBe('invalid_certificate');
  });
});
