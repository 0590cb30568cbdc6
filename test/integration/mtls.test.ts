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
