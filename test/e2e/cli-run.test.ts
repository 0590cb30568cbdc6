import { spawnSync } from 'node:child_process';
import { mkdtempSync, renameSync, writeFileSync } from 'node:fs';
import { createServer as createHttpServer } from 'node:http';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { TestBroker, accountPrefix, eventually, startBroker } from '../support/broker';
import { cliEnv, killQuietly, runCli, spawnCli } from '../support/cli';
import { closedPort } from '../support/process';
import { createPgAccount, owned } from '../support/statics';
import { rolesLike, withAdmin } from '../support/target';

/**
 * `tessera run` and the client commands as users run them: the built CLI as a real process, against an
 * in-process broker on real PostgreSQL. Every run's leases are checked in the state database and every
 * leased account on the target.
 */
describe('tessera run and the client CLI', () => {
  let broker: TestBroker;
  const dir = mkdtempSync(join(tmpdir(), 'tessera-cli-'));
  const PREFIX = 'tsr_runx_';

  const STATIC = 'runx-legacy';
  const STATIC_ACCOUNT = 'tess_runx_legacy';

  beforeAll(async () => {
    await createPgAccount(STATIC_ACCOUNT, 'legacy-password-1');
    broker = await startBroker('runx', (doc) => {
      doc.roles['runx-short'] = { connection: 'target', default_ttl: '2s', max_ttl: '4s', member_of: ['tessera_test_readonly'] };
      doc.roles['runx-two'] = { connection: 'target', default_ttl: '5m', max_ttl: '1h', member_of: ['tessera_test_readonly'] };
      doc.policies[0].allow.push({ creds: ['runx-short', 'runx-two'] }, { static: [STATIC] });
      doc.static_secrets = { [STATIC]: { connection: 'target', username: STATIC_ACCOUNT, strategy: 'single' } };
    });
  });
  afterAll(async () => {
    try {
      // Nothing any test leased may outlive the suite.
      expect(await rolesLike(PREFIX)).toEqual([]);
    } finally {
      await broker.close();
      await withAdmin('postgres', (c) => c.query(`DROP ROLE IF EXISTS ${STATIC_ACCOUNT}`));
    }
  });

  /** The CLI's environment for a workload `ns/app/<name>`, with the token in TESSERA_TOKEN. */
  const envFor = async (name: string, extra: Record<string, string> = {}) =>
    cliEnv({ TESSERA_ADDR: broker.url, TESSERA_TOKEN: await broker.token(`ns/app/${name}`), ...extra });

  const leasesOf = (name: string) =>
    broker.state<{ id: string; state: string; account: string; run_id: string | null; expires_at: Date; max_expires_at: Date }>(
      'SELECT id, state, account, run_id, expires_at, max_expires_at FROM leases WHERE owner = $1 ORDER BY created_at',
      [`spiffe://test.example/ns/app/${name}`],
    );

  const renewalsOf = async (leaseId: string) =>
    Number((await broker.state<{ n: string }>(`SELECT count(*) AS n FROM audit_events WHERE type = 'lease.renewed' AND lease_id = $1`, [leaseId]))[0].n);

  it('runs psql with the leased credential (PG* and DATABASE_URL), then revokes it and drops the role', async () => {
    const script = [
      'psql -XtAc "select current_user"',
      // DATABASE_URL alone must be enough too.
      'env -u PGUSER -u PGPASSWORD -u PGHOST -u PGPORT -u PGDATABASE psql -X "$DATABASE_URL" -tAc "select current_database()"',
    ].join(' && ');
    const res = await runCli(['run', '--role', broker.role, '--', 'sh', '-c', script], await envFor('psql'));
    expect(res.stderr).toBe('');
    expect(res.code).toBe(0);
    const [user, database] = res.stdout.trim().split('\n');
    expect(user.startsWith(accountPrefix('runx'))).toBe(true);
    expect(database).toBe('tessera_target');
    const [lease] = await leasesOf('psql');
    expect(lease).toMatchObject({ account: user, state: 'revoked' });
    expect(lease.run_id).toMatch(/^run-/);
    expect(await rolesLike(user)).toEqual([]);
  });

  it('exits with the child exit code (7) and revokes only its own leases when the run id is shared', async () => {
    const env = await envFor('exit7');
    // A sibling process of the same workload holding a lease under the same run id.
    const sibling = await broker.api('POST', `/v1/creds/${broker.role}`, { token: env.TESSERA_TOKEN, body: { run_id: 'shared-run' } });
    expect(sibling.status).toBe(201);
    const res = await runCli(['run', '--role', broker.role, '--run-id', 'shared-run', '--', 'sh', '-c', 'exit 7'], env);
    expect(res.code).toBe(7);
    const leases = await leasesOf('exit7');
    const mine = leases.find((l) => l.id !== sibling.body.lease_id)!;
    expect(mine).toMatchObject({ state: 'revoked', run_id: 'shared-run' });
    expect(await rolesLike(mine.account)).toEqual([]);
    expect(leases.find((l) => l.id === sibling.body.lease_id)!.state).toBe('active');
    await broker.api('POST', `/v1/leases/${sibling.body.lease_id}/revoke`, { token: env.TESSERA_TOKEN });
  });

  it('exits 143 when the child is killed by SIGTERM, and revokes', async () => {
    const res = await runCli(['run', '--role', broker.role, '--', 'sh', '-c', 'kill -TERM $$'], await envFor('killed'));
    expect(res.code).toBe(143);
    const [lease] = await leasesOf('killed');
    expect(lease.state).toBe('revoked');
    expect(await rolesLike(lease.account)).toEqual([]);
  });

  it('forwards SIGTERM sent to tessera run to the child, then revokes and exits 143', async () => {
    const cli = spawnCli(['run', '--role', broker.role, '--', 'sh', '-c', 'echo started; exec sleep 30'], await envFor('sigterm'));
    try {
      await cli.waitForStdout(/started/);
      expect((await leasesOf('sigterm'))[0].state).toBe('active');
      const sentAt = Date.now();
      cli.child.kill('SIGTERM');
      const { code } = await cli.exited;
      expect(code).toBe(143);
      expect(Date.now() - sentAt).toBeLessThan(10_000);
      const [lease] = await leasesOf('sigterm');
      expect(lease.state).toBe('revoked');
      expect(await rolesLike(lease.account)).toEqual([]);
    } finally {
      killQuietly(cli.child);
    }
  });

  it('SIGKILLs a child that ignores SIGTERM after --kill-timeout, then revokes and exits 137', async () => {
    const ignoresTerm = "process.on('SIGTERM', () => console.log('ignored SIGTERM')); console.log('started'); setInterval(() => {}, 1000)";
    const cli = spawnCli(['run', '--role', broker.role, '--kill-timeout', '2s', '--', process.execPath, '-e', ignoresTerm], await envFor('stubborn'));
    try {
      await cli.waitForStdout(/started/);
      expect((await leasesOf('stubborn'))[0].state).toBe('active');
      const sentAt = Date.now();
      cli.child.kill('SIGTERM');
      await cli.waitForStdout(/ignored SIGTERM/);
      const result = await Promise.race([cli.exited, new Promise<'hung'>((r) => setTimeout(() => r('hung'), 15_000))]);
      expect(result).toEqual({ code: 137, signal: null });
      const tookMs = Date.now() - sentAt;
      expect(tookMs).toBeGreaterThanOrEqual(1900);
      expect(tookMs).toBeLessThan(8000);
      expect(cli.stderr()).toContain('still running 2s after SIGTERM; sending SIGKILL');
      const [lease] = await leasesOf('stubborn');
      expect(lease.state).toBe('revoked');
      expect(await rolesLike(lease.account)).toEqual([]);
    } finally {
      killQuietly(cli.child);
    }
  });

  it('--kill-timeout must be a duration', async () => {
    const res = await runCli(['run', '--role', broker.role, '--kill-timeout', 'soon', '--', 'true'], await envFor('badkill'));
    expect(res.code).toBe(2);
    expect(res.stderr).toContain('--kill-timeout');
    expect(await leasesOf('badkill')).toEqual([]);
  });

  describe('when the answer to the issue request is lost', () => {
    // Forwards to the broker, but drops the connection instead of answering an issue request: the
    // lease is made, and `tessera run` never learns its id.
    let proxyUrl: string;
    const proxy = createHttpServer(async (req, res) => {
      const chunks: Buffer[] = [];
      for await (const chunk of req) chunks.push(chunk as Buffer);
      const headers: Record<string, string> = {};
      for (const name of ['authorization', 'content-type', 'accept']) if (typeof req.headers[name] === 'string') headers[name] = req.headers[name] as string;
      const upstream = await fetch(`${broker.url}${req.url}`, { method: req.method, headers, body: chunks.length ? Buffer.concat(chunks) : undefined });
      const text = await upstream.text();
      if (req.method === 'POST' && req.url?.startsWith('/v1/creds/')) {
        req.socket.destroy();
        return;
      }
      res.writeHead(upstream.status, { 'content-type': upstream.headers.get('content-type') ?? 'application/json' }).end(text);
    });
    beforeAll(async () => {
      await new Promise<void>((r) => proxy.listen(0, '127.0.0.1', r));
      proxyUrl = `http://127.0.0.1:${(proxy.address() as { port: number }).port}`;
    });
    afterAll(async () => {
      proxy.closeAllConnections();
      await new Promise((r) => proxy.close(r));
    });

    it('revokes the run\'s leases on exit (revoke-owned for its run id), so none waits for its TTL', async () => {
      const env: NodeJS.ProcessEnv = { ...(await envFor('lostanswer')), TESSERA_ADDR: proxyUrl };
      const res = await runCli(['run', '--role', broker.role, '--', 'sh', '-c', 'echo never ran'], env);
      expect(res.code).toBe(6);
      expect(res.stdout).toBe('');
      expect(res.stderr).toMatch(/broker unreachable/);
      const leases = await leasesOf('lostanswer');
      expect(leases).toHaveLength(1);
      expect(leases[0].run_id).toMatch(/^run-/);
      expect(leases[0].state).toBe('revoked');
      expect(await rolesLike(leases[0].account)).toEqual([]);
    });

    it('with a run id of the user\'s (maybe shared), leaves the siblings alone and says how to find the lease', async () => {
      const env: NodeJS.ProcessEnv = { ...(await envFor('lostshared')), TESSERA_ADDR: proxyUrl };
      const sibling = await broker.api('POST', `/v1/creds/${broker.role}`, { token: env.TESSERA_TOKEN, body: { run_id: 'ci-42' } });
      const res = await runCli(['run', '--role', broker.role, '--run-id', 'ci-42', '--', 'true'], env);
      expect(res.code).toBe(6);
      expect(res.stderr).toContain('tessera leases list --run-id ci-42');
      const leases = await leasesOf('lostshared');
      expect(leases.map((l) => l.state)).toEqual(['active', 'active']);
      expect(leases.find((l) => l.id === sibling.body.lease_id)).toBeDefined();
      await broker.api('POST', '/v1/leases/revoke-owned', { token: env.TESSERA_TOKEN, body: { run_id: 'ci-42' } });
    });
  });

  it('exits 127 when the command does not exist, and revokes what it leased', async () => {
    const res = await runCli(['run', '--role', broker.role, '--', '/nonexistent/tessera-cmd'], await envFor('nocmd'));
    expect(res.code).toBe(127);
    expect(res.stderr.trim()).toBe('tessera: cannot run "/nonexistent/tessera-cmd": command not found');
    expect((await leasesOf('nocmd'))[0].state).toBe('revoked');
  });

  it('keeps a 3 s lease alive through a 7 s run by renewing it', async () => {
    const res = await runCli(['run', '--role', broker.role, '--ttl', '3s', '--', 'sh', '-c', 'sleep 7; psql -XtAc "select current_user"'], await envFor('long'));
    expect(res.stderr).toBe('');
    expect(res.code).toBe(0);
    const [lease] = await leasesOf('long');
    expect(res.stdout.trim()).toBe(lease.account);
    expect(await renewalsOf(lease.id)).toBeGreaterThanOrEqual(2);
    expect(lease.state).toBe('revoked');
  }, 60_000);

  it('warns once on stderr, before expiry, that a lease reached its max TTL', async () => {
    const res = spawnCli(['run', '--role', 'runx-short', '--', 'sleep', '6'], await envFor('short'));
    try {
      const { code } = await res.exited;
      expect(code).toBe(0);
      const [lease] = await leasesOf('short');
      const warnings = res.stderrLines().filter((l) => /reaches its max TTL/.test(l.line));
      expect(warnings).toHaveLength(1);
      expect(warnings[0].line).toContain(lease.id);
      expect(warnings[0].line).toContain('cannot be renewed further');
      expect(warnings[0].at).toBeLessThan(lease.max_expires_at.getTime());
      // It was renewed up to the cap before the warning, not merely warned about at issue.
      expect(await renewalsOf(lease.id)).toBeGreaterThanOrEqual(1);
      expect(res.stderr()).not.toMatch(/password/i);
    } finally {
      killQuietly(res.child);
    }
  }, 60_000);

  it('re-reads the token file: renewals and revocation use the token written mid-run', async () => {
    const tokenFile = join(dir, 'token');
    // The verifier allows 30 s of clock skew, so "4 s of life left" is an exp 26 s in the past.
    const old = await broker.token('ns/app/rotating', { ttlSeconds: -26 });
    writeFileSync(tokenFile, old);
    expect((await broker.api('GET', '/v1/whoami', { token: old })).status).toBe(200);
    const env = cliEnv({ TESSERA_ADDR: broker.url });
    const cli = spawnCli(['run', '--role', broker.role, '--ttl', '3s', '--token-file', tokenFile, '--', 'sh', '-c', 'sleep 8; psql -XtAc "select current_user"'], env);
    try {
      await eventually(async () => (await leasesOf('rotating'))[0]?.state === 'active', 10_000);
      // Rotate the file as SPIFFE helpers do: write aside, then rename over.
      writeFileSync(`${tokenFile}.new`, await broker.token('ns/app/rotating', { ttlSeconds: 3600 }));
      renameSync(`${tokenFile}.new`, tokenFile);
      expect(await eventually(async () => (await broker.api('GET', '/v1/whoami', { token: old })).status === 401, 10_000, 250)).toBe(true);
      const { code } = await cli.exited;
      expect(cli.stderr()).toBe('');
      expect(code).toBe(0);
      const [lease] = await leasesOf('rotating');
      expect(cli.stdout().trim()).toBe(lease.account);
      expect(lease.state).toBe('revoked');
    } finally {
      killQuietly(cli.child);
    }
  }, 60_000);

  it('gives each role prefixed variables; the unprefixed ones belong to the first role', async () => {
    const script = [
      'echo "$PGUSER $TESSERA_RUNX_RO_PGUSER $TESSERA_RUNX_TWO_PGUSER $TESSERA_RUN_ID"',
      'PGUSER=$TESSERA_RUNX_TWO_PGUSER PGPASSWORD=$TESSERA_RUNX_TWO_PGPASSWORD psql -XtAc "select current_user"',
    ].join(' && ');
    const res = await runCli(['run', '--role', broker.role, '--role', 'runx-two', '--run-id', 'two-roles', '--', 'sh', '-c', script], await envFor('two'));
    expect(res.code).toBe(0);
    const [vars, second] = res.stdout.trim().split('\n');
    const [pgUser, first, two, runId] = vars.split(' ');
    expect(pgUser).toBe(first);
    expect(first.startsWith('tsr_runx_ro_')).toBe(true);
    expect(two.startsWith('tsr_runx_two_')).toBe(true);
    expect(second).toBe(two);
    expect(runId).toBe('two-roles');
    expect((await leasesOf('two')).map((l) => l.state)).toEqual(['revoked', 'revoked']);
    expect(await rolesLike(PREFIX)).toEqual([]);
  });

  describe('one-line errors and exit codes', () => {
    const oneLine = (stderr: string) => {
      expect(stderr.endsWith('\n')).toBe(true);
      expect(stderr.trim().split('\n')).toHaveLength(1);
      return stderr.trim();
    };

    it('broker unreachable: exit 6, and the command never runs', async () => {
      const port = await closedPort();
      const res = await runCli(['run', '--addr', `http://127.0.0.1:${port}`, '--role', broker.role, '--', 'sh', '-c', 'echo ran'], await envFor('down'));
      expect(res.code).toBe(6);
      expect(oneLine(res.stderr)).toBe(`tessera: broker unreachable at http://127.0.0.1:${port} (ECONNREFUSED)`);
      expect(res.stdout).toBe('');
    });

    it('401 with a bad token: exit 3, the token is not echoed, the command never runs', async () => {
      const token = 'eyJhbGciOiJFUzI1NiJ9.bm90LWEtdG9rZW4.c2ln';
      const env = cliEnv({ TESSERA_ADDR: broker.url, TESSERA_TOKEN: token });
      const run = await runCli(['run', '--role', broker.role, '--', 'sh', '-c', 'echo ran'], env);
      expect(run.code).toBe(3);
      expect(oneLine(run.stderr)).toMatch(/^tessera: authentication failed: .+ \[invalid_token, request [0-9a-f-]{36}\]$/);
      expect(run.stderr).not.toContain(token);
      expect(run.stdout).toBe('');
      const whoami = await runCli(['whoami'], env);
      expect(whoami.code).toBe(3);
    });

    it('no token, or an unreadable token file: exit 3', async () => {
      const none = await runCli(['whoami'], cliEnv({ TESSERA_ADDR: broker.url }));
      expect(none.code).toBe(3);
      expect(oneLine(none.stderr)).toBe('tessera: no token: give --token-file PATH or set TESSERA_TOKEN');
      const missing = await runCli(['whoami', '--token-file', join(dir, 'absent')], cliEnv({ TESSERA_ADDR: broker.url }));
      expect(missing.code).toBe(3);
      expect(oneLine(missing.stderr)).toBe(`tessera: cannot read token file ${join(dir, 'absent')}: ENOENT`);
    });

    it('403 for a role the policy does not allow: exit 3, nothing leased, the command never runs', async () => {
      const res = await runCli(['run', '--role', 'runx-forbidden', '--', 'sh', '-c', 'echo ran'], await envFor('denied'));
      expect(res.code).toBe(3);
      expect(oneLine(res.stderr)).toMatch(/^tessera: permission denied: policy does not allow .+"runx-forbidden".+\[policy_denied/);
      expect(res.stdout).toBe('');
      expect(await leasesOf('denied')).toEqual([]);
    });

    it('404 for an unknown lease: exit 4; 422 for a bad TTL: exit 2; usage errors: exit 2', async () => {
      const env = await envFor('errors');
      const show = await runCli(['leases', 'show', 'tsl_AAAAAAAAAAAAAAAAAAAAAAAA'], env);
      expect(show.code).toBe(4);
      expect(oneLine(show.stderr)).toMatch(/^tessera: not found: no such lease \[lease_not_found/);
      const ttl = await runCli(['creds', broker.role, '--ttl', 'banana'], env);
      expect(ttl.code).toBe(2);
      expect(oneLine(ttl.stderr)).toMatch(/^tessera: invalid request: ttl: must be a duration/);
      const usage = await runCli(['run', '--', 'true'], env);
      expect(usage.code).toBe(2);
      expect(oneLine(usage.stderr)).toBe('tessera: give at least one --role ROLE (or --static NAME)');
      expect(await leasesOf('errors')).toEqual([]);
    });

    it('--static and rotate on a broker without those routes (an older version): exit 2', async () => {
      const old = await oldBroker();
      try {
        const env = cliEnv({ TESSERA_ADDR: old.url, TESSERA_TOKEN: await broker.token('ops/alice') });
        const run = await runCli(['run', '--static', 'billing', '--', 'sh', '-c', 'echo ran'], env);
        expect(run.code).toBe(2);
        expect(oneLine(run.stderr)).toBe('tessera: static secrets are not available in this version');
        expect(run.stdout).toBe('');
        for (const args of [['rotate', 'billing', '--wait'], ['rotate', '--connection', 'target']]) {
          const rotate = await runCli(args, env);
          expect(rotate.code).toBe(2);
          expect(oneLine(rotate.stderr)).toBe('tessera: rotation is not available in this version');
        }
      } finally {
        await old.close();
      }
    });
  });

  describe('client commands', () => {
    it('creds --output env prints shell-quoted exports a shell can use to log in', async () => {
      const env = await envFor('creds');
      const creds = await runCli(['creds', broker.role, '--ttl', '10m', '--run-id', 'by-hand', '--output', 'env'], env);
      expect(creds.code).toBe(0);
      expect(creds.stdout).toMatch(/^export PGUSER='tsr_runx_ro_[a-z0-9_]+'$/m);
      // A plain shell, not tessera: only the printed exports can make this login work.
      const login = spawnSync('sh', ['-c', `${creds.stdout}\npsql -XtAc "select current_user"`], { env: cliEnv({}), encoding: 'utf8' });
      const [lease] = await leasesOf('creds');
      expect(login.stdout.trim()).toBe(lease.account);
      expect(lease).toMatchObject({ state: 'active', run_id: 'by-hand' });

      const list = await runCli(['leases', 'list', '--run-id', 'by-hand', '--output', 'json'], env);
      expect(list.code).toBe(0);
      expect(JSON.parse(list.stdout).items.map((l: { lease_id: string }) => l.lease_id)).toEqual([lease.id]);
      const table = await runCli(['leases', 'list', '--state', 'active'], env);
      expect(table.stdout.split('\n')[0]).toMatch(/^LEASE_ID\s+ROLE\s+STATE\s+ACCOUNT\s+RUN_ID\s+EXPIRES_AT\s+OWNER$/);
      expect(table.stdout).toContain(lease.id);

      const renew = await runCli(['--output', 'json', 'leases', 'renew', lease.id, '--increment', '30m'], env);
      expect(renew.code).toBe(0);
      expect(Date.parse(JSON.parse(renew.stdout).expires_at)).toBeGreaterThan(lease.expires_at.getTime() + 15 * 60_000);

      const revoke = await runCli(['leases', 'revoke', lease.id], env);
      expect(revoke).toMatchObject({ code: 0, stdout: `${lease.id} revoked\n` });
      expect(await rolesLike(lease.account)).toEqual([]);
      const show = await runCli(['leases', 'show', lease.id], env);
      expect(show.stdout).toMatch(/^state\s+revoked$/m);
      const again = await runCli(['leases', 'renew', lease.id], env);
      expect(again.code).toBe(5);
    });

    it('run --static injects a static secret; rotate --wait rotates it and the next run gets the new password', async () => {
      const env = await envFor('legacy');
      const first = await owned(broker, env.TESSERA_TOKEN!, STATIC);
      const script = [
        'echo "$TESSERA_RUNX_LEGACY_USERNAME"',
        'PGUSER=$TESSERA_RUNX_LEGACY_USERNAME PGPASSWORD=$TESSERA_RUNX_LEGACY_PASSWORD PGHOST=$TESSERA_RUNX_LEGACY_HOST PGPORT=$TESSERA_RUNX_LEGACY_PORT PGDATABASE=$TESSERA_RUNX_LEGACY_DATABASE psql -XtAc "select current_user"',
        'echo "$PGUSER"',
      ].join(' && ');
      const before = await runCli(['run', '--static', STATIC, '--role', broker.role, '--', 'sh', '-c', script], env);
      expect(before.stderr).toBe('');
      expect(before.code).toBe(0);
      const [name, loggedIn, leased] = before.stdout.trim().split('\n');
      expect([name, loggedIn]).toEqual([STATIC_ACCOUNT, STATIC_ACCOUNT]);
      expect(leased.startsWith(accountPrefix('runx'))).toBe(true);

      const ops = cliEnv({ TESSERA_ADDR: broker.url, TESSERA_TOKEN: await broker.token('ops/alice') });
      const rotate = await runCli(['rotate', STATIC, '--reason', 'cli test', '--wait'], ops);
      expect(rotate.stderr).toBe('');
      expect(rotate.code).toBe(0);
      expect(rotate.stdout).toMatch(/^rot_\S+\s+succeeded\s+-$/m);
      const emergency = await runCli(['rotate', '--connection', 'target', '--wait', '--output', 'json'], ops);
      expect(emergency.code).toBe(0);
      expect(JSON.parse(emergency.stdout).rotations.map((r: { status: string }) => r.status)).toEqual(['succeeded']);

      const after = await runCli(['run', '--static', STATIC, '--', 'sh', '-c', 'printf %s "$TESSERA_RUNX_LEGACY_PASSWORD"'], env);
      expect(after.code).toBe(0);
      expect(after.stdout).not.toBe(first.password);
      expect(after.stdout).toBe((await broker.api('GET', `/v1/static/${STATIC}/creds`, { token: env.TESSERA_TOKEN })).body.password);
    }, 60_000);

    it('whoami, audit verify and bulk revoke (operator)', async () => {
      const ops = cliEnv({ TESSERA_ADDR: broker.url, TESSERA_TOKEN: await broker.token('ops/alice') });
      const me = await runCli(['whoami', '--output', 'json'], ops);
      expect(JSON.parse(me.stdout)).toEqual({ subject: 'spiffe://test.example/ops/alice', issuer: 'test', operator: true });

      const workload = await envFor('bulk');
      for (let i = 0; i < 2; i++) expect((await runCli(['creds', broker.role, '--run-id', 'bulk-run', '--output', 'json'], workload)).code).toBe(0);
      const denied = await runCli(['leases', 'revoke', '--run-id', 'bulk-run'], workload);
      expect(denied.code).toBe(3);
      const bulk = await runCli(['leases', 'revoke', '--run-id', 'bulk-run'], ops);
      expect(bulk.code).toBe(0);
      expect(bulk.stdout).toMatch(/^2 lease\(s\) marked for revocation \(job .+\)$/m);
      const accounts = (await leasesOf('bulk')).map((l) => l.account);
      expect(await eventually(async () => (await leasesOf('bulk')).every((l) => l.state === 'revoked'))).toBe(true);
      for (const account of accounts) expect(await rolesLike(account)).toEqual([]);

      const verify = await runCli(['audit', 'verify'], ops);
      expect(verify.code).toBe(0);
      expect(verify.stdout).toMatch(/^audit chain intact: \d+ events checked$/m);
      const notOperator = await runCli(['audit', 'verify'], workload);
      expect(notOperator.code).toBe(3);
    });
  });

});

/** A broker from before static secrets: every unknown route answers the broker's generic 404. */
async function oldBroker(): Promise<{ url: string; close(): Promise<void> }> {
  const server = createHttpServer((_req, res) => {
    res.writeHead(404, { 'content-type': 'application/json' });
    res.end(JSON.stringify({ error: { code: 'not_found', message: 'no such route', request_id: 'stub' } }));
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const { port } = server.address() as { port: number };
  return { url: `http://127.0.0.1:${port}`, close: () => new Promise((resolve) => server.close(() => resolve())) };
}

