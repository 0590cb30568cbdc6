/**
 * `npm run bench [-- --quick] [-- --only issue,expiry,...]`: every figure measured beside the raw
 * operation it is compared to, in the same run, on this machine. Prints a table and writes
 * bench/results/latest.json and a dated markdown file.
 */
import { execSync } from 'node:child_process';
import { mkdirSync, writeFileSync } from 'node:fs';
import { cpus, totalmem } from 'node:os';
import { benchExpiry } from './expiry';
import { benchHorizontal } from './horizontal';
import { benchIssue, prepareTarget } from './issue';
import { benchRedis } from './redis';
import { Stats, identity, round } from './lib';
import { RotationResult, benchRotation } from './rotation';
import { benchScale } from './scale';
import { benchSts } from './sts';

const SECTIONS = ['issue', 'expiry', 'scale', 'rotation', 'horizontal', 'redis', 'sts'] as const;

function version(cmd: string): string {
  try {
    return execSync(cmd, { encoding: 'utf8', stdio: ['ignore', 'pipe', 'ignore'] }).trim().split('\n')[0];
  } catch {
    return 'unknown';
  }
}

const ms = (x: number) => `${round(x, 1)} ms`;
const rate = (s: Stats) => `${round(s.rate, 0)}/s`;
const lat = (s: Stats) => `${ms(s.p50)} / ${ms(s.p95)} / ${ms(s.p99)}`;

