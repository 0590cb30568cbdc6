import { Inject, Injectable } from '@nestjs/common';
import { Database, Queryable } from '../storage/database';
import { LOCK_POOL, LockPool } from '../storage/storage.providers';
import { SealedVersion } from './static-secrets';
import { StaticRepository, VersionRow } from './static.repository';
import { BatchItem, STEPS, insertPendings, promoteVersions, startRotations, stepEntry, updatePendings } from './static.sql';

export type { BatchItem } from './static.sql';

/**
 * The statements of a batch of rotations (an emergency on a whole connection): the same rows and steps
 * StaticRepository writes for one rotation, one statement for the whole batch. Only the path on which
 * nothing goes wrong is batched; a secret that needs anything else is handed back to its own job.
 * Rows of `static_secrets` are locked in name order (exposures), as markExposed locks them; rows of
 * `static_versions` and `rotations` are written in whatever order a join gives, which is safe because
 * every writer of a secret's versions and steps holds its rotation lock (withLocks, withLock).
 */
@Injectable()
export class RotationBatchRepository {
  constructor(
    @Inject(Database) private readonly db: Database,
    private readonly statics: StaticRepository,
    @Inject(LOCK_POOL) private readonly locks: LockPool,
  ) {}

  /**
   * Takes the rotation lock (withLock's) of every secret it can, on one session held for `fn`, and
   * releases them after. `fn` gets the names locked; the others are someone else's right now.
   */
  async withLocks<T>(names: string[], fn: (locked: string[]) => Promise<T>): Promise<T> {
    const client = await this.locks.connect();
    // A session whose unlock failed is closed, not pooled: closing it is what releases its locks.
    let broken = true;
    try {
      const { rows } = await client.query<{ name: string }>(
        `SELECT name FROM unnest($1::text[]) AS name WHERE pg_try_advisory_lock(hashtext('tessera:static:' || name))`,
        [names],
      );
      const locked = rows.map((r) => r.name);
      try {
        return await fn(locked);
      } finally {
        if (locked.length) await client.query(`SELECT pg_advisory_unlock(hashtext('tessera:static:' || name)) FROM unnest($1::text[]) AS name`, [locked]);
        broken = false;
      }
    } finally {
      client.release(broken);
    }
  }

  /** StaticRepository.start for each: the `started` step, and each secret's current and pending versions. */
  start(items: BatchItem[]): ReturnType<typeof startRotations> {
    return startRotations(this.db, items);
  }

  /** StaticRepository.insertPending for each, with its `intent` step; returns the versions written. */
  insertPending(vs: { name: string; version: number; account: string; content: SealedVersion }[]): Promise<VersionRow[]> {
    return insertPendings(
      this.db,
      vs.map((v) => ({ ...this.statics.sealedRow(v.name, v.version, v.content), account: v.account })),
      'intent',
    );
  }

  /** StaticRepository.updatePending for each (what the target returned, sealed), with its `set` step. */
  updatePending(vs: { name: string; version: number; content: SealedVersion }[]): Promise<Map<string, VersionRow>> {
    return updatePendings(
      this.db,
      vs.map((v) => this.statics.sealedRow(v.name, v.version, v.content)),
      'set',
    );
  }

  /**
   * Each secret's exposure, read under its row lock (in `tx`), the rows locked in name order like
   * markExposed's. NO KEY: a request's insert into `rotations` (a foreign key share lock) need not wait.
   */
  async exposures(names: string[], tx: Queryable): Promise<Map<string, Date | null>> {
    const { rows } = await tx.query<{ name: string; exposed_at: Date | null }>(
      'SELECT name, exposed_at FROM static_secrets WHERE name = ANY($1::text[]) ORDER BY name FOR NO KEY UPDATE',
      [names],
    );
    return new Map(rows.map((r) => [r.name, r.exposed_at]));
  }

  /** `step` on each item's waiting requests. */
  async step(items: BatchItem[], step: string, tx: Queryable): Promise<void> {
    await tx.query(STEPS, [items.map((i) => i.name), items.map((i) => i.target), stepEntry(step)]);
  }

  /** StaticRepository.promote for each; returns the names promoted (a version no longer pending is not). */
  promote(vs: Parameters<typeof promoteVersions>[1], tx: Queryable): Promise<Set<string>> {
    return promoteVersions(tx, vs);
  }

  /** StaticRepository.versionsBefore for each: up to `limit` versions before its current one, newest first. */
  async versionsBefore(current: { name: string; version: number }[], limit: number): Promise<Map<string, VersionRow[]>> {
    const { rows } = await this.db.query<VersionRow>(
      `SELECT v.* FROM unnest($1::text[], $2::int[]) AS u(name, version)
       CROSS JOIN LATERAL (SELECT * FROM static_versions v WHERE v.name = u.name AND v.version < u.version AND v.state IN ('previous','retired')
                           ORDER BY v.version DESC LIMIT $3) v`,
      [current.map((c) => c.name), current.map((c) => c.version), limit],
    );
    const out = new Map<string, VersionRow[]>(current.map((c) => [c.name, []]));
    for (const v of rows) out.get(v.name)!.push(v);
    return out;
  }

  /** StaticRepository.contained for each, with its `contained` step (the secrets' rows locked first, in name order). */
  async contained(vs: { name: string; version: number; exposedAt: Date }[], tx: Queryable): Promise<void> {
    await this.exposures(
      vs.map((v) => v.name),
      tx,
    );
    await this.step(vs.map((v) => ({ name: v.name, target: v.version })), 'contained', tx);
    await tx.query(
      `WITH u AS (SELECT name, version, exposed_at FROM unnest($1::text[], $2::int[], $3::timestamptz[]) AS u(name, version, exposed_at)),
       retired AS (UPDATE static_versions v SET state = 'retired' FROM u WHERE v.name = u.name AND v.state = 'previous'),
       cleared AS (UPDATE static_secrets s SET exposed_at = NULL, updated_at = now() FROM u WHERE s.name = u.name AND s.exposed_at = u.exposed_at)
       UPDATE rotations r SET status = 'succeeded', finished_at = now() FROM u
       WHERE r.name = u.name AND r.target_version <= u.version AND r.status IN ('queued','running')`,
      [vs.map((v) => v.name), vs.map((v) => v.version), vs.map((v) => v.exposedAt)],
    );
  }
}
