import { Injectable, Logger, Module } from '@nestjs/common';
import { DiscoveryModule, NestFactory } from '@nestjs/core';
import { DelayedError, Job, UnrecoverableError } from 'bullmq';
import { JobContext, OnJob, PermanentJobError, RunAgain, jobContext } from '../../src/jobs/job-handler';
import { FoundHandler, JobHandlers, JobRegistry } from '../../src/jobs/job-registry';
import { processJob } from '../../src/jobs/job-workers';
import { planJob } from '../../src/jobs/job.producer';
import { JOBS, JobName, JobPayloads, QueueName, belongsOn } from '../../src/jobs/jobs';

const config = { revoke_attempts: 5, rotation_attempts: 3 };
const NOW = Date.parse('2030-01-01T00:00:00Z');

describe('the job map and enqueue plan', () => {
  it('sends each job to its default queue with a deterministic id and its retry policy', () => {
    expect(planJob(config, JobName.EnforceLease, { leaseId: 'tsl_a' }, {}, NOW)).toEqual({
      queue: QueueName.Leases,
      name: JobName.EnforceLease,
      data: { leaseId: 'tsl_a' },
      opts: { jobId: 'revoke-tsl_a', delay: 0, attempts: 5, backoff: { type: 'exponential', delay: 1000 }, removeOnComplete: true, removeOnFail: true },
    });
    expect(planJob(config, JobName.BulkRevoke, { requestId: 'r1', leaseIds: [] }, {}, NOW).opts).toMatchObject({ jobId: 'bulk-r1', attempts: 5 });
    expect(planJob(config, JobName.RotateStatic, { name: 'app', targetVersion: 4 }, {}, NOW)).toMatchObject({
      queue: QueueName.Rotations,
      opts: { jobId: 'rotate-app-v4', attempts: 3 },
    });
  });

  it('a delayed lease job is its expiry job, delayed until runAt (never negative)', () => {
    const at = new Date(NOW + 90_000);
    expect(planJob(config, JobName.EnforceLease, { leaseId: 'tsl_a' }, { runAt: at }, NOW).opts).toMatchObject({ jobId: 'expiry-tsl_a', delay: 90_000 });
    expect(planJob(config, JobName.EnforceLease, { leaseId: 'tsl_a' }, { runAt: new Date(NOW - 5) }, NOW).opts.delay).toBe(0);
  });

  it('an emergency rotation goes to its own queue, under its own id', () => {
    expect(planJob(config, JobName.RotateStatic, { name: 'app', targetVersion: 4 }, { queue: QueueName.Emergency }, NOW)).toMatchObject({
      queue: QueueName.Emergency,
      opts: { jobId: 'emergency-app-v4' },
    });
  });

  it('refuses a queue the job does not go to', () => {
    expect(() => planJob(config, JobName.EnforceLease, { leaseId: 'x' }, { queue: QueueName.Emergency as never }, NOW)).toThrow('does not go to queue');
    expect(belongsOn(JobName.RotateStatic, QueueName.Leases)).toBe(false);
    expect(belongsOn('no-such-job', QueueName.Leases)).toBe(false);
    for (const name of Object.values(JobName)) for (const q of JOBS[name].queues) expect(belongsOn(name, q)).toBe(true);
  });
});

const found = (name: JobName, run: FoundHandler['run'] = async () => undefined, declaredAt = `Test.${name}`): FoundHandler => ({ name, declaredAt, run });
const all = () => Object.values(JobName).map((n) => found(n));

describe('job handlers', () => {
  it('boot fails when a job has no handler', () => {
    expect(() => new JobHandlers(all().filter((h) => h.name !== JobName.BulkRevoke))).toThrow(`no handler for job(s): ${JobName.BulkRevoke}`);
  });

  it('boot fails when a job has two handlers, naming both', () => {
    expect(() => new JobHandlers([...all(), found(JobName.EnforceLease, undefined, 'Other.enforce')])).toThrow(
      `job ${JobName.EnforceLease} has two handlers: Test.${JobName.EnforceLease} and Other.enforce`,
    );
  });

  it('the context says which attempt this is and whether it is the last', () => {
    expect(jobContext(1, 3)).toMatchObject({ attempt: 1, lastAttempt: false });
    expect(jobContext(3, 3)).toMatchObject({ attempt: 3, lastAttempt: true });
    expect(jobContext(1, 3).runAgainAt(new Date(NOW))).toEqual(new RunAgain(new Date(NOW)));
  });
});

