import { Pool, PoolClient, QueryResult, QueryResultRow } from 'pg';

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

  constructor(url: string, max: number, opts: { prepared?: boolean } = {}) {
    this.pool = new Pool({ connectionString: url, max, application_name: 'tessera', connectionTimeoutMillis: 5000 });
    this.pool.on('error', () => undefined);
    if (opts.prepared ?? true) this.pool.on('connect', (client) => preparing(client, this.statements));
  }

  private readonly statements = new StatementNames();

  query<R extends QueryResultRow = any>(text: string, values?: unknown[]) {
    return this.pool.query<R>(text, values);
  }

  /** A transaction; `snapshot` makes it a read-only one that sees a single consistent state. */
  tx<T>(fn: (client: PoolClient) => Promise<T>, opts: { snapshot?: boolean } = {}): Promise<T> {
    return this.run(opts.snapshot ? 'BEGIN ISOLATION LEVEL REPEATABLE READ READ ONLY' : 'BEGIN', fn);
  }

  /**
   * A transaction whose first statement goes in the same round trip as its BEGIN: `first` is sent with
   * the simple protocol, so it takes no parameters (its values are literals the caller has checked),
   * and `fn` gets its rows.
   */
  txStartingWith<T, R extends QueryResultRow>(first: string, fn: (client: PoolClient, rows: R[]) => Promise<T>): Promise<T> {
    return this.run(`BEGIN; ${first}`, (client, results) => fn(client, (results as unknown as QueryResult<R>[])[1].rows));
  }

  private async run<T>(begin: string, fn: (client: PoolClient, results: unknown) => Promise<T>): Promise<T> {
    const client = await this.pool.connect();
    try {
      const results = await client.query(begin);
      const result = await fn(client, results);
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

/** `*` as a result list or part of one: `SELECT *`, `RETURNING *`, `, *`, `t.*` (not `count(*)`). */
const RETURNS_STAR = /(\bSELECT|\bRETURNING|,)\s+\*|\.\*/i;

/**
 * Names for the state database's parameterized statements: one per distinct text, a bounded number
 * (each connection keeps a plan for every name it has run). A text that returns `*` (`SELECT *`,
 * `RETURNING *`, `t.*`) stays unnamed: its result's columns are decided when it is prepared, and a
 * migration run by a newer replica that adds a column would make every prepared copy fail ("cached
 * plan must not change result type") until restart. (`count(*)` is fine.) A migration that changes
 * the type of a column a named statement returns does the same; migrations here only add.
 */
export class StatementNames {
  private readonly names = new Map<string, string>();

  constructor(private readonly max = 200) {}

  /** The name for `text`, or undefined when it stays unnamed (it returns `*`, or `max` texts are named already). */
  of(text: string): string | undefined {
    let name = this.names.get(text);
    if (!name && this.names.size < this.max && !RETURNS_STAR.test(text)) this.names.set(text, (name = `tessera_${this.names.size + 1}`));
    return name;
  }
}

/**
 * Makes a connection run parameterized statements as named prepared statements: each is parsed and
 * planned once per connection instead of on every call (PostgreSQL then reuses the plan, or a generic
 * one after five executions), which takes a third off the server's work for the short statements of
 * the issue, expiry and rotation paths. Every query through the pool and its transaction clients goes
 * through here; statements without parameters (BEGIN, COMMIT, DDL) stay unnamed. Off with
 * `storage.prepared_statements: false` (a pooler in transaction mode that cannot keep them).
 */
function preparing(client: PoolClient, statements: StatementNames): void {
  const query = client.query.bind(client) as (...args: unknown[]) => unknown;
  (client as unknown as { query: (...args: unknown[]) => unknown }).query = (config: unknown, values?: unknown, callback?: unknown) => {
    if (typeof config === 'string' && Array.isArray(values) && values.length) {
      const name = statements.of(config);
      if (name) return typeof callback === 'function' ? query({ name, text: config, values }, callback) : query({ name, text: config, values });
    }
    return query(config, values, callback);
  };
}
