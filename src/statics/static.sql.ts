/**
 * Statements about versions and rotation requests that StaticRepository (one secret) and
 * RotationBatchRepository (a batch of secrets) both run: each is written once, for many secrets, and a
 * rotation of one secret runs it for one.
 */
import type { Queryable } from '../storage/database';
import type { RotationStatus, VersionRow } from './static.repository';

/**
 * Records a step on every rotation request waiting for a version: $1 name, $2 target version, $3
 * status, $4 the step entry (a one-element JSON array), $5 the error.
 */
export const STEP_UPDATE = `UPDATE rotations SET steps = steps || $4::jsonb, status = $3, error = COALESCE($5, error),
              finished_at = CASE WHEN $3 IN ('succeeded','failed') THEN now() ELSE finished_at END
       WHERE name = $1 AND target_version = $2 AND status IN ('queued','running')`;

export function stepValues(name: string, target: number, step: string, status: RotationStatus, error?: string): unknown[] {
  return [name, target, status, stepEntry(step, error), error ?? null];
}

/** A step as the requests' `steps` hold it (a one-element JSON array). */
export const stepEntry = (step: string, error?: string) => JSON.stringify([{ step, at: new Date().toISOString(), ...(error && { error }) }]);

/** STEP_UPDATE's set form for a running step: `$3` on every waiting request of each (name, target) in `$1`/`$2`. */
export const STEPS = `UPDATE rotations r SET steps = r.steps || $3::jsonb, status = 'running'
       FROM unnest($1::text[], $2::int[]) AS b(name, target)
       WHERE r.name = b.name AND r.target_version = b.target AND r.status IN ('queued','running')`;

/** A rotation of a secret: the secret and the version it is brought to. */
export interface BatchItem {
  name: string;
  target: number;
}

/** A version's row as written: its content already sealed. */
export interface SealedRow {
  name: string;
  version: number;
  keyId: string;
  blob: Buffer;
  handle?: string | null;
}

/**
 * Rotations start: the `started` step on every request waiting for each (name, target), and each
 * secret's current and pending versions, in one statement. `trigger`: what the earliest of a secret's
 * started requests was triggered by.
 */
export async function startRotations(q: Queryable, items: BatchItem[]): Promise<Map<string, { current?: VersionRow; pending?: VersionRow; trigger?: string }>> {
  const { rows } = await q.query<VersionRow & { item: string; rotation_trigger: string | null }>(
    `WITH b AS (SELECT name, target FROM unnest($1::text[], $2::int[]) AS b(name, target)),
     started AS (${STEPS} RETURNING r.name, r.trigger, r.created_at)
     SELECT b.name AS item, (SELECT t.trigger FROM started t WHERE t.name = b.name ORDER BY t.created_at LIMIT 1) AS rotation_trigger, v.*
     FROM b LEFT JOIN static_versions v ON v.name = b.name AND v.state IN ('current','pending')`,
    [items.map((i) => i.name), items.map((i) => i.target), stepEntry('started')],
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

/**
 * Writes rotations' intents (pending versions), each unless another rotation of its secret is in the
 * way (a version pending, or this version written already: DO NOTHING, so a conflict records no step),
 * and with `step` records it on the requests of the versions written. Returns those versions.
 */
export async function insertPendings(q: Queryable, vs: (SealedRow & { account: string })[], step?: string): Promise<VersionRow[]> {
  const { rows } = await q.query<VersionRow>(
    `WITH inserted AS (
       INSERT INTO static_versions (name, version, account, key_id, sealed, handle, state)
       SELECT name, version, account, key_id, sealed, handle, 'pending'
       FROM unnest($1::text[], $2::int[], $3::text[], $4::bytea[], $5::text[], $6::text[]) AS v(name, version, key_id, sealed, handle, account)
       ON CONFLICT DO NOTHING RETURNING *),
     stepped AS (UPDATE rotations r SET steps = r.steps || $7::jsonb, status = 'running' FROM inserted b
       WHERE r.name = b.name AND r.target_version = b.version AND r.status IN ('queued','running') AND $8)
     SELECT * FROM inserted`,
    [...sealedColumns(vs), vs.map((v) => v.account), stepEntry(step ?? ''), step !== undefined],
  );
  return rows;
}

/**
 * Replaces pending versions' sealed content and handles, and with `step` records it on their
 * requests, in one statement. Returns the versions updated (by name).
 */
export async function updatePendings(q: Queryable, vs: SealedRow[], step?: string): Promise<Map<string, VersionRow>> {
  const { rows } = await q.query<VersionRow>(
    `WITH updated AS (
       UPDATE static_versions v SET key_id = u.key_id, sealed = u.sealed, handle = u.handle
       FROM unnest($1::text[], $2::int[], $3::text[], $4::bytea[], $5::text[]) AS u(name, version, key_id, sealed, handle)
       WHERE v.name = u.name AND v.version = u.version AND v.state = 'pending' RETURNING v.*),
     stepped AS (UPDATE rotations r SET steps = r.steps || $6::jsonb, status = 'running' FROM updated b
       WHERE r.name = b.name AND r.target_version = b.version AND r.status IN ('queued','running') AND $7)
     SELECT * FROM updated`,
    [...sealedColumns(vs), stepEntry(step ?? ''), step !== undefined],
  );
  return new Map(rows.map((r) => [r.name, r]));
}

/** name, version, key id, sealed blob and handle of each row, as unnest's arrays. */
function sealedColumns(vs: SealedRow[]): unknown[] {
  return [vs.map((v) => v.name), vs.map((v) => v.version), vs.map((v) => v.keyId), vs.map((v) => v.blob), vs.map((v) => v.handle ?? null)];
}

/**
 * Each pending version becomes current and the current one previous for its `grace` (seconds); the
 * requests up to it finish unless `finish` is false (an exposed secret: they finish once contained).
 * Returns the names promoted: a secret whose version is no longer pending is left as it was.
 */
export async function promoteVersions(q: Queryable, vs: { name: string; version: number; grace: number; nextAt: Date | null; finish: boolean }[]): Promise<Set<string>> {
  const names = vs.map((v) => v.name);
  // The previous versions move first, so one version per secret is current at every moment (a unique
  // index): two statements in this order.
  await q.query(
    `UPDATE static_versions v SET state = CASE v.state WHEN 'previous' THEN 'retired' ELSE 'previous' END,
            retire_after = CASE v.state WHEN 'current' THEN now() + make_interval(secs => u.grace) ELSE v.retire_after END
     FROM unnest($1::text[], $2::int[], $3::int[]) AS u(name, version, grace)
     WHERE v.name = u.name AND v.state IN ('previous','current')
       AND EXISTS (SELECT 1 FROM static_versions p WHERE p.name = u.name AND p.version = u.version AND p.state = 'pending')`,
    [names, vs.map((v) => v.version), vs.map((v) => v.grace)],
  );
  // promoted_at is when it happened (after any wait for the secret's row), not when the transaction
  // began: it is compared with exposed_at, which a report may have set while this waited.
  const { rows } = await q.query<{ name: string }>(
    `WITH u AS (SELECT name, version, next_at, finish FROM unnest($1::text[], $2::int[], $3::timestamptz[], $4::bool[]) AS u(name, version, next_at, finish)),
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
