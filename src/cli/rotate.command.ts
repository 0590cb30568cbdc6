import { Command } from 'commander';
import { RotationStatus, TesseraApiError, TesseraClient } from '../client';
import { addClientOptions, clientAction, clientFor, outputFormat } from './context';
import { CliError, ExitCode } from './exit-codes';
import { printJson, printTable } from './output';

interface RotateOptions {
  connection?: string;
  reason?: string;
  wait?: boolean;
}

const POLL_MS = 1000;
const WAIT_LIMIT_MS = 10 * 60_000;

export function registerRotate(program: Command): void {
  const cmd = program
    .command('rotate')
    .description('rotate a static secret now, or (emergency) every static secret on a connection (operators)')
    .argument('[name]', 'static secret to rotate')
    .option('--connection <name>', 'rotate every static secret on this connection')
    .option('--reason <text>', 'recorded in the audit trail')
    .option('--wait', 'wait until the rotation(s) finish; exit 1 if one fails');
  addClientOptions(cmd).action(
    clientAction(async (name: string | undefined, opts: RotateOptions) => {
      if ((name === undefined) === (opts.connection === undefined)) throw new CliError('give a static secret NAME or --connection NAME (one of them)', ExitCode.Usage);
      const client = clientFor(cmd);
      let ids: string[];
      try {
        ids = name !== undefined ? [(await client.rotateStatic(name, { reason: opts.reason })).rotation_id] : (await client.rotateConnection(opts.connection!)).rotation_ids;
      } catch (err) {
        if (err instanceof TesseraApiError && err.routeMissing) throw new CliError('rotation is not available in this version', ExitCode.Usage);
        throw err;
      }
      if (!opts.wait) {
        if (outputFormat(cmd, 'table') === 'json') printJson({ rotation_ids: ids });
        else process.stdout.write(ids.length ? `queued rotation(s): ${ids.join(' ')}\n` : 'nothing to rotate\n');
        return ExitCode.Ok;
      }
      const finished = await Promise.all(ids.map(async (id) => ({ id, ...(await waitFor(client, id)) })));
      if (outputFormat(cmd, 'table') === 'json') printJson({ rotations: finished });
      else printTable(finished.map((r) => ({ rotation_id: r.id, status: r.status, error: r.error })), ['rotation_id', 'status', 'error']);
      return finished.every((r) => r.status === 'succeeded') ? ExitCode.Ok : ExitCode.Error;
    }),
  );
}

async function waitFor(client: TesseraClient, id: string): Promise<RotationStatus> {
  const deadline = Date.now() + WAIT_LIMIT_MS;
  for (;;) {
    const status = await client.getRotation(id);
    if (status.status === 'succeeded' || status.status === 'failed') return status;
    if (Date.now() > deadline) throw new CliError(`rotation ${id} still ${status.status} after ${WAIT_LIMIT_MS / 60_000} minutes`, ExitCode.Error);
    await new Promise((r) => setTimeout(r, POLL_MS));
  }
}
