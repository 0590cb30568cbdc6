/**
 * Issue's CREATE USER + GRANTs, group-committed: the statements of the issues arriving together go in
 * one multi-statement query, on a small pool of its own (the plugin's main pool never runs several
 * statements in one query). MySQL DDL is not transactional and stops at the first failing statement,
 * so a failed batch drops every account it names, and then each issue is done alone (with its own
 * undo), so one lease's failure never fails its neighbours.
 */
import mysql, { Pool, PoolConnection, PoolOptions } from 'mysql2/promise';
import { GroupCommit, PluginError } from '../contract';

export interface NewAccount {
  /** 'user'@'host', quoted. */
  account: string;
  password: string;
  statements: string[];
}

export class AccountCreates {
  readonly pool: Pool;
  private readonly batches: GroupCommit<NewAccount, void>;

  constructor(
    options: PoolOptions,
    /** One issue's statements on the main pool, undone by hand when one fails. */
    alone: (one: NewAccount) => Promise<void>,
    private readonly translate: (step: string, err: unknown, secrets: string[]) => PluginError,
  ) {
    this.pool = mysql.createPool({ ...options, connectionLimit: 2, multipleStatements: true });
    this.pool.on('connection', (conn) => conn.on('error', () => undefined));
    this.batches = new GroupCommit<NewAccount, void>(
      async (batch) => {
        await this.createMany(batch);
        return batch.map(() => undefined);
      },
      { maxBatch: 32, inFlight: 2, alone },
    );
  }

  submit(one: NewAccount): Promise<void> {
    return this.batches.submit(one);
  }

  close(): Promise<void> {
    return this.pool.end();
  }

  private async createMany(batch: NewAccount[]): Promise<void> {
    const secrets = batch.map((b) => b.password);
    let conn: PoolConnection;
    try {
      conn = await this.pool.getConnection();
    } catch (err) {
      throw this.translate('create', err, secrets);
    }
    try {
      const statements = batch.flatMap((b) => b.statements);
      const [results] = await conn.query(statements.join(';\n'));
      // One result per statement, or the text did not split where it was joined: treat it as failed.
      if (!Array.isArray(results) || results.length !== statements.length) throw new Error(`a batch of ${statements.length} statements gave ${Array.isArray(results) ? results.length : 1} results`);
      conn.release();
    } catch (err) {
      // The statements before the failing one took effect: undo them all before each is tried alone.
      await conn.query(`DROP USER IF EXISTS ${batch.map((b) => b.account).join(', ')}`).then(() => conn.release(), () => conn.destroy());
      throw this.translate('create', err, secrets);
    }
  }
}
