import { Command, Option } from 'commander';
import { DEFAULT_ADDR, TesseraClient, TokenSource, TokenUnavailableError } from '../client';

/**
 * The options every client command takes. They are declared on the program (`tessera --addr X leases
 * list`) and on each command (`tessera leases list --addr X`); the nearest one wins.
 */
export function addClientOptions(cmd: Command, outputs: readonly string[] = ['table', 'json']): Command {
  cmd
    .option('--addr <url>', `broker address (default: $TESSERA_ADDR or ${DEFAULT_ADDR})`)
    .option('--token-file <path>', 'file holding the token, re-read at every request (default: $TESSERA_TOKEN_FILE, else $TESSERA_TOKEN)');
  if (outputs.length) cmd.addOption(new Option('--output <format>', `output format (default: ${outputs[0]})`).choices(outputs));
  return cmd;
}

/**
 * Wraps a client command's action: it returns an exit code and the process ends with it (idle HTTP
 * keep-alive sockets must not hold a finished command open). Errors go to main's handler.
 */
export function clientAction<A extends unknown[]>(fn: (...args: A) => Promise<number | void>): (...args: A) => Promise<void> {
  return async (...args: A) => {
    const code = await fn(...args);
    process.exit(code ?? 0);
  };
}

/** An option's value from the command or the nearest ancestor that was given it. */
function nearest<T>(cmd: Command, key: string): T | undefined {
  for (let c: Command | null = cmd; c; c = c.parent) {
    const value = c.opts()[key];
    if (value !== undefined) return value as T;
  }
  return undefined;
}

export function outputFormat(cmd: Command, fallback: string): string {
  return nearest<string>(cmd, 'output') ?? fallback;
}

/** Env is read here and nowhere else in the CLI. */
export function clientFor(cmd: Command, env: NodeJS.ProcessEnv = process.env): TesseraClient {
  const tokenFile = nearest<string>(cmd, 'tokenFile') ?? env.TESSERA_TOKEN_FILE;
  let token: TokenSource;
  if (tokenFile) token = { file: tokenFile };
  else if (env.TESSERA_TOKEN) token = env.TESSERA_TOKEN;
  else
    token = async () => {
      throw new TokenUnavailableError('no token: give --token-file PATH or set TESSERA_TOKEN');
    };
  return new TesseraClient({ addr: nearest<string>(cmd, 'addr') ?? env.TESSERA_ADDR ?? DEFAULT_ADDR, token });
}

/** Collects a repeatable option's values. */
export function collect(value: string, previous: string[] | undefined): string[] {
  return [...(previous ?? []), value];
}
