import { Command } from 'commander';
import { addClientOptions, clientAction, clientFor, outputFormat } from './context';
import { ExitCode } from './exit-codes';
import { printJson } from './output';

export function registerAudit(program: Command): void {
  const audit = program.command('audit').description('the audit trail (operators)');
  const verify = audit.command('verify').description('check the audit hash chain; exits 1 if it is broken');
  addClientOptions(verify).action(
    clientAction(async () => {
      const result = await clientFor(verify).auditVerify();
      if (outputFormat(verify, 'table') === 'json') printJson(result);
      else if (result.ok) process.stdout.write(`audit chain intact: ${result.events_checked} events checked\n`);
      else process.stdout.write(`audit chain BROKEN at event ${result.first_bad_id} (${result.events_checked} events checked)\n`);
      return result.ok ? ExitCode.Ok : ExitCode.Error;
    }),
  );
}
