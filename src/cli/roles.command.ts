import { Command } from 'commander';
import { addClientOptions, clientAction, clientFor, outputFormat } from './context';
import { printJson } from './output';

export function registerRoles(program: Command): void {
  const roles = program.command('roles').description('operator actions on configured roles');
  const cmd = roles
    .command('revoke-sessions')
    .description('emergency: every session an assumed_role role issued so far stops working (operators)')
    .argument('<role>', 'the role');
  addClientOptions(cmd).action(
    clientAction(async (role: string) => {
      const out = await clientFor(cmd).revokeRoleSessions(role);
      if (outputFormat(cmd, 'table') === 'json') printJson(out);
      else process.stdout.write(`sessions of role ${out.role} issued before ${out.revoked_before} are revoked\n`);
    }),
  );
}
