/** Statements about rotation requests that several of StaticRepository's statements embed. */
import type { RotationStatus } from './static.repository';

/**
 * Records a step on every rotation request waiting for a version: $1 name, $2 target version, $3
 * status, $4 the step entry (a one-element JSON array), $5 the error. Other statements embed it (as a
 * CTE, with conditions appended) to record a step in the same statement as the change it records.
 */
export const STEP_UPDATE = `UPDATE rotations SET steps = steps || $4::jsonb, status = $3, error = COALESCE($5, error),
              finished_at = CASE WHEN $3 IN ('succeeded','failed') THEN now() ELSE finished_at END
       WHERE name = $1 AND target_version = $2 AND status IN ('queued','running')`;

export function stepValues(name: string, target: number, step: string, status: RotationStatus, error?: string): unknown[] {
  const entry = { step, at: new Date().toISOString(), ...(error && { error }) };
  return [name, target, status, JSON.stringify([entry]), error ?? null];
}

/**
 * Rotation requests up to a version succeed ($1 name, $2 version); exposure requests ($5 true) only
 * once contained. Embedded with `$4` (whether to finish at all) appended by its users.
 */
export const FINISH_ROTATIONS = `UPDATE rotations SET status = 'succeeded', finished_at = now()
       WHERE name = $1 AND target_version <= $2 AND status IN ('queued','running') AND ($5 OR trigger NOT IN ('emergency','event'))`;