async function main(): Promise<void> {
  const args = process.argv.slice(2);
  const quick = args.includes('--quick');
  const onlyArg = args.find((a) => a.startsWith('--only='))?.slice('--only='.length);
  const only = new Set(onlyArg ? onlyArg.split(',') : SECTIONS);
  const started = Date.now();
  const id = await identity();
  await prepareTarget();
  const machine = {
    cpu: `${cpus()[0]?.model ?? 'unknown'} × ${cpus().length}`,
    memoryGb: round(totalmem() / 2 ** 30, 1),
    node: process.version,
    postgres: version('psql -h 127.0.0.1 -U postgres -Atc "SHOW server_version"'),
    mariadb: version('mariadb -h 127.0.0.1 -uroot -N -e "SELECT VERSION()"'),
    redis: version('redis-cli -h 127.0.0.1 INFO server | grep redis_version'),
  };
  const results: Record<string, unknown> = { date: new Date().toISOString(), quick, machine };
  const md: string[] = [`# Tessera benchmarks ${results.date}${quick ? ' (quick)' : ''}`, '', `Machine: ${machine.cpu}, ${machine.memoryGb} GiB; Node ${machine.node}; PostgreSQL ${machine.postgres}; MariaDB ${machine.mariadb}; ${machine.redis}.`, ''];
  const log = (line: string) => {
    process.stdout.write(`${line}\n`);
    md.push(line);
  };

  if (only.has('issue')) {
    const rows = await benchIssue(id, { quick, iterations: quick ? ['default'] : ['default', 4096] });
    results.issue = rows;
    log('## Issue: HTTP API (JWT-SVID auth, policy, lease + audit, expiry job) vs the raw target operations');
    log('');
    log('| target | concurrency | Tessera rate | raw operation | raw rate | ratio | Tessera p50 / p95 / p99 | raw p50 / p95 / p99 |');
    log('|---|---|---|---|---|---|---|---|');
    for (const r of rows) log(`| ${r.target} | ${r.concurrency} | ${rate(r.tessera)} | ${r.baseline} | ${rate(r.raw)} | **${round(r.ratio, 2)}×** | ${lat(r.tessera)} | ${lat(r.raw)} |`);
    log('');
    const cpu = rows.filter((r) => r.brokerCpuMs !== undefined);
    if (cpu.length) {
      log(`Broker CPU per issued lease (user + system, from /proc): ${cpu.map((r) => `${r.target} c=${r.concurrency}: ${round(r.brokerCpuMs!, 2)} ms`).join('; ')}.`);
      log('');
      log('Where the machine\'s CPU goes per issued lease (ms; PostgreSQL is the state database and the target together, the client is the bench\'s HTTP load):');
      log('');
      log('| target | concurrency | broker | PostgreSQL | Redis | client | total |');
      log('|---|---|---|---|---|---|---|');
      for (const r of cpu.filter((c) => c.cpuMs)) {
        const c = r.cpuMs!;
        log(`| ${r.target} | ${r.concurrency} | ${round(c.broker, 2)} | ${round(c.postgres, 2)} | ${round(c.redis, 2)} | ${round(c.client, 2)} | ${round(c.broker + c.postgres + c.redis + c.client, 2)} |`);
      }
      log('');
    }
  }
  if (only.has('expiry')) {
    const rows = await benchExpiry(id, { quick });
    results.expiry = rows;
    log('## Mass expiry: leases due in the same second');
    log('');
    log('| leases | login refused after expires_at p50 / p99 (VALID UNTIL, sample) | revoked (sessions ended, role dropped) after expires_at p50 / p99 / max | revocations/s | bare DROP ROLE/s (16 conns) | ratio | first due to all revoked: Tessera / bare DROP ROLE paced the same (16 conns) | paced ratio | CPU per lease: broker / PostgreSQL / Redis |');
    log('|---|---|---|---|---|---|---|---|---|');
    for (const r of rows) {
      log(`| ${r.leases.toLocaleString('en')} | ${ms(r.loginRefusedMs.p50)} / ${ms(r.loginRefusedMs.p99)} | ${ms(r.latenessMs.p50)} / ${ms(r.latenessMs.p99)} / ${ms(r.latenessMs.max)} | ${round(r.revokeRate, 0)} | ${round(r.rawDropRate, 0)} | **${round(r.ratio, 2)}×** | ${round(r.paced.tesseraSeconds, 2)} s / ${round(r.paced.rawSeconds, 2)} s | **${round(r.paced.ratio, 2)}×** | ${round(r.cpuMs.broker, 2)} / ${round(r.cpuMs.postgres, 2)} / ${round(r.cpuMs.redis, 2)} ms |`);
    }
    log('');
    log('The leases fall due over one second, so the unpaced ratio cannot exceed n / (1 s + lateness) over the bare loop\'s rate however fast revocation is; the paced loop drops each role no earlier than its lease fell due, on 16 connections, and the paced ratio is its time over Tessera\'s.');
    log('');
  }
  if (only.has('scale')) {
    const rows = await benchScale(id, { quick });
    results.scale = rows;
    log('## Scale: active leases in the store');
    log('');
    log('| leases | start-up to ready | RSS at ready | RSS after issuing | issue p50 / p95 / p99 (conc. 4) |');
    log('|---|---|---|---|---|');
    for (const r of rows) log(`| ${r.leases.toLocaleString('en')} | ${ms(r.startupMs)} | ${round(r.rssReadyMb, 0)} MB | ${round(r.rssAfterMb, 0)} MB | ${lat(r.issue)} |`);
    log('');
  }
  if (only.has('rotation')) {
    const rs: RotationResult[] = [];
    // The product's default (16 rounds, a login per new password), the opt-in mode, and 4096 rounds.
    const runs = [
      { verifyLogins: 'every_password', iterations: 16 },
      { verifyLogins: 'once_per_configuration', iterations: 16 },
      { verifyLogins: 'every_password', iterations: 4096 },
    ] as const;
    for (const run of runs) rs.push(await benchRotation(id, { quick, ...run }));
    results.rotation = rs;
    log(`## Rotation: emergency rotation of ${rs[0].secrets} static secrets on one connection`);
    log('');
    log(
      '| verify_logins | SCRAM rounds | every exposed password replaced | Tessera (request to all verified and promoted) | rotations/s | bare ALTER ROLE PASSWORD plaintext/s | ratio | same with a verifier of these rounds/s | ratio | bare logins/s | CPU per rotation: broker / PostgreSQL / Redis |',
    );
    log('|---|---|---|---|---|---|---|---|---|---|---|');
    for (const r of rs) {
      const cpu = `${round(r.cpuMs.broker, 2)} / ${round(r.cpuMs.postgres, 2)} / ${round(r.cpuMs.redis, 2)} ms`;
      log(
        `| ${r.verifyLogins} | ${r.iterations} | ${round(r.replacedSeconds, 2)} s | ${round(r.seconds, 2)} s | ${round(r.rate, 0)} | ${round(r.raw.rate, 0)} | **${round(r.ratio, 2)}×** | ${round(r.rawVerifier.rate, 0)} | ${round(r.ratioVerifier, 2)}× | ${round(r.rawLogin.rate, 0)} | ${cpu} |`,
      );
    }
    log('');
    log(
      'Bare loops over 16 connections on the same roles, right after. The plaintext loop is what a script sends (PostgreSQL makes a 4096-round verifier and checks it against the empty password); the verifier loop sends what Tessera sends, computed by the client; the login loop connects and disconnects as each role (a verifier of these rounds), which is what verifying a new password by logging in costs on its own. ' +
        'Every Tessera rotation is verified: with every_password by a login with the new password; with once_per_configuration from pg_authid after one login per role under the current configuration. ' +
        'Taking ownership (one rotation per secret, each logging in) is not measured; with once_per_configuration those logins are what lets the emergency rotation log in no more, as after any earlier rotation in the same configuration (a reload or a broker restart brings one login per role back). ' +
        "PostgreSQL CPU includes the backends that ended meanwhile (the logins), through the postmaster's children's times.",
    );
    log('');
  }
  if (only.has('horizontal')) {
    const r = await benchHorizontal(id, { quick });
    results.horizontal = r;
    log('## Horizontal: issue throughput at concurrency 32 (scram 1)');
    log('');
    log('| one broker (with worker) | two brokers + one worker | ratio |');
    log('|---|---|---|');
    log(`| ${rate(r.one)} (p99 ${ms(r.one.p99)}) | ${rate(r.two)} (p99 ${ms(r.two.p99)}) | **${round(r.ratio, 2)}×** |`);
    log('');
  }
  if (only.has('redis')) {
    const rows = await benchRedis(id, { quick });
    results.redis = rows;
    log('## Redis: issuing ACL users vs a raw `ACL SETUSER` loop (the one command the plugin sends)');
    log('');
    log('| path | concurrency | Tessera rate | raw ACL SETUSER rate | ratio | Tessera p50 / p95 / p99 | raw p50 / p95 / p99 |');
    log('|---|---|---|---|---|---|---|');
    for (const r of rows) log(`| ${r.path} | ${r.concurrency} | ${rate(r.tessera)} | ${rate(r.raw)} | **${round(r.ratio, 2)}×** | ${lat(r.tessera)} | ${lat(r.raw)} |`);
    log('');
  }
  if (only.has('sts')) {
    const rows = await benchSts(id, { quick });
    results.sts = rows;
    log('## STS issue: HTTP API (assumed_role) vs a raw AssumeRole loop, same IAM test server');
    log('');
    log('| concurrency | Tessera rate | raw operation | raw rate | ratio | Tessera p50 / p95 / p99 | raw p50 / p95 / p99 |');
    log('|---|---|---|---|---|---|---|');
    for (const r of rows) log(`| ${r.concurrency} | ${rate(r.tessera)} | ${r.baseline} | ${rate(r.raw)} | **${round(r.ratio, 2)}×** | ${lat(r.tessera)} | ${lat(r.raw)} |`);
    log('');
  }
  log(`Total bench time: ${round((Date.now() - started) / 1000, 0)} s. Reproduce: \`npm run bench${quick ? ' -- --quick' : ''}\`.`);

  mkdirSync('bench/results', { recursive: true });
  // A run of some sections keeps its own files: it never replaces the day's full run, nor latest.json.
  const part = onlyArg ? `-only-${[...only].join('-')}` : '';
  const dated = `bench/results/${new Date().toISOString().slice(0, 10)}${quick ? '-quick' : ''}${part}`;
  if (!part) writeFileSync('bench/results/latest.json', `${JSON.stringify(results, null, 2)}\n`);
  writeFileSync(`${dated}.json`, `${JSON.stringify(results, null, 2)}\n`);
  writeFileSync(`${dated}.md`, `${md.join('\n')}\n`);
}

main().then(
  () => process.exit(0),
  (err) => {
    process.stderr.write(`bench failed: ${err instanceof Error ? err.stack : err}\n`);
    process.exit(1);
  },
);
