import { Injectable } from '@nestjs/common';
import { DiscoveryService, MetadataScanner, Reflector } from '@nestjs/core';
import { JOB_HANDLER, JobContext, JobHandler, JobOutcome } from './job-handler';
import { JobName, JobPayloads } from './jobs';

export interface FoundHandler {
  name: JobName;
  /** Where it was declared (Class.method), for boot errors. */
  declaredAt: string;
  run: (payload: unknown, ctx: JobContext) => Promise<JobOutcome>;
}

/** One handler per job name, checked whole: a job with no handler or two is a boot error. */
export class JobHandlers {
  private readonly byName: ReadonlyMap<JobName, FoundHandler>;

  constructor(found: readonly FoundHandler[]) {
    const byName = new Map<JobName, FoundHandler>();
    const problems: string[] = [];
    for (const handler of found) {
      const other = byName.get(handler.name);
      if (other) problems.push(`job ${handler.name} has two handlers: ${other.declaredAt} and ${handler.declaredAt}`);
      else byName.set(handler.name, handler);
    }
    const missing = Object.values(JobName).filter((name) => !byName.has(name));
    if (missing.length) problems.push(`no handler for job(s): ${missing.join(', ')}`);
    if (problems.length) throw new Error(problems.join('; '));
    this.byName = byName;
  }

  run<N extends JobName>(name: N, payload: JobPayloads[N], ctx: JobContext): Promise<JobOutcome> {
    return this.byName.get(name)!.run(payload, ctx);
  }
}

/** Finds the methods marked @OnJob on every provider of the application. */
@Injectable()
export class JobRegistry {
  constructor(
    private readonly discovery: DiscoveryService,
    private readonly scanner: MetadataScanner,
    private readonly reflector: Reflector,
  ) {}

  discover(): JobHandlers {
    const found: FoundHandler[] = [];
    // An instance reachable under two tokens (an alias) is still one handler.
    const seen = new Set<object>();
    for (const wrapper of this.discovery.getProviders()) {
      const instance: unknown = wrapper.instance;
      if (!wrapper.isDependencyTreeStatic() || !instance || typeof instance !== 'object' || seen.has(instance)) continue;
      seen.add(instance);
      const prototype = Object.getPrototypeOf(instance) as object | null;
      for (const method of this.scanner.getAllMethodNames(prototype)) {
        const fn = (instance as Record<string, unknown>)[method];
        if (typeof fn !== 'function') continue;
        const name = this.reflector.get<JobName | undefined>(JOB_HANDLER, fn);
        if (!name) continue;
        const handler = (fn as JobHandler<JobName>).bind(instance);
        found.push({ name, declaredAt: `${instance.constructor.name}.${method}`, run: (payload, ctx) => handler(payload as never, ctx) });
      }
    }
    return new JobHandlers(found);
  }
}
