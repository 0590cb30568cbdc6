import { SetMetadata } from '@nestjs/common';
import { JobName, JobPayloads } from './jobs';

/**
 * What a job handler sees of the queue. Handlers throw to be retried (never swallow an error), throw
 * PermanentJobError to stop retrying, and return `ctx.runAgainAt(t)` to run again later; nothing in a
 * handler touches the queue library itself.
 */
export interface JobContext {
  /** 1 on the first run. */
  readonly attempt: number;
  /** Whether a failure now is final: the queue will not run this job again. */
  readonly lastAttempt: boolean;
  /** The result to return to run this job again at `at` (not counted as an attempt). */
  runAgainAt(at: Date): RunAgain;
}

/** A handler's request to run again later; the processor delays the job. */
export class RunAgain {
  constructor(readonly at: Date) {}
}

export type JobOutcome = void | RunAgain;

export type JobHandler<N extends JobName> = (payload: JobPayloads[N], ctx: JobContext) => Promise<JobOutcome>;

/**
 * A failure that retrying cannot cure (a target that refuses, the last attempt's clean-up done): the
 * job fails at once, without its remaining attempts.
 */
export class PermanentJobError extends Error {
  constructor(message: string, options?: { cause?: unknown }) {
    super(message, options);
    this.name = 'PermanentJobError';
  }
}

export function jobContext(attempt: number, attempts: number): JobContext {
  return { attempt, lastAttempt: attempt >= attempts, runAgainAt: (at) => new RunAgain(at) };
}

export const JOB_HANDLER = Symbol('tessera:job-handler');

/**
 * Declares the method that does a job's work, beside the service it belongs to. The workers find every
 * such method at boot; boot fails when a job has no handler or more than one.
 *
 *   @OnJob(JobName.EnforceLease)
 *   async enforce(payload: JobPayloads[JobName.EnforceLease], ctx: JobContext): Promise<JobOutcome> { … }
 */
export function OnJob<N extends JobName>(name: N) {
  return <H extends JobHandler<N>>(target: object, key: string | symbol, descriptor: TypedPropertyDescriptor<H>): void => {
    SetMetadata(JOB_HANDLER, name)(target, key, descriptor);
  };
}
