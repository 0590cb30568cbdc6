import { Command } from 'commander';
import { randomUUID } from 'node:crypto';
import { IssuedLease, LeaseKeeper, TesseraApiError, TesseraClient, retrying, revokeWithRetry } from '../client';
import { addClientOptions, clientAction, clientFor, collect } from './context';
import { SignalRelay, runChild, signalExitCode } from './child-process';
import { CliError, ExitCode, describeError } from './exit-codes';
import { childEnv, staticVars } from './run-env';

interface RunOptions {
  role?: string[];
  ttl?: string;
  runId?: string;
  static?: string[];
}

const warn = (message: string) => process.stderr.write(`tessera: ${message}\n`);

export function registerRun(program: Command): void {
  const cmd = program
    .command('run')
    .description('lease credentials, run a command with them in its environment, renew while it runs, revoke when it exits')
    .usage('--role ROLE [--role ROLE2 ...] [--ttl 15m] [--run-id ID] [--static NAME] -- CMD [ARGS...]')
    .option('--role <role>', 'role to lease (repeat for several)', collect)
    .option('--ttl <duration>', "lease TTL such as 90s, 15m, 1h (default: the role's default_ttl)")
    .option('--run-id <id>', 'run id recorded on every lease (default: a new random one)')
    .option('--static <name>', 'also inject a static secret (repeatable)', collect)
    .argument('<command...>', 'the command and its arguments, after --')
    // Everything after the command's name belongs to the command, even without `--`.
    .passThroughOptions();
  addClientOptions(cmd, []).action(clientAction((command: string[], opts: RunOptions) => run(command, opts, cmd)));
}

async function run(command: string[], opts: RunOptions, cmd: Command): Promise<number> {
  const roles = opts.role ?? [];
  if (!roles.length && !opts.static?.length) throw new CliError('give at least one --role ROLE (or --static NAME)', ExitCode.Usage);
  const client = clientFor(cmd);
  const runId = opts.runId ?? `run-${randomUUID()}`;
  const relay = new SignalRelay();
  relay.install();
  const leases: IssuedLease[] = [];
  const keepers: LeaseKeeper[] = [];
  try {
    const statics = await fetchStatics(client, opts.static ?? []);
    const results = await Promise.allSettled(roles.map((role) => client.issue(role, { ttl: opts.ttl, runId })));
    for (const r of results) if (r.status === 'fulfilled') leases.push(r.value);
    const failed = results.find((r): r is PromiseRejectedResult => r.status === 'rejected');
    if (failed) throw failed.reason;
    if (relay.received) return signalExitCode(relay.received);

    for (const lease of leases) keepers.push(new LeaseKeeper(client, lease, { onWarning: warn, onLost: warn }));
    keepers.forEach((k) => k.start());
    const exit = await runChild(command[0], command.slice(1), childEnv(process.env, leases, runId, statics), relay);
    return exit.code;
  } finally {
    keepers.forEach((k) => k.stop());
    const latest = [...leases.map((l) => l.expires_at), ...keepers.map((k) => k.expiresAtIso)].sort().at(-1);
    await revokeAll(client, leases, runId, opts.runId === undefined, latest);
  }
}

async function fetchStatics(client: TesseraClient, names: readonly string[]): Promise<Record<string, string>> {
  const vars: Record<string, string> = {};
  for (const name of names) {
    try {
      Object.assign(vars, staticVars(name, { ...(await client.staticCreds(name)) }));
    } catch (err) {
      if (err instanceof TesseraApiError && err.routeMissing) throw new CliError('static secrets are not available in this version', ExitCode.Usage);
      throw err;
    }
  }
  return vars;
}

/**
 * With a run id of its own, one revoke-owned call ends the whole run. A run id the user gave may be
 * shared with other processes (one CI job's steps, say), so then each lease is revoked by id and the
 * siblings' leases are left alone.
 */
async function revokeAll(client: TesseraClient, leases: readonly IssuedLease[], runId: string, ownRunId: boolean, latestExpiry?: string): Promise<void> {
  if (!leases.length) return;
  try {
    if (ownRunId) await retrying(() => client.revokeOwned(runId));
    else await Promise.all(leases.map((l) => revokeWithRetry(client, l.lease_id)));
  } catch (err) {
    warn(`could not revoke the leases of run ${runId}: ${describeError(err)}; they end at their TTL (by ${latestExpiry})`);
  }
}
