import { Inject, Injectable } from '@nestjs/common';
import { SecretBox } from '../crypto/secret-box';
import { Database, Queryable } from '../storage/database';
import { LOCK_POOL, LockPool } from '../storage/storage.providers';
import { SealedVersion } from './static-secrets';
import { STEP_UPDATE, SealedRow, insertPendings, promoteVersions, startRotations, stepValues, updatePendings } from './static.sql';

export type StaticStatus = 'unowned' | 'active' | 'rotation_failed';
export type RotationStatus = 'queued' | 'running' | 'succeeded' | 'failed';

export interface StaticRow {
  name: string;
  connection: string;
  status: StaticStatus;
  current_version: number | null;
  rotated_at: Date | null;
  next_rotation_at: Date | null;
  last_error: string | null;
  /** Set while the secret is reported exposed and its earlier credentials may still work. */
  exposed_at: Date | null;
}

export interface VersionRow {
  name: string;
  version: number;
  account: string;
  key_id: string;
  sealed: Buffer;
  handle: string | null;
  state: 'pending' | 'current' | 'previous' | 'retired';
  created_at: Date;
  promoted_at: Date | null;
  retire_after: Date | null;
}

export interface RotationRow {
  id: string;
  name: string;
  target_version: number;
  trigger: string;
  reason: string | null;
  requested_by: string | null;
  status: RotationStatus;
  steps: { step: string; at: string; error?: string }[];
  error: string | null;
  created_at: Date;
  finished_at: Date | null;
}

/** Binds a sealed version to its row: a ciphertext copied into another secret or version does not open. */
const versionAad = (name: string, version: number) => `static:${name}:v${version}`;

/**
 * All SQL about static secrets, their versions and rotations. A version's content is sealed here on
 * the way in and opened here on the way out, bound to its secret's name and version.
 */
@Injectable()
export class StaticRepository {
  constructor(
    @Inject(Database) private readonly db: Database,
    @Inject(SecretBox) private readonly box: SecretBox,
    /** Rotation locks hold a session for a whole rotation: storage's lock pool, never the API's. */
    @Inject(LOCK_POOL) private readonly locks: LockPool,
  ) {}

  /** Registers configured secrets; returns the names that were new. */
  async register(secrets: { name: string; connection: string }[]): Promise<string[]> {
    if (!secrets.length) return [];
    const { rows } = await this.db.query<{ name: string }>(
      `INSERT INTO static_secrets (name, connection)
       SELECT * FROM unnest($1::text[], $2::text[]) ON CONFLICT (name) DO NOTHING RETURNING name`,
      [secrets.map((s) => s.name), secrets.map((s) => s.connection)],
    );
    return rows.map((r) => r.name);
  }

  /**
   * Runs `fn` holding the secret's lock (a session advisory lock: a crashed holder releases it with
   * its connection). Undefined, without running `fn`, when another process holds it.
   */
  async withLock<T>(name: string, fn: () => Promise<T>): Promise<T | undefined> {
    const client = await this.locks.connect();
    // A session whose lock or unlock failed is closed, not pooled: closing it releases what it holds.
    let broken = true;
    try {
      const { rows } = await client.query<{ ok: boolean }>(`SELECT pg_try_advisory_lock(hashtext('tessera:static:' || $1)) AS ok`, [name]);
      broken = false;
      if (!rows[0].ok) return undefined;
      broken = true;
      try {
        return await fn();
      } finally {
        await client.query(`SELECT pg_advisory_unlock(hashtext('tessera:static:' || $1))`, [name]);
        broken = false;
      }
    } finally {
      client.release(broken);
    }
  }

  async get(name: string, q: Queryable = this.db): Promise<StaticRow | undefined> {
    const { rows } = await q.query<StaticRow>(
      'SELECT name, connection, status, current_version, rotated_at, next_rotation_at, last_error, exposed_at FROM static_secrets WHERE name = $1',
      [name],
    );
    return rows[0];
  }

  async getMany(names: string[]): Promise<StaticRow[]> {
    const { rows } = await this.db.query<StaticRow>(
      'SELECT name, connection, status, current_version, rotated_at, next_rotation_at, last_error, exposed_at FROM static_secrets WHERE name = ANY($1::text[])',
      [names],
    );
    return rows;
  }

  /**
   * A rotation to `target` starts: its `started` step is recorded on every request waiting for that
   * version, and the secret's current and pending versions are read, in one statement. `trigger`: what
   * the earliest of those requests was triggered by.
   */
  async start(name: string, target: number): Promise<{ current?: VersionRow; pending?: VersionRow; trigger?: string }> {
    return (await startRotations(this.db, [{ name, target }])).get(name) ?? {};
  }

