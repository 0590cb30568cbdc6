import { ChildProcess, spawn } from 'node:child_process';
import { join } from 'node:path';

const BIN = join(__dirname, '..', '..', 'bin', 'tessera.js');

export interface CliProcess {
  child: ChildProcess;
  stdout(): string;
  stderr(): string;
  /** stderr lines with the time each arrived (ms since epoch), for "warned before X" assertions. */
  stderrLines(): { at: number; line: string }[];
  /** Resolves when the process has exited. */
  exited: Promise<{ code: number | null; signal: NodeJS.Signals | null }>;
  /** Resolves when the process has exited and its pipes are closed. */
  closed: Promise<void>;
  /** Resolves when stdout matches. */
  waitForStdout(pattern: RegExp, timeoutMs?: number): Promise<void>;
}

/**
 * The environment a CLI test gives `tessera`: the test's own, minus anything that could satisfy a
 * login or select a broker by accident, so only what the test passes (and `tessera run` injects) counts.
 */
export function cliEnv(extra: Record<string, string | undefined>): NodeJS.ProcessEnv {
  const env: NodeJS.ProcessEnv = {};
  for (const [k, v] of Object.entries(process.env)) if (!/^(PG|TESSERA_|DATABASE_URL$|MYSQL_|AWS_)/.test(k)) env[k] = v;
  for (const [k, v] of Object.entries(extra)) if (v !== undefined) env[k] = v;
  return env;
}

/** Starts `node bin/tessera.js ...` (the built CLI, as users run it). */
export function spawnCli(args: readonly string[], env: NodeJS.ProcessEnv): CliProcess {
  const child = spawn(process.execPath, [BIN, ...args], { env, stdio: ['ignore', 'pipe', 'pipe'] });
  let out = '';
  let err = '';
  let partial = '';
  const lines: { at: number; line: string }[] = [];
  const watchers: (() => void)[] = [];
  child.stdout!.on('data', (chunk: Buffer) => {
    out += chunk.toString();
    watchers.forEach((w) => w());
  });
  child.stderr!.on('data', (chunk: Buffer) => {
    err += chunk.toString();
    partial += chunk.toString();
    const parts = partial.split('\n');
    partial = parts.pop()!;
    for (const line of parts) lines.push({ at: Date.now(), line });
  });
  // 'exit', not 'close': a grandchild left behind may hold the pipes open.
  const exited = new Promise<{ code: number | null; signal: NodeJS.Signals | null }>((resolve) => child.once('exit', (code, signal) => resolve({ code, signal })));
  const closed = new Promise<void>((resolve) => child.once('close', () => resolve()));
  return {
    child,
    closed,
    stdout: () => out,
    stderr: () => err,
    stderrLines: () => lines,
    exited,
    waitForStdout(pattern, timeoutMs = 20_000) {
      return new Promise((resolve, reject) => {
        const timer = setTimeout(() => reject(new Error(`stdout never matched ${pattern}: ${out} / stderr: ${err}`)), timeoutMs);
        const check = () => {
          if (pattern.test(out)) {
            clearTimeout(timer);
            resolve();
          }
        };
        watchers.push(check);
        check();
        void exited.then(() => setTimeout(() => {
          if (!pattern.test(out)) {
            clearTimeout(timer);
            reject(new Error(`exited before stdout matched ${pattern}: ${out} / stderr: ${err}`));
          }
        }, 50));
      });
    },
  };
}

/** Runs the CLI to completion. */
export async function runCli(args: readonly string[], env: NodeJS.ProcessEnv): Promise<{ code: number | null; signal: NodeJS.Signals | null; stdout: string; stderr: string }> {
  const cli = spawnCli(args, env);
  try {
    const { code, signal } = await cli.exited;
    // Let the pipes drain ('close'), but not forever: a grandchild left behind may hold them open.
    await Promise.race([cli.closed, new Promise((r) => setTimeout(r, 1000))]);
    return { code, signal, stdout: cli.stdout(), stderr: cli.stderr() };
  } finally {
    killQuietly(cli.child);
  }
}

export function killQuietly(child: ChildProcess): void {
  if (child.exitCode === null && child.signalCode === null) child.kill('SIGKILL');
}
