import { Queue } from 'bullmq';
import IORedis from 'ioredis';
import { parseConfig } from '../../src/config/config.loader';
import { JobProducer } from '../../src/jobs/job.producer';
import { JobName } from '../../src/jobs/jobs';
import { RedisConnections } from '../../src/jobs/redis';
import { eventually, flushQueue, testConfigDoc } from '../support/broker';
import { REDIS_URL } from '../support/services';

/**
 * The producer against a real Redis: which jobs it holds back for a shared addBulk, that shutdown
 * stops holding any back, and that a Redis which stops answering fails a caller in seconds rather
 * than holding it (and the jobs behind it) for as long as TCP takes to give up.
 */
describe('the job producer', () => {
  let producer: JobProducer;
  let connections: RedisConnections;
  let admin: IORedis;
  let queue: Queue;

  beforeAll(async () => {
    const doc = await testConfigDoc('jobprod');
    await flushQueue(doc.queue.prefix);
    const config = parseConfig(doc, {}, 'test:jobprod');
    connections = new RedisConnections(config);
    producer = new JobProducer(config, connections);
    // The producer's connection fails fast until it is up.
    await eventually(() => producer.ping().then(() => true, () => undefined), 5000, 20);
    admin = new IORedis(REDIS_URL, { maxRetriesPerRequest: null });
    queue = new Queue('leases', { connection: admin, prefix: doc.queue.prefix });
  });
  afterAll(async () => {
    await producer.onApplicationShutdown();
    await connections.onApplicationShutdown();
    await queue.close();
    admin.disconnect();
  });

  const inMinutes = (m: number) => new Date(Date.now() + m * 60_000);

  it('holds back only far-off jobs, and none once shutdown has begun; each is in Redis when its promise settles', async () => {
    expect(producer.defers({ runAt: inMinutes(10) })).toBe(true);
    expect(producer.defers({ runAt: new Date(Date.now() + 2000) })).toBe(false);
    expect(producer.defers({ runAt: inMinutes(10), reschedule: true })).toBe(false);
    expect(producer.defers({})).toBe(false);

    const early = await producer.enqueue(JobName.EnforceLease, { leaseId: 'tsl_jobprod_early0' }, { runAt: inMinutes(10), deferrable: true });
    expect(await queue.getJob(early)).toBeDefined();

    await producer.beforeApplicationShutdown();
    expect(producer.defers({ runAt: inMinutes(10) })).toBe(false);
    const late = await producer.enqueue(JobName.EnforceLease, { leaseId: 'tsl_jobprod_late00' }, { runAt: inMinutes(10), deferrable: true });
    const job = await queue.getJob(late);
    expect(job?.opts.delay).toBeGreaterThan(9 * 60_000);
  });

  it('a Redis that stops answering fails the caller within seconds', async () => {
    // Every client paused (this test's own too) for longer than a producer command may take.
    await admin.call('CLIENT', 'PAUSE', '8000', 'ALL');
    const started = Date.now();
    const outcome = await producer.enqueue(JobName.EnforceLease, { leaseId: 'tsl_jobprod_pause0' }, {}).then(
      () => 'added',
      (err: Error) => err.message,
    );
    expect(outcome).toMatch(/timed out/i);
    // It gave up before Redis answered again.
    expect(Date.now() - started).toBeLessThan(7500);
    await admin.call('CLIENT', 'UNPAUSE');
  });
});
