import { Inject, Injectable, OnModuleInit } from '@nestjs/common';
import { CONFIG } from '../config/config.module';
import { TesseraConfig } from '../config/config.loader';
import { JobProducer } from '../jobs/job.producer';
import { QueueName } from '../jobs/jobs';
import { LeaseRepository } from '../leases/lease.repository';
import { StaticRepository } from '../statics/static.repository';
import { Metrics } from './metrics';
import { ScrapeCache } from './scrape-cache';

/** Scrapes within this long of a read share it: at most one grouped query per source per interval. */
export const SCRAPE_CACHE_MS = 5_000;
/** A read that takes longer (PostgreSQL or Redis down) is given up: its gauges are absent for that scrape. */
export const SCRAPE_TIMEOUT_MS = 2_000;

/**
 * Gives the scrape-time gauges (tessera_leases, tessera_static_secrets,
 * tessera_static_last_rotation_timestamp_seconds, tessera_queue_jobs) their sources: one grouped
 * query through each repository and BullMQ's job counts through the job producer, each cached.
 */
@Injectable()
export class MetricsGauges implements OnModuleInit {
  constructor(
    @Inject(CONFIG) private readonly config: TesseraConfig,
    private readonly metrics: Metrics,
    private readonly leases: LeaseRepository,
    private readonly statics: StaticRepository,
    private readonly jobs: JobProducer,
  ) {}

  onModuleInit(): void {
    const cached = <T>(read: () => Promise<T>) => {
      const cache = new ScrapeCache(read, SCRAPE_CACHE_MS, SCRAPE_TIMEOUT_MS);
      return () => cache.get();
    };
    this.metrics.useSources({
      leases: cached(() => this.leases.countLive()),
      statics: cached(() => this.statics.list()),
      queues: cached(() => this.jobs.counts()),
      known: {
        roles: [...this.config.roles.values()].map((r) => ({ role: r.name, plugin: r.plugin })),
        statics: Object.keys(this.config.static_secrets),
        queues: Object.values(QueueName),
      },
    });
  }
}
