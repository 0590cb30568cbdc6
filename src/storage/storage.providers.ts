import { Provider } from '@nestjs/common';
import { Pool, PoolClient } from 'pg';
import { CONFIG } from '../config/config.module';
import { TesseraConfig } from '../config/config.loader';
import { SecretBox } from '../crypto/secret-box';
import { Database } from './database';

/**
 * Sessions held for a whole piece of work (session advisory locks, e.g. one per rotation): their own
 * small pool, so a long rotation never takes a connection the API needs. Inject with @Inject(LOCK_POOL).
 */
export const LOCK_POOL = 'LOCK_POOL';

export interface LockPool {
  /** A session of its own; release it when the lock it holds is unlocked. */
  connect(): Promise<PoolClient>;
}

const LOCK_SESSIONS = 24;

/** The lock pool as a provider value: Nest ends it at shutdown. */
function lockPool(url: string): LockPool & { onApplicationShutdown(): Promise<void> } {
  const pool = new Pool({ connectionString: url, max: LOCK_SESSIONS, application_name: 'tessera-locks' });
  pool.on('error', () => undefined);
  return { connect: () => pool.connect(), onApplicationShutdown: () => pool.end() };
}

export const storageProviders: Provider[] = [
  { provide: Database, useFactory: (c: TesseraConfig) => new Database(c.storage.postgres_url, c.storage.pool_size, { prepared: c.storage.prepared_statements }), inject: [CONFIG] },
  { provide: SecretBox, useFactory: (c: TesseraConfig) => new SecretBox(c.encryption.key, c.encryption.previous_keys), inject: [CONFIG] },
  { provide: LOCK_POOL, useFactory: (c: TesseraConfig) => lockPool(c.storage.postgres_url), inject: [CONFIG] },
];
