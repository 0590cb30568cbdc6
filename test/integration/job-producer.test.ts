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

  it('holds back only far-off jobs; each is in Redis when its promise settles', async () => {
    expect(producer.defers({ runAt: inMinutes(10) })).toBe(true);
    expect(producer.defers({ runAt: new Date(Date.now() + 2000) })).toBe(false);
    expect(producer.defers({ runAt: inMinutes(10), reschedule: true })).toBe(false);
    expect(producer.defers({})).toBe(false);

    const early = await producer.enqueue(JobName.EnforceLease, { leaseId: 'tsl_jobprod_early0' }, { runAt: inMinutes(10), deferrable: true });
    expect(await queue.getJob(early)).toBeDefined();

  });

  it('a Redis that stops answering fails the caller within seconds, and the next command gets a new connection', async () => {
    // Writes paused (scripts included) for longer than a producer command may take.
    await admin.call('CLIENT', 'PAUSE', '8000', 'WRITE');
    const started = Date.now();
    const outcome = await producer.enqueue(JobName.EnforceLease, { leaseId: 'tsl_jobprod_pause0' }, {}).then(
      () => 'added',
      (err: Error) => err.message,
    );
    const waited = Date.now() - started;
    await admin.call('CLIENT', 'UNPAUSE');
    expect(outcome).toMatch(/timed out/i);
    // It gave up before Redis answered again.
    expect(waited).toBeLessThan(7500);
    const next = await eventually(() => producer.enqueue(JobName.EnforceLease, { leaseId: 'tsl_jobprod_after' }, {}).catch(() => undefined), 5000, 50);
    expect(await queue.getJob(next!)).toBeDefined();
  });

  it('holds back at most 10,000 jobs: while that many wait for Redis, callers wait for their own', async () => {
    await admin.call('CLIENT', 'PAUSE', '8000', 'WRITE');
    const held = Array.from({ length: 10_000 }, (_, i) =>
      producer.enqueue(JobName.EnforceLease, { leaseId: `tsl_jobprod_c${i}` }, { runAt: inMinutes(10), deferrable: true }).then(() => true, () => false),
    );
    // The flush has taken them from the waiting list and is stuck in Redis: they still count.
    await new Promise((r) => setTimeout(r, 100));
    const whileStuck = producer.defers({ runAt: inMinutes(10) });
    await admin.call('CLIENT', 'UNPAUSE');
    expect(whileStuck).toBe(false);
    expect((await Promise.all(held)).every(Boolean)).toBe(true);
    expect(producer.defers({ runAt: inMinutes(10) })).toBe(true);
  });

  it('holds none back once shutdown has begun', async () => {
    await producer.beforeApplicationShutdown();
    expect(producer.defers({ runAt: inMinutes(10) })).toBe(false);
    const late = await producer.enqueue(JobName.EnforceLease, { leaseId: 'tsl_jobprod_late00' }, { runAt: inMinutes(10) });
    const job = await queue.getJob(late);
    expect(job?.opts.delay).toBeGreaterThan(9 * 60_000);
  });
});