  async version(name: string, state: 'pending' | 'current'): Promise<VersionRow | undefined> {
    const { rows } = await this.db.query<VersionRow>('SELECT * FROM static_versions WHERE name = $1 AND state = $2', [name, state]);
    return rows[0];
  }

  /**
   * Writes the intent of a rotation, sealed, and returns it, recording `step` on the rotation requests
   * for that version in the same statement. Undefined (and no step) when another rotation of the
   * secret is already in flight (a version pending, or this version written already).
   */
  async insertPending(v: { name: string; version: number; account: string; content: SealedVersion; handle?: string }, step?: string): Promise<VersionRow | undefined> {
    const [row] = await insertPendings(this.db, [{ ...this.sealedRow(v.name, v.version, v.content), account: v.account, handle: v.handle }], step);
    return row;
  }

  /**
   * Replaces a pending version's sealed content (and records its handle on the target), recording
   * `step` on the rotation requests for that version in the same statement.
   */
  async updatePending(name: string, version: number, content: SealedVersion, handle: string | undefined, step?: string): Promise<void> {
    await updatePendings(this.db, [{ ...this.sealedRow(name, version, content), handle }], step);
  }

  /** What a version holds (its password, credentials, how to verify them). */
  open(v: Pick<VersionRow, 'name' | 'version' | 'key_id' | 'sealed'>): SealedVersion {
    return JSON.parse(this.box.open({ keyId: v.key_id, blob: v.sealed }, versionAad(v.name, v.version))) as SealedVersion;
  }

  /** A version's row with its content sealed, bound to its secret and version. */
  sealedRow(name: string, version: number, content: SealedVersion): SealedRow {
    const sealed = this.box.seal(JSON.stringify(content), versionAad(name, version));
    return { name, version, keyId: sealed.keyId, blob: sealed.blob };
  }

  async deletePending(name: string, version: number): Promise<void> {
    await this.db.query(`DELETE FROM static_versions WHERE name = $1 AND version = $2 AND state = 'pending'`, [name, version]);
  }

  /**
   * The pending version becomes current; the current one stays usable for `grace` as previous. With
   * `finish: false` (an exposed secret) the rotation requests stay open until `contained`.
   */
  async promote(name: string, version: number, graceSeconds: number, nextAt: Date | null, q: Queryable, opts: { finish: boolean } = { finish: true }): Promise<void> {
    const promoted = await promoteVersions(q, [{ name, version, grace: graceSeconds, nextAt, finish: opts.finish }]);
    if (!promoted.has(name)) throw new Error(`static secret ${name}: version ${version} is no longer pending`);
  }

  /**
   * Reported exposed: every rotation until `contained` destroys all earlier credentials. The time is
   * the latest report's, so a report during a containment is not cleared by it.
   */
  async markExposed(names: string[]): Promise<void> {
    // Rows locked in name order, as every statement that locks several secrets' rows does (a batch's
    // promotion and containment): two of them never wait for each other in a cycle.
    await this.db.query(
      `UPDATE static_secrets s SET exposed_at = date_trunc('milliseconds', clock_timestamp()), updated_at = now()
       FROM (SELECT name FROM static_secrets WHERE name = ANY($1::text[]) ORDER BY name FOR NO KEY UPDATE) l WHERE s.name = l.name`,
      [names],
    );
  }

  /** The secret's exposure, read under its row lock (in a transaction). */
  async exposure(name: string, q: Queryable): Promise<Date | null> {
    const { rows } = await q.query<{ exposed_at: Date | null }>('SELECT exposed_at FROM static_secrets WHERE name = $1 FOR NO KEY UPDATE', [name]);
    return rows[0]?.exposed_at ?? null;
  }

  /** rotation_failed, retried by the sweeper after `retryAfterSeconds` (not at every tick). */
  async markFailed(name: string, error: string, retryAfterSeconds: number, q: Queryable = this.db): Promise<void> {
    await q.query(
      `UPDATE static_secrets SET status = 'rotation_failed', last_error = $2, next_rotation_at = now() + make_interval(secs => $3), updated_at = now() WHERE name = $1`,
      [name, error, retryAfterSeconds],
    );
  }

