import { Client } from 'pg';
import { accountPrefix, eventually, resetState, testConfigDoc, writeConfigFile } from '../support/broker';
import { spawnBroker, waitExit } from '../support/process';
import { testIssuer, spiffe } from '../support/identity';
import { rolesLike } from '../support/target';

describe('crash recovery (real broker processes)', () => {
  it('after SIGKILL during concurrent issuing and a restart, within two reconciler intervals no lease is pending and the accounts on the target are exactly those of live leases', async () => {
    const doc = await testConfigDoc('crash');
    const INTERVAL_S = 2;
    doc.reconcile_every = `${INTERVAL_S}s`;
    // The default: recovery must come from knowing the issuing process is gone, not from age.
    doc.pending_timeout = '60s';
    // Slower verifiers widen the window in which a crash finds a lease pending.
    doc.connections.target.scram_iterations = 20000;
    await resetState(doc, 'crash');
    const configPath = writeConfigFile(doc);
    const token = await (await testIssuer()).mint(spiffe('ns/app/loader'));

    const first = await spawnBroker(configPath);
    let issued = 0;
    let stop = false;
    const loop = async () => {
      while (!stop) {
        try {
          const res = await fetch(`${first.url}/v1/creds/crash-ro`, {
            method: 'POST',
            headers: { authorization: `Bearer ${token}`, 'content-type': 'application/json' },
            body: JSON.stringify({ ttl: '10m' }),
          });
          if (res.status === 201) issued++;
        } catch {
          return; // the broker is gone
        }
      }
    };
    const loops = Array.from({ length: 12 }, loop);
    await eventually(async () => issued >= 30, 20_000, 20);
    first.child.kill('SIGKILL');
    stop = true;
    await Promise.all(loops);
    await waitExit(first.child);

    const state = new Client({ connectionString: doc.storage.postgres_url });
    await state.connect();
    const counts = async () => {
      const { rows } = await state.query<{ state: string; n: number }>(`SELECT state, count(*)::int AS n FROM leases GROUP BY state`);
      return Object.fromEntries(rows.map((r) => [r.state, r.n])) as Record<string, number>;
    };
    const liveAccounts = async () =>
      (await state.query<{ account: string }>(`SELECT account FROM leases WHERE state = 'active' ORDER BY account`)).rows.map((r) => r.account);
    try {
      const atCrash = await counts();
      expect(atCrash.active).toBeGreaterThanOrEqual(30);
      // Issues were under way at the kill: their leases are pending, some with an account already made.
      expect(atCrash.pending).toBeGreaterThanOrEqual(1);
      const rolesAtCrash = (await rolesLike(accountPrefix('crash'))).length;

      const second = await spawnBroker(configPath);
      const restartedAt = Date.now();
      try {
        const recovered = await eventually(async () => {
          const now = await counts();
          if (now.pending || now.revoking) return false;
          const roles = await rolesLike(accountPrefix('crash'));
          return JSON.stringify(roles) === JSON.stringify(await liveAccounts());
        }, 30_000, 50);
        const tookMs = Date.now() - restartedAt;
        const after = await counts();
        process.stdout.write(
          `crash: ${atCrash.active} active and ${atCrash.pending} pending leases, ${rolesAtCrash - atCrash.active} accounts without a live lease at the kill; ` +
            `recovered ${tookMs} ms after the restart (reconcile_every ${INTERVAL_S}s, pending_timeout 60s): ${after.active} active, ${after.failed ?? 0} failed\n`,
        );
        expect(recovered).toBe(true);
        expect(tookMs).toBeLessThanOrEqual(2 * INTERVAL_S * 1000);
        expect(await rolesLike(accountPrefix('crash'))).toEqual(await liveAccounts());
        expect(after.failed).toBe(atCrash.pending);

        // The survivors are still revocable through the restarted broker.
        const operator = await (await testIssuer()).mint(spiffe('ops/oncall'));
        const bulk = await fetch(`${second.url}/v1/leases/revoke`, {
          method: 'POST',
          headers: { authorization: `Bearer ${operator}`, 'content-type': 'application/json' },
          body: JSON.stringify({ role: 'crash-ro' }),
        });
        expect(bulk.status).toBe(202);
        const cleared = await eventually(async () => (await rolesLike(accountPrefix('crash'))).length === 0, 30_000);
        expect(cleared).toBe(true);
      } finally {
        second.child.kill('SIGTERM');
        await waitExit(second.child);
      }
    } finally {
      await state.end();
    }
  });
});
