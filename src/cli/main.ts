import { Command } from 'commander';
import { createServer, createWorker } from '../app';
import { ConfigError, loadConfigFile, resolveConfigPath } from '../config/config.loader';
import { migrate } from '../storage/migrator';

function load(flag: string | undefined) {
  return loadConfigFile(resolveConfigPath(flag));
}

export function main(argv: string[]): void {
  const program = new Command('tessera').description('Dynamic secrets broker: workload identity in, just-in-time credentials out.');

  program
    .command('server')
    .description('serve the HTTP API (and, unless --no-worker, run the job processors); applies pending migrations first')
    .option('--config <path>', 'config file (default: $TESSERA_CONFIG or config/tessera.yaml)')
    .option('--no-worker', 'serve HTTP only; run `tessera worker` processes for the jobs')
    .action(async (opts: { config?: string; worker: boolean }) => {
      const config = load(opts.config);
      const app = await createServer(config, { worker: opts.worker });
      process.stderr.write(`tessera: listening on ${await app.getUrl()}\n`);
    });

  program
    .command('worker')
    .description('run only the job processors and the reconciler')
    .option('--config <path>', 'config file')
    .action(async (opts: { config?: string }) => {
      await createWorker(load(opts.config));
      process.stderr.write('tessera: worker running\n');
    });

  program
    .command('migrate')
    .description('create the state database if needed and apply pending migrations')
    .option('--config <path>', 'config file')
    .action(async (opts: { config?: string }) => {
      const applied = await migrate(load(opts.config).storage.postgres_url);
      process.stdout.write(applied.length ? `applied migrations ${applied.join(', ')}\n` : 'schema up to date\n');
    });

  program.parseAsync(argv).catch((err: unknown) => {
    process.stderr.write(`tessera: ${err instanceof ConfigError ? err.message : (err as Error)?.message ?? err}\n`);
    process.exit(err instanceof ConfigError ? 2 : 1);
  });
}
