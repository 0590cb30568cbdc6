import { PluginError } from '../../plugins/contract';
import { LateLoginSweeps } from '../../src/statics/late-logins';
import { RotationSweeper } from '../../src/statics/rotation.sweeper';
import { Database } from '../../src/storage/database';
import { TestBroker, startBroker } from '../support/broker';

/**
 * The sweeps due at a tick are asked of the target together (a plugin answers them in one query) and
 * recorded in one transaction; each keeps its own outcome. The broker here does not tick (its sweeps
 * would race these); the target is a stand-in that counts how the sweeps reach it.
 */
describe('late-login sweeps due together', () => {
  let broker: TestBroker;
  let db: Database;
  const events: unknown[] = [];
  const asked: { account: string; before: string }[] = [];
  let inFlight = 0;
  let mostAtOnce = 0;
  const target = {
    async endSessionsStartedBefore(req: { account: string; before: string }) {
      asked.push(req);
      mostAtOnce = Math.max(mostAtOnce, ++inFlight);
      await new Promise((r) => setImmediate(r));
      inFlight--;
      if (req.account.startsWith('hidden')) throw new PluginError(`cannot see when 1 session(s) of ${req.account} started`, true);
      return { ended: req.account.startsWith('late') ? 2 : 0 };
    },
  };
  let sweeps: LateLoginSweeps;

  beforeAll(async () => {
    broker = await startBroker('lsweeps', (doc) => {
      doc.reconcile_every = '1h';
    });
    // The broker's own ticks (one runs at start) would take these sweeps: stop them, and let a running one end.
    const own = broker.app.get(RotationSweeper);
    own.onApplicationShutdown();
    while ((own as unknown as { ticker: { running: boolean } }).ticker.running) await new Promise((r) => setTimeout(r, 20));
    db = new Database(broker.config.storage.postgres_url, 2);
    const plugins = { connectionNames: () => ['stand-in'], for: () => target };
    const audit = { appendMany: async (es: unknown[]) => void events.push(...es) };
    sweeps = new LateLoginSweeps(db, plugins as never, audit as never);
  });
  afterAll(async () => {
    await db.close();
    await broker.close();
  });

  const row = (account: string, last: boolean, connection = 'stand-in', before = '1000', name = account) =>
    broker.state(
      `INSERT INTO late_login_sweeps (name, connection, account, before, due_at, until_at)
       VALUES ($4, $2, $1, $5, now() - interval '1 second', now() + $3 * interval '1 minute') RETURNING id`,
      [account, connection, last ? -1 : 10, name, before],
    );
  const dueIn = async (account: string) => {
    const rows = await broker.state<{ s: number }>(`SELECT extract(epoch FROM due_at - now())::float8 AS s FROM late_login_sweeps WHERE name = $1`, [account]);
    return rows.length ? rows[0].s : undefined;
  };

  beforeEach(async () => {
    await broker.state('DELETE FROM late_login_sweeps');
    asked.length = 0;
    events.length = 0;
    mostAtOnce = 0;
  });

  it('asks the target for all at once, and keeps each outcome its own', async () => {
    for (const [account, last] of [['late-a', false], ['quiet-b', false], ['late-c', true], ['hidden-d', false], ['hidden-e', true]] as const) await row(account, last);
    await row('elsewhere-f', false, 'not-here');
    await sweeps.sweepDue();
    expect(asked.map((a) => a.account).sort()).toEqual(['hidden-d', 'hidden-e', 'late-a', 'late-c', 'quiet-b']);
    expect(mostAtOnce).toBe(5);
    // Swept and not yet past until_at: due again at once. Past it: gone.
    expect(await dueIn('late-a')).toBeLessThanOrEqual(0);
    expect(await dueIn('quiet-b')).toBeLessThanOrEqual(0);
    expect(await dueIn('late-c')).toBeUndefined();
    // Failed: tried again in a minute, or given up when past until_at. A connection not configured here is left to the others.
    expect(await dueIn('hidden-d')).toBeGreaterThan(50);
    expect(await dueIn('hidden-e')).toBeUndefined();
    expect(await dueIn('elsewhere-f')).toBeGreaterThan(50);
    // Only sweeps that ended sessions are audited, each with its own count.
    expect(events).toHaveLength(2);
    expect(events).toEqual(
      expect.arrayContaining([
        expect.objectContaining({ type: 'static.late_sessions_ended', detail: { name: 'late-a', account: 'late-a', sessions: 2 } }),
        expect.objectContaining({ type: 'static.late_sessions_ended', detail: { name: 'late-c', account: 'late-c', sessions: 2 } }),
      ]),
    );
  });
});
