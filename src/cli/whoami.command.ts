import { Command } from 'commander';
import { addClientOptions, clientAction, clientFor, outputFormat } from './context';
import { printJson, printRecord } from './output';

export function registerWhoami(program: Command): void {
  const cmd = program.command('whoami').description('show the identity the broker sees in your token');
  addClientOptions(cmd).action(
    clientAction(async () => {
      const me = await clientFor(cmd).whoami();
      if (outputFormat(cmd, 'table') === 'json') printJson(me);
      else printRecord({ subject: me.subject, issuer: me.issuer, operator: me.operator });
    }),
  );
}
