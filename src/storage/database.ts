import { Pool, PoolClient, QueryResultRow } from 'pg';

/** Anything that can run a query: the pool, or a client inside a transaction. */
export interface Queryable {
  query<R extends QueryResultRow = any>(text: string, values?: unknown[]): Promise<{ rows: R[]; rowCount: number | null }>;
}

/** The state database: PostgreSQL is the source of truth for leases and audit. */
export class Database implements Queryable {
  /** Called by Nest at shutdown. */
  onApplicationShutdown(): Promise<void> {
    return this.close();
  }

  readonly pool: Pool;

  constructor(url: string, max: number) {
    this.pool = new Pool({ connectionString: url, max, application_name: 'tessera', connectionTimeoutMillis: 5000 });
    this.pool.on('error', () => undefined);
  }

  query<R extends QueryResultRow = any>(text: string, values?: unknown[]) {
    return this.pool.query<R>(text, values);
  }

  /** A transaction; `snapshot` makes it a read-only one that sees a single consistent state. */
  async tx<T>(fn: (client: PoolClient) => Promise<T>, opts: { snapshot?: boolean } = {}): Promise<T> {
    const client = await this.pool.connect();
    try {
      await client.query(opts.snapshot ? 'BEGIN ISOLATION LEVEL REPEATABLE READ READ ONLY' : 'BEGIN');
      const result = await fn(client);
      await client.query('COMMIT');
      return result;
    } catch (err) {
      await client.query('ROLLBACK').catch(() => undefined);
      throw err;
    } finally {
      client.release();
    }
  }

  async close(): Promise<void> {
    await this.pool.end();
  }
}
