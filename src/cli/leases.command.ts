import { Command, Option } from 'commander';
import { LeaseState, LeaseView } from '../client';
import { addClientOptions, clientAction, clientFor, outputFormat } from './context';
import { CliError, ExitCode } from './exit-codes';
import { printJson, printRecord, printTable } from './output';

const STATES: readonly LeaseState[] = ['pending', 'active', 'revoking', 'revoked', 'failed', 'revoke_failed'];
const LIST_COLUMNS = ['lease_id', 'role', 'state', 'account', 'run_id', 'expires_at', 'owner'];

interface ListOptions {
  role?: string;
  state?: LeaseState;
  runId?: string;
  owner?: string;
  limit?: string;
  cursor?: string;
}

interface RevokeOptions {
  role?: string;
  connection?: string;
  owner?: string;
  ownerIssuer?: string;
  runId?: string;
}

export function registerLeases(program: Command): void {
  const leases = program.command('leases').description('list, show, renew and revoke leases');

  const list = leases
    .command('list')
    .description('list leases (yours; operators see all)')
    .option('--role <role>')
    .addOption(new Option('--state <state>').choices(STATES))
    .option('--run-id <id>')
    .option('--owner <subject>')
    .option('--limit <n>', 'at most this many (1-1000, default 100)')
    .option('--cursor <cursor>', 'continue from a previous page');
  addClientOptions(list).action(
    clientAction(async (opts: ListOptions) => {
      const limit = opts.limit === undefined ? undefined : Number(opts.limit);
      if (limit !== undefined && !(Number.isInteger(limit) && limit >= 1 && limit <= 1000)) throw new CliError('--limit must be an integer from 1 to 1000', ExitCode.Usage);
      const page = await clientFor(list).listLeases({ role: opts.role, state: opts.state, runId: opts.runId, owner: opts.owner, limit, cursor: opts.cursor });
      if (outputFormat(list, 'table') === 'json') return printJson(page);
      printTable(page.items.map(row), LIST_COLUMNS);
      if (page.next_cursor) process.stderr.write(`more: tessera leases list --cursor ${page.next_cursor}\n`);
    }),
  );

  const show = leases.command('show').description('show one lease').argument('<id>');
  addClientOptions(show).action(clientAction(async (id: string) => printLease(show, await clientFor(show).getLease(id))));

  const renew = leases
    .command('renew')
    .description('extend a lease (capped at its max TTL)')
    .argument('<id>')
    .option('--increment <duration>', "how far from now, such as 15m (default: the role's default_ttl)");
  addClientOptions(renew).action(
    clientAction(async (id: string, opts: { increment?: string }) => printLease(renew, await clientFor(renew).renew(id, { increment: opts.increment }))),
  );

  const revoke = leases
    .command('revoke')
    .description('revoke one lease by id, or (operators) every lease matching --role/--connection/--owner/--run-id')
    .argument('[id]')
    .option('--role <role>')
    .option('--connection <name>')
    .option('--owner <subject>')
    .option('--owner-issuer <name>', "the owner's issuer (needed unless the owner is a SPIFFE ID)")
    .option('--run-id <id>');
  addClientOptions(revoke).action(
    clientAction(async (id: string | undefined, opts: RevokeOptions) => {
      const bulk = opts.role !== undefined || opts.connection !== undefined || opts.owner !== undefined || opts.runId !== undefined;
      if (id !== undefined && bulk) throw new CliError('give a lease id or filters (--role, --connection, --owner, --run-id), not both', ExitCode.Usage);
      if (id === undefined && !bulk) throw new CliError('give a lease id, or filters for a bulk revoke (--role, --connection, --owner, --run-id)', ExitCode.Usage);
      const client = clientFor(revoke);
      const json = outputFormat(revoke, 'table') === 'json';
      if (id !== undefined) {
        const result = await client.revoke(id);
        if (json) return printJson(result);
        process.stdout.write(result.state === 'revoking' ? `${id} revoking (the target is unreachable; the broker keeps retrying)\n` : `${id} ${result.state}\n`);
        return;
      }
      const result = await client.bulkRevoke(opts);
      if (json) return printJson(result);
      process.stdout.write(`${result.matched} lease(s) marked for revocation (job ${result.job_id})\n`);
    }),
  );
}

function row(lease: LeaseView): Record<string, string | null> {
  return { lease_id: lease.lease_id, role: lease.role, state: lease.state, account: lease.account, run_id: lease.run_id, expires_at: lease.expires_at, owner: lease.owner };
}

function printLease(cmd: Command, lease: LeaseView): void {
  if (outputFormat(cmd, 'table') === 'json') return printJson(lease);
  const { lease_id, role, plugin, account, owner, run_id, state, created_at, expires_at, max_expires_at, revoked_at } = lease;
  printRecord({
    lease_id, role, plugin, account, owner, run_id, state, created_at, expires_at, max_expires_at, revoked_at,
    last_error: lease.last_error ?? null,
    // Only operators are shown the target's own words.
    ...(lease.last_error_detail ? { last_error_detail: lease.last_error_detail } : {}),
  });
}
