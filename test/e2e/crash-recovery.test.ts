import { Client } from 'pg';
import { accountPrefix, eventually, resetState, sleep, testConfigDoc, writeConfigFile } from '../support/broker';
import { spawnBroker, waitExit } from '../support/process';
import { testIssuer, spiffe } from '../support/identity';
import { rolesLike } from '../support/target';

describe('crash recovery (real broker processes)', () => {
  it('after SIGKILL during concurrent issuing and a restart, the accounts on the target are exactly those of active leases', async () => {
    const doc = await testConfigDoc('crash');
    doc.pending_timeout = '2s';
    doc.reconcile_every = '1s';
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
    try {
      const atCrash = await state.query(`SELECT state, count(*)::int AS n FROM leases GROUP BY state`);
      expect(atCrash.rows.find((r) => r.state === 'active')?.n).toBeGreaterThanOrEqual(30);
      const activeAtCrash = atCrash.rows.find((r) => r.state === 'active')!.n;
      const rolesAtCrash = (await rolesLike(accountPrefix('crash'))).length;

      const second = await spawnBroker(configPath);
      try {
        const settled = await eventually(async () => {
          const { rows } = await state.query(`SELECT count(*)::int AS n FROM leases WHERE state IN ('pending','revoking')`);
          return rows[0].n === 0;
        }, 30_000);
        expect(settled).toBe(true);
        await sleep(200);
        const { rows } = await state.query<{ account: string }>(`SELECT account FROM leases WHERE state = 'active' ORDER BY account`);
        const roles = await rolesLike(accountPrefix('crash'));
        expect(roles).toEqual(rows.map((r) => r.account));
        const { rows: failed } = await state.query(`SELECT count(*)::int AS n FROM leases WHERE state = 'failed'`);
        process.stdout.write(
          `crash: ${activeAtCrash} active and ${rolesAtCrash - activeAtCrash} untracked accounts at the kill; ` +
            `after recovery ${rows.length} active, ${failed[0].n} leases ended failed\n`,
        );

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
