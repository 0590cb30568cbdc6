import { ChildProcess, spawn } from 'node:child_process';
import { constants } from 'node:os';
import { CliError, ExitCode } from './exit-codes';

/** Signals `tessera run` passes on to its child (and which therefore do not kill `tessera run` itself). */
export const FORWARDED_SIGNALS: readonly NodeJS.Signals[] = ['SIGINT', 'SIGTERM', 'SIGHUP'];

export interface ChildExit {
  /** The exit code `tessera run` should use: the child's, or 128 + signal number. */
  code: number;
}

/** Default of `--kill-timeout`: how long a child may take to exit after SIGTERM before it gets SIGKILL. */
export const DEFAULT_KILL_TIMEOUT_SECONDS = 10;

/**
 * Receives SIGINT/SIGTERM/SIGHUP for the whole life of `tessera run`: before the child exists the
 * signal is remembered (so leasing can be undone), while it runs it is forwarded, and afterwards it is
 * ignored so revocation is not cut short. A child still running `killTimeoutMs` after a forwarded
 * SIGTERM gets SIGKILL, as container runtimes do, so a child that ignores SIGTERM cannot keep its
 * credentials alive. (SIGINT and SIGHUP have other meanings to many programs, so they arm no timer.)
 */
export class SignalRelay {
  private child: ChildProcess | undefined;
  private pending: NodeJS.Signals | undefined;
  private killTimer: NodeJS.Timeout | undefined;
  private readonly handler = (signal: NodeJS.Signals) => {
    if (this.child && this.running(this.child)) {
      this.child.kill(signal);
      if (signal === 'SIGTERM') this.armKill(this.child);
    } else if (!this.child) this.pending ??= signal;
  };

  constructor(
    private readonly killTimeoutMs = DEFAULT_KILL_TIMEOUT_SECONDS * 1000,
    private readonly onKill: (message: string) => void = () => undefined,
  ) {}

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
    child.once('exit', () => clearTimeout(this.killTimer));
  }

  private running(child: ChildProcess): boolean {
    return child.exitCode === null && child.signalCode === null;
  }

  private armKill(child: ChildProcess): void {
    if (this.killTimer) return;
    this.killTimer = setTimeout(() => {
      if (!this.running(child)) return;
      this.onKill(`the command was still running ${this.killTimeoutMs / 1000}s after SIGTERM; sending SIGKILL`);
      child.kill('SIGKILL');
    }, this.killTimeoutMs);
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
