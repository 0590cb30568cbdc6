import { Inject, Injectable, Logger } from '@nestjs/common';
import { LateLogins } from '../../plugins/contract';
import { AuditLog } from '../audit/audit.log';
import { PluginHost } from '../plugin-host/plugin-host';
import { Database } from '../storage/database';

/** An account whose sessions were ended when its password was replaced, and what the target said of late logins. */
export interface EndedSessions {
  /** The static secret. */
  name: string;
  connection: string;
  account: string;
  late: LateLogins | undefined;
}

interface Sweep {
  id: string;
  name: string;
  connection: string;
  account: string;
  before: string;
  /** Past its until_at: this is its last sweep. */
  last: boolean;
}

/** Sweeps taken per tick; the rest wait for the next. */
const SWEEPS_PER_TICK = 200;
/**
 * How long the sweeps go on: at least PostgreSQL's largest authentication_timeout (600 s; a reload can
 * lower the setting after a login began, so the window a target reports can be short), and logins
 * that finished their exchange but wait for a lock before their session is listed.
 */
const SWEEP_FOR_MS = 600_000 + 30_000;

/**
 * The later sweeps of a replaced password's sessions. Ending an account's sessions when its password
 * changes is not enough where a login begun before the change can finish after it (see LateLogins):
 * a client holding the old password could start logins ahead of an emergency rotation and finish one
 * after the sweep. Each such account is recorded in the state database as soon as the target answers;
 * once the target's window has passed, and at every sweep after that until SWEEP_FOR_MS, each of its
 * sessions that started before the first sweep is ended. Sessions opened since (with the new password)
 * are never touched, so sweeping again is safe.
 *
 * A record is written after the target changed the password, so a broker that stops in between
 * leaves none: the rotation did not reach its promotion then, and the one that runs again (an
 * exposure stays until contained) replaces the password again and records a later cutoff, which covers
 * the earlier change's late logins too.
 */
@Injectable()
export class LateLoginSweeps {
  private readonly log = new Logger(LateLoginSweeps.name);

  constructor(
    @Inject(Database) private readonly db: Pick<Database, 'query' | 'tx'>,
    @Inject(PluginHost) private readonly plugins: Pick<PluginHost, 'for' | 'connectionNames'>,
    @Inject(AuditLog) private readonly audit: Pick<AuditLog, 'appendMany'>,
  ) {}

  /** Records the sweeps the target asked for (those with `late`), due when its window has passed. */
  async record(ended: EndedSessions[]): Promise<void> {
    const due = ended.filter((e): e is EndedSessions & { late: LateLogins } => e.late !== undefined);
    if (!due.length) return;
    await this.db.query(
      `INSERT INTO late_login_sweeps (name, connection, account, before, due_at, until_at)
       SELECT n, c, a, b, now() + w * interval '1 millisecond', now() + greatest(w, ${SWEEP_FOR_MS}) * interval '1 millisecond'
       FROM unnest($1::text[], $2::text[], $3::text[], $4::text[], $5::int[]) AS t(n, c, a, b, w)`,
      [due.map((e) => e.name), due.map((e) => e.connection), due.map((e) => e.account), due.map((e) => e.late.before), due.map((e) => e.late.withinMs)],
    );
  }

  /**
   * Runs the sweeps that are due. Each is claimed for a minute first (replicas ticking together take
   * different ones; one whose target fails is tried again after that), then due again at the next
   * tick, or removed once past its until_at. The target's part of all of them is asked at once (a
   * plugin answers sweeps asked together in one query, and makes those of one account once), and the
   * records of those made are written in one transaction; sessions ended are audited.
   */
  async sweepDue(): Promise<void> {
    const { rows } = await this.db.query<Sweep>(
      `UPDATE late_login_sweeps SET due_at = now() + interval '1 minute'
       WHERE id IN (SELECT id FROM late_login_sweeps WHERE due_at <= now() ORDER BY due_at LIMIT ${SWEEPS_PER_TICK} FOR UPDATE SKIP LOCKED)
       RETURNING id, name, connection, account, before, until_at <= now() AS last`,
    );
    const outcomes = await Promise.all(rows.map((sweep) => this.sweep(sweep)));
    const failed = outcomes.filter((o): o is { sweep: Sweep; error: Error } => 'error' in o);
    for (const { sweep, error } of failed) {
      const message = `ending late sessions of ${sweep.account} (${sweep.name})`;
      if (sweep.last) this.log.error(`${message}, given up after ${SWEEP_FOR_MS / 60_000} minutes of trying: ${error.message}`);
      else this.log.warn(`${message}, tried again in a minute: ${error.message}`);
    }
    const given = failed.filter((o) => o.sweep.last).map((o) => o.sweep.id);
    if (given.length) await this.db.query('DELETE FROM late_login_sweeps WHERE id = ANY($1::bigint[])', [given]).catch(() => undefined);
    const swept = outcomes.filter((o): o is { sweep: Sweep; ended: number } => 'ended' in o);
    const ended = swept.filter((o) => o.ended > 0);
    for (const { sweep, ended: n } of ended) {
      this.log.warn(`ended ${n} session(s) of ${sweep.account} (${sweep.name}) opened by a login begun before its password was replaced`);
    }
    if (!swept.length) return;
    const [last, again] = [swept.filter((o) => o.sweep.last), swept.filter((o) => !o.sweep.last)].map((os) => os.map((o) => o.sweep.id));
    await this.db
      .tx(async (tx) => {
        if (last.length) await tx.query('DELETE FROM late_login_sweeps WHERE id = ANY($1::bigint[])', [last]);
        if (again.length) await tx.query('UPDATE late_login_sweeps SET due_at = now() WHERE id = ANY($1::bigint[])', [again]);
        if (ended.length) {
          await this.audit.appendMany(
            ended.map(({ sweep, ended: n }) => ({ type: 'static.late_sessions_ended' as const, actor: null, detail: { name: sweep.name, account: sweep.account, sessions: n } })),
            tx,
          );
        }
      })
      .catch((err: Error) => {
        // The sessions are ended; their sweeps stay claimed and run again in a minute (finding none).
        if (ended.length) this.log.error(`the audit events of ${ended.length} late-session sweep(s) that ended sessions (logged above) were not written: ${err.message}`);
        throw err;
      });
  }

  /** The target's part of one sweep: how many sessions it ended, or why it could not. */
  private async sweep(sweep: Sweep): Promise<{ sweep: Sweep; ended: number } | { sweep: Sweep; error: Error }> {
    try {
      // A connection not configured here (a replica with an older config) is left to the others.
      if (!this.plugins.connectionNames().includes(sweep.connection)) throw new Error(`connection ${sweep.connection} is not configured here`);
      const plugin = this.plugins.for(sweep.connection);
      const ended = plugin.endSessionsStartedBefore ? (await plugin.endSessionsStartedBefore({ account: sweep.account, before: sweep.before })).ended : 0;
      return { sweep, ended };
    } catch (err) {
      return { sweep, error: err as Error };
    }
  }
}
