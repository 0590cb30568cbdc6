import { Queue } from 'bullmq';
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

  it('shutting down right after an issue still adds its job', async () => {
    const { body } = await issue('10m');
    await broker.close();
    expect(await runsAt(body.lease_id)).toBeDefined();
  });
});
