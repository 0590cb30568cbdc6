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
      else {
        const reason = (result as { reason?: unknown }).reason;
        process.stdout.write(`audit chain BROKEN at event ${result.first_bad_id} (${result.events_checked} events checked)${typeof reason === 'string' ? `: ${reason}` : ''}\n`);
      }
      return result.ok ? ExitCode.Ok : ExitCode.Error;
    }),
  );

  audit
    .command('seal-legacy')
    .description(
      'accept the audit events written before the chain was keyed (verify reports them until then): records their end in a keyed ' +
        'audit.keyed event. Reads the state database with the broker\'s config; run it only when you know those events were not rewritten',
    )
    .option('--config <path>', 'config file (default: $TESSERA_CONFIG or config/tessera.yaml)')
    .action(async (opts: { config?: string }) => {
      const { loadConfigFile, resolveConfigPath } = await import('../config/config.loader');
      const config = loadConfigFile(resolveConfigPath(opts.config));
      const { sealLegacyAudit, describeLegacySeal } = await import('../audit/seal-legacy');
      process.stdout.write(`${describeLegacySeal(await sealLegacyAudit(config))}\n`);
    });
}