describe('the processor', () => {
  const fakeJob = (name: string, attemptsMade = 0) => {
    const job = { name, data: { leaseId: 'tsl_a' }, attemptsMade, opts: { attempts: 3 }, moveToDelayed: jest.fn(async () => undefined) };
    return job as typeof job & Job;
  };
  const handlers = (run: FoundHandler['run']) => new JobHandlers(all().map((h) => (h.name === JobName.EnforceLease ? found(h.name, run) : h)));

  it('hands the payload and a context to the handler', async () => {
    const seen: [unknown, JobContext][] = [];
    await processJob(handlers(async (p, ctx) => void seen.push([p, ctx])), QueueName.Leases, fakeJob(JobName.EnforceLease, 2));
    expect(seen[0][0]).toEqual({ leaseId: 'tsl_a' });
    expect(seen[0][1]).toMatchObject({ attempt: 3, lastAttempt: true });
  });

  it('a permanent error fails the job without its remaining attempts', async () => {
    const run = handlers(async () => {
      throw new PermanentJobError('the target refused');
    });
    await expect(processJob(run, QueueName.Leases, fakeJob(JobName.EnforceLease))).rejects.toEqual(new UnrecoverableError('the target refused'));
  });

  it('any other error is thrown as it is, so the queue retries', async () => {
    const down = new Error('target down');
    await expect(processJob(handlers(async () => Promise.reject(down)), QueueName.Leases, fakeJob(JobName.EnforceLease))).rejects.toBe(down);
  });

  it('a request to run again delays the job to that time', async () => {
    const job = fakeJob(JobName.EnforceLease);
    const at = new Date(NOW + 5000);
    await expect(processJob(handlers(async () => new RunAgain(at)), QueueName.Leases, job, 'lock-token')).rejects.toBeInstanceOf(DelayedError);
    expect(job.moveToDelayed).toHaveBeenCalledWith(at.getTime(), 'lock-token');
  });

  it('refuses a job found on a queue it does not belong on', async () => {
    await expect(processJob(handlers(async () => undefined), QueueName.Emergency, fakeJob(JobName.EnforceLease))).rejects.toBeInstanceOf(UnrecoverableError);
  });
});

@Injectable()
class LeaseWork {
  readonly ran: string[] = [];
  @OnJob(JobName.EnforceLease)
  async enforce({ leaseId }: JobPayloads[JobName.EnforceLease]): Promise<void> {
    this.ran.push(leaseId);
  }
  @OnJob(JobName.BulkRevoke)
  async bulk(): Promise<void> {}
}

@Injectable()
class RotationWork {
  @OnJob(JobName.RotateStatic)
  async rotate(): Promise<void> {}

  @OnJob(JobName.RotateStaticBatch)
  async rotateMany(): Promise<void> {}
}

@Injectable()
class AnotherEnforcer {
  @OnJob(JobName.EnforceLease)
  async enforce(): Promise<void> {}
}

async function discover(...providers: (new (...args: never[]) => unknown)[]) {
  @Module({ imports: [DiscoveryModule], providers: [JobRegistry, ...providers] })
  class TestModule {}
  const app = await NestFactory.createApplicationContext(TestModule, { logger: false });
  try {
    return { handlers: app.get(JobRegistry).discover(), work: app.get(LeaseWork) };
  } finally {
    await app.close();
  }
}

describe('@OnJob discovery', () => {
  beforeAll(() => Logger.overrideLogger(false));

  it('finds the handlers declared on providers and runs them', async () => {
    const { handlers, work } = await discover(LeaseWork, RotationWork);
    await handlers.run(JobName.EnforceLease, { leaseId: 'tsl_b' }, jobContext(1, 1));
    expect(work.ran).toEqual(['tsl_b']);
  });

  it('boot fails on a job without a handler', async () => {
    await expect(discover(LeaseWork)).rejects.toThrow(`no handler for job(s): ${JobName.RotateStatic}, ${JobName.RotateStaticBatch}`);
  });

  it('boot fails on a job with two handlers', async () => {
    await expect(discover(LeaseWork, RotationWork, AnotherEnforcer)).rejects.toThrow('LeaseWork.enforce and AnotherEnforcer.enforce');
  });
});
