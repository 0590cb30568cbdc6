import { Queue } from 'bullmq';
import { Client } from 'pg';
import IORedis from 'ioredis';
import { TestBroker, eventually, startBroker } from '../support/broker';
import { REDIS_URL } from '../support/services';

/**
 * Each issued lease gets its expiry job (BullMQ, delayed, id from the lease id) ending at its
 * expires_at. Far-off jobs are added together with their neighbours' within a few milliseconds of the
 * answer; a job due soon is there when the answer arrives; shutting down adds whatever was waiting.
 */
describe('expiry jobs of issued leases', () => {
  let broker: TestBroker;
  let queue: Queue;
  let redis: IORedis;
  let workload: string;

  beforeAll(async () => {
    broker = await startBroker('expjobs');
    workload = await broker.token('ns/app/expjobs');
    redis = new IORedis(REDIS_URL, { maxRetriesPerRequest: null });
    queue = new Queue('leases', { connection: redis, prefix: broker.doc.queue.prefix });
  });
  afterAll(async () => {
    await queue.close();
    redis.disconnect();
    await broker.close().catch(() => undefined);
  });

  const issue = (ttl: string | number) => broker.api('POST', `/v1/creds/${broker.role}`, { token: workload, body: { ttl } });
  /** When the job runs (ms since the epoch), or undefined when there is no such job. */
  const runsAt = async (leaseId: string) => {
    const job = await queue.getJob(`expiry-${leaseId}`);
    return job ? job.timestamp + (job.opts.delay ?? 0) : undefined;
  };

  it('a burst of far-off leases: every job exists soon after, delayed to its lease expires_at', async () => {
    const answers = await Promise.all(Array.from({ length: 20 }, () => issue('10m')));
    expect(answers.map((a) => a.status)).toEqual(answers.map(() => 201));
    for (const { body } of answers) {
      const at = await eventually(() => runsAt(body.lease_id), 2000, 20);
      expect(Math.abs(at! - Date.parse(body.expires_at))).toBeLessThan(100);
    }
  });

  it('a lease due in seconds has its job when the answer arrives', async () => {
    const { body } = await issue(5);
    expect(Math.abs((await runsAt(body.lease_id))! - Date.parse(body.expires_at))).toBeLessThan(100);
  });

  it('a burst of leases due in seconds: each has its job when its answer arrives', async () => {
    const answers = await Promise.all(
      Array.from({ length: 20 }, async () => {
        const res = await issue(5);
        return { res, at: await runsAt(res.body.lease_id) };
      }),
    );
    for (const { res, at } of answers) {
      expect(res.status).toBe(201);
      expect(Math.abs(at! - Date.parse(res.body.expires_at))).toBeLessThan(100);
    }
  });

  it('shutting down right after an issue still adds its job', async () => {
    const { body } = await issue('10m');
    await broker.close();
    expect(await runsAt(body.lease_id)).toBeDefined();
  });

  it('an issue still in flight when shutdown begins has its job before the broker is down', async () => {
    const other = await startBroker('expjobstop');
    const otherQueue = new Queue('leases', { connection: redis, prefix: other.doc.queue.prefix });
    const token = await other.token('ns/app/expjobstop');
    // Every audit head held elsewhere: the issue waits at its activation while shutdown begins.
    const holder = new Client({ connectionString: other.doc.storage.postgres_url });
    await holder.connect();
    let answer: Promise<{ status: number; body: any }> | undefined;
    let closed: Promise<void> | undefined;
    try {
      await holder.query('BEGIN');
      await holder.query('SELECT id FROM audit_head FOR UPDATE');
      answer = other.api('POST', `/v1/creds/${other.role}`, { token, body: { ttl: '10m' } });
      await new Promise((r) => setTimeout(r, 200));
      closed = other.close();
      await new Promise((r) => setTimeout(r, 200));
    } finally {
      await holder.query('ROLLBACK').catch(() => undefined);
      await holder.end();
    }
    const { status, body } = await answer!;
    await closed;
    expect(status).toBe(201);
    const job = await otherQueue.getJob(`expiry-${body.lease_id}`);
    await otherQueue.close();
    expect(job).toBeDefined();
    expect(Math.abs(job!.timestamp + (job!.opts.delay ?? 0) - Date.parse(body.expires_at))).toBeLessThan(100);
  });
});
