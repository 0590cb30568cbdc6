import { Command } from 'commander';
import { addClientOptions, clientAction, clientFor, outputFormat } from './context';
import { printExports, printJson, printRecord } from './output';
import { credentialVars } from './run-env';

interface CredsOptions {
  ttl?: string;
  runId?: string;
}

/** Leases one credential and prints it. The lease stays until its TTL or `tessera leases revoke`. */
export function registerCreds(program: Command): void {
  const cmd = program
    .command('creds')
    .description('lease a credential and print it (revoke it later with `tessera leases revoke ID`)')
    .argument('<role>', 'role to lease')
    .option('--ttl <duration>', "lease TTL such as 90s, 15m, 1h (default: the role's default_ttl)")
    .option('--run-id <id>', 'run id to record on the lease');
  addClientOptions(cmd, ['table', 'json', 'env']).action(
    clientAction(async (role: string, opts: CredsOptions) => {
      const lease = await clientFor(cmd).issue(role, { ttl: opts.ttl, runId: opts.runId });
      const format = outputFormat(cmd, 'table');
      if (format === 'json') printJson(lease);
      else if (format === 'env') printExports({ ...credentialVars(lease.plugin, lease.credentials), TESSERA_LEASE_ID: lease.lease_id });
      else {
        const creds = Object.fromEntries(Object.entries(lease.credentials).map(([k, v]) => [`credentials.${k}`, v]));
        const { lease_id, role: leased, plugin, ttl_seconds, expires_at, max_expires_at, renewable } = lease;
        printRecord({ lease_id, role: leased, plugin, ttl_seconds, expires_at, max_expires_at, renewable, ...creds });
      }
    }),
  );
}
