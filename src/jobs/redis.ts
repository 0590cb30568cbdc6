import { Inject, Injectable, OnApplicationShutdown } from '@nestjs/common';
import IORedis, { Redis, RedisOptions } from 'ioredis';
import { CONFIG } from '../config/config.module';
import { TesseraConfig } from '../config/config.loader';

/** Creates (and at shutdown closes) the Redis connections of the queues and workers. */
@Injectable()
export class RedisConnections implements OnApplicationShutdown {
  private readonly opened: Redis[] = [];
  /** What must be done with each connection before it closes (a producer's last flush). */
  private readonly drains: (() => Promise<void>)[] = [];

  constructor(@Inject(CONFIG) private readonly config: TesseraConfig) {}

  /**
   * Producers fail fast while Redis is down (PostgreSQL holds the truth and the reconciler catches up);
   * workers wait for Redis to come back, as BullMQ requires. A producer's command that gets no answer
   * fails after 5 s (a Redis that stops answering without closing the connection, a paused failover),
   * so a caller waiting for a job is not held for as long as TCP takes to give up.
   */
  open(kind: 'producer' | 'worker', drain?: () => Promise<void>): Redis {
    const options: RedisOptions =
      kind === 'producer'
        ? { maxRetriesPerRequest: 1, enableOfflineQueue: false, connectTimeout: 2000, commandTimeout: 5000 }
        : { maxRetriesPerRequest: null, connectTimeout: 2000 };
    const conn = new IORedis(this.config.queue.redis_url, { ...options, lazyConnect: false });
    conn.on('error', () => undefined); // reconnects on its own; readiness reports the outage
    this.opened.push(conn);
    if (drain) this.drains.push(drain);
    return conn;
  }

  /** Nest runs the shutdown hooks of one module together: the producers' last flushes go first. */
  async onApplicationShutdown(): Promise<void> {
    await Promise.all(this.drains.map((d) => d().catch(() => undefined)));
    await Promise.all(this.opened.map((c) => c.quit().catch(() => c.disconnect())));
  }
}
