import { Inject, Injectable } from '@nestjs/common';
import { Database, Queryable } from '../storage/database';
import { LOCK_POOL, LockPool } from '../storage/storage.providers';
import { SealedVersion } from './static-secrets';
import { StaticRepository, VersionRow } from './static.repository';

/** A rotation of a batch: the secret and the version it is brought to. */
export interface BatchItem {
  name: string;
  target: number;
}

/** The step entry every request of a batch gets (a one-element JSON array). */
const entry = (step: string) => JSON.stringify([{ step, at: new Date().toISOString() }]);

/** STEP_UPDATE's set form: `step` on every waiting request of each (name, target) in `$1`/`$2`. */
const STEPS = `UPDATE rotations r SET steps = r.steps || $3::jsonb, status = 'running'
       FROM unnest($1::text[], $2::int[]) AS b(name, target)
       WHERE r.name = b.name AND r.target_version = b.target AND r.status IN ('queued','running')`;

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
  async start(items: BatchItem[]): Promise<Map<string, { current?: VersionRow; pending?: VersionRow; trigger?: string }>> {
    const { rows } = await this.db.query<VersionRow & { item: string; rotation_trigger: string | null }>(
      `WITH b AS (SELECT * FROM unnest($1::text[], $2::int[]) AS b(name, target)),
       started AS (${STEPS} RETURNING r.name, r.trigger, r.created_at)
       SELECT b.name AS item, (SELECT t.trigger FROM started t WHERE t.name = b.name ORDER BY t.created_at LIMIT 1) AS rotation_trigger, v.*
       FROM b LEFT JOIN static_versions v ON v.name = b.name AND v.state IN ('current','pending')`,
      [items.map((i) => i.name), items.map((i) => i.target), entry('started')],
    );
    const out = new Map<string, { current?: VersionRow; pending?: VersionRow; trigger?: string }>();
    for (const { item, rotation_trigger, ...v } of rows) {
      const at = out.get(item) ?? {};
      at.trigger ??= rotation_trigger ?? undefined;
      if (v.state === 'current') at.current = v as VersionRow;
      if (v.state === 'pending') at.pending = v as VersionRow;
      out.set(item, at);
    }
    return out;
  }

  /** StaticRepository.insertPending for each, with its `intent` step; returns the versions written. */
  async insertPending(vs: { name: string; version: number; account: string; content: SealedVersion }[]): Promise<VersionRow[]> {
    const sealed = vs.map((v) => this.statics.seal(v.name, v.version, v.content));
    const { rows } = await this.db.query<VersionRow>(
      `WITH inserted AS (
         INSERT INTO static_versions (name, version, account, key_id, sealed, state)
         SELECT name, version, account, key_id, sealed, 'pending' FROM unnest($1::text[], $2::int[], $3::text[], $4::text[], $5::bytea[]) AS v(name, version, account, key_id, sealed)
         ON CONFLICT DO NOTHING RETURNING *),
       stepped AS (UPDATE rotations r SET steps = r.steps || $6::jsonb, status = 'running' FROM inserted b
         WHERE r.name = b.name AND r.target_version = b.version AND r.status IN ('queued','running'))
       SELECT * FROM inserted`,
      [vs.map((v) => v.name), vs.map((v) => v.version), vs.map((v) => v.account), sealed.map((s) => s.keyId), sealed.map((s) => s.blob), entry('intent')],
    );
    return rows;
  }

  /** StaticRepository.updatePending for each (what the target returned, sealed), with its `set` step. */
  async updatePending(vs: { name: string; version: number; content: SealedVersion }[]): Promise<Map<string, VersionRow>> {
    const sealed = vs.map((v) => this.statics.seal(v.name, v.version, v.content));
    const { rows } = await this.db.query<VersionRow>(
      `WITH updated AS (
         UPDATE static_versions v SET key_id = u.key_id, sealed = u.sealed
         FROM unnest($1::text[], $2::int[], $4::text[], $5::bytea[]) AS u(name, version, key_id, sealed)
         WHERE v.name = u.name AND v.version = u.version AND v.state = 'pending' RETURNING v.*),
       stepped AS (UPDATE rotations r SET steps = r.steps || $3::jsonb, status = 'running' FROM updated b
         WHERE r.name = b.name AND r.target_version = b.version AND r.status IN ('queued','running'))
       SELECT * FROM updated`,
      [vs.map((v) => v.name), vs.map((v) => v.version), entry('set'), sealed.map((s) => s.keyId), sealed.map((s) => s.blob)],
    );
    return new Map(rows.map((r) => [r.name, r]));
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
    await tx.query(STEPS, [items.map((i) => i.name), items.map((i) => i.target), entry(step)]);
  }

  /**
   * StaticRepository.promote for each: its pending version becomes current, the current one previous
   * for its `grace`; requests finish unless `finish` is false (exposed: they finish once contained).
   * Returns the names promoted (a version no longer pending is not).
   */
  async promote(vs: { name: string; version: number; grace: number; nextAt: Date | null; finish: boolean }[], tx: Queryable): Promise<Set<string>> {
    const names = vs.map((v) => v.name);
    // As in promote: the previous versions move first, so one version per secret is current at every
    // moment; only for secrets whose version to promote is still pending (promote fails otherwise).
    await tx.query(
      `UPDATE static_versions v SET state = CASE v.state WHEN 'previous' THEN 'retired' ELSE 'previous' END,
              retire_after = CASE v.state WHEN 'current' THEN now() + make_interval(secs => u.grace) ELSE v.retire_after END
       FROM unnest($1::text[], $2::int[], $3::int[]) AS u(name, version, grace)
       WHERE v.name = u.name AND v.state IN ('previous','current')
         AND EXISTS (SELECT 1 FROM static_versions p WHERE p.name = u.name AND p.version = u.version AND p.state = 'pending')`,
      [names, vs.map((v) => v.version), vs.map((v) => v.grace)],
    );
    const { rows } = await tx.query<{ name: string }>(
      // promoted_at as in promote: when it happened, compared with exposed_at.
      `WITH u AS (SELECT * FROM unnest($1::text[], $2::int[], $3::timestamptz[], $4::bool[]) AS u(name, version, next_at, finish)),
       promoted AS (
         UPDATE static_versions v SET state = 'current', promoted_at = clock_timestamp() FROM u
         WHERE v.name = u.name AND v.version = u.version AND v.state = 'pending' RETURNING v.name),
       secret AS (
         UPDATE static_secrets s SET current_version = u.version, status = 'active', rotated_at = now(), next_rotation_at = u.next_at, last_error = NULL, updated_at = now()
         FROM u JOIN promoted p USING (name) WHERE s.name = u.name),
       finished AS (
         UPDATE rotations r SET status = 'succeeded', finished_at = now() FROM u JOIN promoted p USING (name)
         WHERE r.name = u.name AND r.target_version <= u.version AND r.status IN ('queued','running') AND u.finish AND r.trigger NOT IN ('emergency','event'))
       SELECT name FROM promoted`,
      [names, vs.map((v) => v.version), vs.map((v) => v.nextAt), vs.map((v) => v.finish)],
    );
    return new Set(rows.map((r) => r.name));
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
      `WITH u AS (SELECT * FROM unnest($1::text[], $2::int[], $3::timestamptz[]) AS u(name, version, exposed_at)),
       retired AS (UPDATE static_versions v SET state = 'retired' FROM u WHERE v.name = u.name AND v.state = 'previous'),
       cleared AS (UPDATE static_secrets s SET exposed_at = NULL, updated_at = now() FROM u WHERE s.name = u.name AND s.exposed_at = u.exposed_at)
       UPDATE rotations r SET status = 'succeeded', finished_at = now() FROM u
       WHERE r.name = u.name AND r.target_version <= u.version AND r.status IN ('queued','running')`,
      [vs.map((v) => v.name), vs.map((v) => v.version), vs.map((v) => v.exposedAt)],
    );
  }
}
