import { ChildProcess, spawn } from 'node:child_process';
import { constants } from 'node:os';
import { CliError, ExitCode } from './exit-codes';

/** Signals `tessera run` passes on to its child (and which therefore do not kill `tessera run` itself). */
export const FORWARDED_SIGNALS: readonly NodeJS.Signals[] = ['SIGINT', 'SIGTERM', 'SIGHUP'];

export interface ChildExit {
  /** The exit code `tessera run` should use: the child's, or 128 + signal number. */
  code: number;
}

/**
 * Receives SIGINT/SIGTERM/SIGHUP for the whole life of `tessera run`: before the child exists the
 * signal is remembered (so leasing can be undone), while it runs it is forwarded, and afterwards it is
 * ignored so revocation is not cut short.
 */
export class SignalRelay {
  private child: ChildProcess | undefined;
  private pending: NodeJS.Signals | undefined;
  private readonly handler = (signal: NodeJS.Signals) => {
    if (this.child && this.child.exitCode === null && this.child.signalCode === null) this.child.kill(signal);
    else if (!this.child) this.pending ??= signal;
  };

  install(): void {
    for (const signal of FORWARDED_SIGNALS) process.on(signal, this.handler);
  }

  uninstall(): void {
    for (const signal of FORWARDED_SIGNALS) process.off(signal, this.handler);
  }

  /** A signal received before the child started, if any. */
  get received(): NodeJS.Signals | undefined {
    return this.pending;
  }

  attach(child: ChildProcess): void {
    this.child = child;
  }
}

export function signalExitCode(signal: NodeJS.Signals): number {
  return 128 + (constants.signals[signal] ?? 0);
}

/** Runs the command with inherited stdio and resolves when it exits, however it exits. */
export function runChild(command: string, args: readonly string[], env: NodeJS.ProcessEnv, relay: SignalRelay): Promise<ChildExit> {
  return new Promise((resolve, reject) => {
    const child = spawn(command, args, { stdio: 'inherit', env });
    relay.attach(child);
    let settled = false;
    child.once('error', (err: NodeJS.ErrnoException) => {
      if (settled) return;
      settled = true;
      if (err.code === 'ENOENT') reject(new CliError(`cannot run ${JSON.stringify(command)}: command not found`, ExitCode.CommandNotFound));
      else if (err.code === 'EACCES') reject(new CliError(`cannot run ${JSON.stringify(command)}: permission denied`, ExitCode.CannotExecute));
      else reject(new CliError(`cannot run ${JSON.stringify(command)}: ${err.code ?? err.message}`, ExitCode.CannotExecute));
    });
    child.once('exit', (code, signal) => {
      if (settled) return;
      settled = true;
      if (signal) resolve({ code: signalExitCode(signal) });
      else resolve({ code: code ?? ExitCode.Error });
    });
  });
}
