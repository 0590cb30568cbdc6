import { checkListener } from '../../src/app';
import { parseConfig } from '../../src/config/config.loader';
import { startBroker, testConfigDoc } from '../support/broker';

/** Plain HTTP only on loopback unless server.allow_insecure says so (tokens and credentials cross it). */
describe('binding a non-loopback address without TLS', () => {
  const configWith = async (server: Record<string, unknown>) => {
    const doc = await testConfigDoc('listen');
    doc.server = { port: 0, ...server };
    return parseConfig(doc, {}, 'test:listen');
  };

  it.each(['0.0.0.0', '::', '192.0.2.10', 'tessera.example'])('is refused at start-up for %s, naming the key to set', async (host) => {
    const config = await configWith({ host });
    expect(() => checkListener(config)).toThrow(/server\.host: .* is not a loopback address .*server\.tls.*server\.allow_insecure: true/);
  });

  it.each(['127.0.0.1', '127.0.0.2', '::1', 'localhost'])('is no question on loopback (%s)', async (host) => {
    const config = await configWith({ host });
    expect(() => checkListener(config)).not.toThrow();
  });

  it('is allowed with server.tls, or with server.allow_insecure: true', async () => {
    const tls = { cert: 'cert.pem', key: 'key.pem', client_ca: { 'test.example': 'ca.pem' } };
    const withTls = await configWith({ host: '0.0.0.0', tls });
    const insecure = await configWith({ host: '0.0.0.0', allow_insecure: true });
    expect(() => checkListener(withTls)).not.toThrow();
    expect(() => checkListener(insecure)).not.toThrow();
    expect((await configWith({ host: '127.0.0.1' })).server.allow_insecure).toBe(false);
  });

  it('the server does not start without it, and starts with it', async () => {
    await expect(startBroker('listen', (doc) => (doc.server.host = '0.0.0.0'))).rejects.toThrow(/server\.allow_insecure/);
    const broker = await startBroker('listen', (doc) => {
      doc.server.host = '0.0.0.0';
      doc.server.allow_insecure = true;
    });
    try {
      expect((await broker.api('GET', '/v1/health/live')).status).toBe(200);
    } finally {
      await broker.close();
    }
  });
});
