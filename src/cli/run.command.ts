import { Command, InvalidArgumentError } from 'commander';
import { randomUUID } from 'node:crypto';
import { parseDuration } from '../../plugins/contract/duration';
import { BrokerUnreachableError, IssuedLease, LeaseKeeper, TesseraApiError, TesseraClient, retrying, revokeWithRetry } from '../client';
import { addClientOptions, clientAction, clientFor, collect } from './context';
import { DEFAULT_KILL_TIMEOUT_SECONDS, SignalRelay, runChild, signalExitCode } from './child-process';
import { CliError, ExitCode, describeError } from './exit-codes';
import { childEnv, staticVars } from './run-env';

interface RunOptions {
  role?: string[];
  ttl?: string;
  runId?: string;
  static?: string[];
  killTimeout: number;
}

const warn = (message: string) => process.stderr.write(`tessera: ${message}\n`);

export function registerRun(program: Command): void {
  const cmd = program
    .command('run')
    .description('lease credentials, run a command with them in its environment, renew while it runs, revoke when it exits')
    .usage('--role ROLE [--role ROLE2 ...] [--ttl 15m] [--run-id ID] [--static NAME] [--kill-timeout 10s] -- CMD [ARGS...]')
    .option('--role <role>', 'role to lease (repeat for several)', collect)
    .option('--ttl <duration>', "lease TTL such as 90s, 15m, 1h (default: the role's default_ttl)")
    .option('--run-id <id>', 'run id recorded on every lease (default: a new random one)')
    .option('--static <name>', 'also inject a static secret (repeatable)', collect)
    .option('--kill-timeout <duration>', 'after forwarding SIGTERM, wait this long (e.g. 10s) before sending SIGKILL', parseKillTimeout, DEFAULT_KILL_TIMEOUT_SECONDS)
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
  const relay = new SignalRelay(opts.killTimeout * 1000, warn);
  relay.install();
  const leases: IssuedLease[] = [];
  const keepers: LeaseKeeper[] = [];
  // An issue whose answer was lost may still have made a lease that nobody here knows of.
  let unknownOutcome = false;
  try {
    const statics = await fetchStatics(client, opts.static ?? []);
    const results = await Promise.allSettled(roles.map((role) => client.issue(role, { ttl: opts.ttl, runId })));
    for (const r of results) if (r.status === 'fulfilled') leases.push(r.value);
    const failed = results.filter((r): r is PromiseRejectedResult => r.status === 'rejected');
    unknownOutcome = failed.some((r) => answerLost(r.reason));
    if (failed.length) throw failed[0].reason;
    if (relay.received) return signalExitCode(relay.received);

    for (const lease of leases) keepers.push(new LeaseKeeper(client, lease, { onWarning: warn, onLost: warn }));
    keepers.forEach((k) => k.start());
    const exit = await runChild(command[0], command.slice(1), childEnv(process.env, leases, runId, statics), relay);
    return exit.code;
  } finally {
    keepers.forEach((k) => k.stop());
    const latest = [...leases.map((l) => l.expires_at), ...keepers.map((k) => k.expiresAtIso)].sort().at(-1);
    await revokeAll(client, leases, runId, opts.runId === undefined, latest, unknownOutcome);
  }
}

function parseKillTimeout(value: string): number {
  const seconds = parseDuration(value);
  if (seconds === undefined) throw new InvalidArgumentError('must be a duration such as 10s, 1m or whole seconds');
  return seconds;
}

/** Failures to connect at all: the request was never sent, so the broker made nothing. */
const NOT_SENT = new Set(['ECONNREFUSED', 'ENOTFOUND', 'EAI_AGAIN', 'EHOSTUNREACH', 'ENETUNREACH', 'UND_ERR_CONNECT_TIMEOUT']);

/**
 * The request may have reached the broker and its answer been lost: no answer in time, the connection
 * dropped after sending, or a gateway in between gave up on the broker.
 */
function answerLost(err: unknown): boolean {
  if (err instanceof BrokerUnreachableError) return !NOT_SENT.has(err.reason);
  return err instanceof TesseraApiError && (err.status === 502 || err.status === 504 || err.code === 'bad_response');
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
 * With a run id of its own, one revoke-owned call ends the whole run, including a lease whose issue
 * answer was lost (its id is unknown here, its run id is not). A run id the user gave may be shared
 * with other processes (one CI job's steps, say), so then each known lease is revoked by id and the
 * siblings' leases are left alone; a lease whose answer was lost is then only reported, with the run
 * id to revoke it by.
 */
async function revokeAll(
  client: TesseraClient,
  leases: readonly IssuedLease[],
  runId: string,
  ownRunId: boolean,
  latestExpiry: string | undefined,
  unknownOutcome: boolean,
): Promise<void> {
  if (!leases.length && !unknownOutcome) return;
  try {
    if (ownRunId) await retrying(() => client.revokeOwned(runId));
    else await Promise.all(leases.map((l) => revokeWithRetry(client, l.lease_id)));
  } catch (err) {
    warn(`could not revoke the leases of run ${runId}: ${describeError(err)}; they end at their TTL${latestExpiry ? ` (by ${latestExpiry})` : ''}`);
    return;
  }
  if (unknownOutcome && !ownRunId) {
    warn(`an issue request's answer was lost, so a lease of run ${runId} may exist that this run never saw; find it with \`tessera leases list --run-id ${runId}\` and revoke it by id (or let its TTL end it)`);
  }
}