  /**
   * Secrets the sweeper must act on: not owned yet, due (on cadence, or for a retry after a failure),
   * exposed for over a minute, or with a rotation intent older than a minute whose job was lost
   * (Redis wiped, a crash): resumed.
   */
  async due(limit: number): Promise<{ name: string; status: StaticStatus; current_version: number | null; exposed: boolean }[]> {
    const { rows } = await this.db.query(
      `SELECT s.name, s.status, s.current_version, s.exposed_at IS NOT NULL AS exposed FROM static_secrets s
       WHERE s.status = 'unowned' OR s.next_rotation_at <= now()
          OR (s.exposed_at < now() - interval '1 minute' AND s.status <> 'rotation_failed')
          OR EXISTS (SELECT 1 FROM static_versions v WHERE v.name = s.name AND v.state = 'pending' AND v.created_at < now() - interval '1 minute')
       ORDER BY s.next_rotation_at NULLS FIRST LIMIT $1`,
      [limit],
    );
    return rows;
  }

  async toRetire(): Promise<VersionRow[]> {
    const { rows } = await this.db.query<VersionRow>(`SELECT * FROM static_versions WHERE state = 'previous' AND retire_after <= now() LIMIT 500`);
    return rows;
  }

  async markRetired(name: string, version: number): Promise<void> {
    await this.db.query(`UPDATE static_versions SET state = 'retired' WHERE name = $1 AND version = $2 AND state = 'previous'`, [name, version]);
  }

  /** Rotation requests, queued: one statement however many there are. */
  async createRotations(rs: { id: string; name: string; target: number; trigger: string; reason?: string; requestedBy?: string }[]): Promise<void> {
    if (!rs.length) return;
    await this.db.query(
      `INSERT INTO rotations (id, name, target_version, trigger, reason, requested_by, status)
       SELECT id, name, target_version, trigger, reason, requested_by, 'queued' FROM unnest($1::text[], $2::text[], $3::int[], $4::text[], $5::text[], $6::text[])
         AS r(id, name, target_version, trigger, reason, requested_by)`,
      [rs.map((r) => r.id), rs.map((r) => r.name), rs.map((r) => r.target), rs.map((r) => r.trigger), rs.map((r) => r.reason ?? null), rs.map((r) => r.requestedBy ?? null)],
    );
  }

  /** What triggered the rotation to this version: its first request's trigger (for the rotations metric). */
  async rotationTrigger(name: string, target: number): Promise<string | undefined> {
    const { rows } = await this.db.query<{ trigger: string }>(
      'SELECT trigger FROM rotations WHERE name = $1 AND target_version = $2 ORDER BY created_at LIMIT 1',
      [name, target],
    );
    return rows[0]?.trigger;
  }

  /** A rotation record for the sweeper's own requests, unless one is already waiting for that version. */
  async ensureRotation(name: string, target: number, trigger: string, id: string): Promise<void> {
    await this.db.query(
      `INSERT INTO rotations (id, name, target_version, trigger, status)
       SELECT $1, $2, $3, $4, 'queued' WHERE NOT EXISTS (
         SELECT 1 FROM rotations WHERE name = $2 AND target_version = $3 AND status IN ('queued','running'))`,
      [id, name, target, trigger],
    );
  }

  /** Records a step on every rotation request waiting for this version. */
  async step(name: string, target: number, step: string, status: RotationStatus, error?: string, q: Queryable = this.db): Promise<void> {
    await q.query(STEP_UPDATE, stepValues(name, target, step, status, error));
  }

  async rotation(id: string): Promise<RotationRow | undefined> {
    const { rows } = await this.db.query<RotationRow>('SELECT * FROM rotations WHERE id = $1', [id]);
    return rows[0];
  }

  async history(name: string): Promise<{ versions: Omit<VersionRow, 'sealed' | 'key_id'>[]; rotations: RotationRow[] }> {
    const { rows: versions } = await this.db.query(
      `SELECT name, version, account, handle, state, created_at, promoted_at, retire_after FROM static_versions WHERE name = $1 ORDER BY version DESC LIMIT 20`,
      [name],
    );
    const { rows: rotations } = await this.db.query<RotationRow>(`SELECT * FROM rotations WHERE name = $1 ORDER BY created_at DESC LIMIT 20`, [name]);
    return { versions, rotations };
  }

  async list(): Promise<StaticRow[]> {
    const { rows } = await this.db.query<StaticRow>(
      'SELECT name, connection, status, current_version, rotated_at, next_rotation_at, last_error, exposed_at FROM static_secrets ORDER BY name',
    );
    return rows;
  }
}
