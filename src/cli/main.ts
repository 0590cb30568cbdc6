import { Command, CommanderError } from 'commander';
import { registerAudit } from './audit.command';
import { addClientOptions } from './context';
import { registerCreds } from './creds.command';
import { describeError, exitCodeFor } from './exit-codes';
import { registerLeases } from './leases.command';
import { registerRoles } from './roles.command';
import { registerRotate } from './rotate.command';
import { registerRun } from './run.command';
import { registerWhoami } from './whoami.command';

// The broker's modules (NestJS, plugins, SDKs) load only for the commands that run it, so client
// commands such as `tessera run` start quickly.
async function load(flag: string | undefined) {
  const { loadConfigFile, resolveConfigPath } = await import('../config/config.loader');
  return loadConfigFile(resolveConfigPath(flag));
}

export function main(argv: string[]): void {
  const program = new Command('tessera')
    .description('Dynamic secrets broker: workload identity in, just-in-time credentials out.')
    // Usage errors become exit code 2 (see exit-codes.ts) instead of commander's default 1.
    .exitOverride()
    // Lets `run` pass everything after the command name to the child.
    .enablePositionalOptions();
  addClientOptions(program);

  program
    .command('server')
    .description('serve the HTTP API (and, unless --no-worker, run the job processors); applies pending migrations first')
    .option('--config <path>', 'config file (default: $TESSERA_CONFIG or config/tessera.yaml)')
    .option('--no-worker', 'serve HTTP only; run `tessera worker` processes for the jobs')
    .action(async (opts: { config?: string; worker: boolean }) => {
      const config = await load(opts.config);
      const { createServer } = await import('../app');
      const app = await createServer(config, { worker: opts.worker });
      process.stderr.write(`tessera: listening on ${await app.getUrl()}\n`);
    });

  program
    .command('worker')
    .description('run only the job processors and the reconciler')
    .option('--config <path>', 'config file')
    .action(async (opts: { config?: string }) => {
      const config = await load(opts.config);
      const { createWorker } = await import('../app');
      await createWorker(config);
      process.stderr.write('tessera: worker running\n');
    });

  program
    .command('migrate')
    .description('create the state database if needed and apply pending migrations')
    .option('--config <path>', 'config file')
    .action(async (opts: { config?: string }) => {
      const config = await load(opts.config);
      const { migrate } = await import('../storage/migrator');
      const applied = await migrate(config.storage.postgres_url);
      process.stdout.write(applied.length ? `applied migrations ${applied.join(', ')}\n` : 'schema up to date\n');
    });

  registerRun(program);
  registerCreds(program);
  registerLeases(program);
  registerWhoami(program);
  registerAudit(program);
  registerRotate(program);
  registerRoles(program);

  program.parseAsync(argv).catch((err: unknown) => {
    const code = exitCodeFor(err);
    // Commander has already printed its own usage errors (and help).
    if (!(err instanceof CommanderError)) process.stderr.write(`tessera: ${describeError(err)}\n`);
    process.exit(code);
  });
}
