import { Client } from 'pg';
import { eventually, resetState, testConfigDoc, writeConfigFile } from '../support/broker';
import { spiffe, testIssuer } from '../support/identity';
import { BrokerProcess, spawnBroker, waitExit } from '../support/process';

/**
 * The access log, from a real broker process: at info, one line per request with its id, method, path
 * (never the query string) and status; above info, none.
 */
describe('the access log', () => {
  const run = async (level: string, fn: (broker: BrokerProcess, token: string, doc: Record<string, any>) => Promise<void>) => {
    const doc = await testConfigDoc(`access_${level}`);
    doc.log = { level };
    await resetState(doc, `access_${level}`);
    const broker = await spawnBroker(writeConfigFile(doc));
    try {
      await fn(broker, await (await testIssuer()).mint(spiffe('ns/app/logged')), doc);
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

  it('at info: a request whose client goes away before the answer is logged as aborted', async () => {
    await run('info', async (broker, token, doc) => {
      // Every audit head held elsewhere: the issue waits at its activation while the client leaves.
      const holder = new Client({ connectionString: doc.storage.postgres_url });
      await holder.connect();
      try {
        await holder.query('BEGIN');
        await holder.query('SELECT id FROM audit_head FOR UPDATE');
        const gone = new AbortController();
        const asked = fetch(`${broker.url}/v1/creds/access_info-ro`, {
          method: 'POST',
          headers: { authorization: `Bearer ${token}`, 'content-type': 'application/json' },
          body: '{"ttl":"10m"}',
          signal: gone.signal,
        }).catch(() => 'aborted');
        await new Promise((r) => setTimeout(r, 300));
        gone.abort();
        expect(await asked).toBe('aborted');
        const line = await eventually(async () => broker.output().split('\n').find((l) => l.includes('request aborted')) ?? '', 5000);
        // It never got an answer: no status, rather than Node's default 200.
        expect(JSON.parse(line)).toMatchObject({ req: { method: 'POST', url: '/v1/creds/access_info-ro' }, res: { statusCode: null } });
      } finally {
        await holder.query('ROLLBACK').catch(() => undefined);
        await holder.end();
      }
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
