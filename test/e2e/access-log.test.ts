import { eventually, resetState, testConfigDoc, writeConfigFile } from '../support/broker';
import { spiffe, testIssuer } from '../support/identity';
import { BrokerProcess, spawnBroker, waitExit } from '../support/process';

/**
 * The access log, from a real broker process: at info, one line per request with its id, method, path
 * (never the query string) and status; above info, none.
 */
describe('the access log', () => {
  const run = async (level: string, fn: (broker: BrokerProcess, token: string) => Promise<void>) => {
    const doc = await testConfigDoc(`access_${level}`);
    doc.log = { level };
    await resetState(doc, `access_${level}`);
    const broker = await spawnBroker(writeConfigFile(doc));
    try {
      await fn(broker, await (await testIssuer()).mint(spiffe('ns/app/logged')));
    } finally {
      broker.child.kill('SIGTERM');
      await waitExit(broker.child);
    }
  };
  const whoami = (broker: BrokerProcess, token: string) =>
    fetch(`${broker.url}/v1/whoami?code=query-secret-never-logged`, { headers: { authorization: `Bearer ${token}` } });

  it('at info: a line per request with the id it answered with, the path without the query, the status', async () => {
    await run('info', async (broker, token) => {
      const res = await whoami(broker, token);
      expect(res.status).toBe(200);
      const id = res.headers.get('x-request-id')!;
      const line = await eventually(async () => broker.output().split('\n').find((l) => l.includes(id) && l.includes('request completed')) ?? '', 5000);
      expect(JSON.parse(line)).toMatchObject({ req: { id, method: 'GET', url: '/v1/whoami' }, res: { statusCode: 200 }, responseTime: expect.any(Number) });
      expect(broker.output()).not.toContain('query-secret-never-logged');
      expect(broker.output()).not.toContain(token);
    });
  });

  it('at warn: no access log', async () => {
    await run('warn', async (broker, token) => {
      expect((await whoami(broker, token)).status).toBe(200);
      await new Promise((r) => setTimeout(r, 300));
      expect(broker.output()).not.toContain('request completed');
    });
  });
});
