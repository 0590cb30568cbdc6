import { CommanderError } from 'commander';
import { BrokerUnreachableError, InvalidOptionError, TesseraApiError, TokenUnavailableError } from '../client';

/**
 * Exit codes of the client commands, so scripts can tell "fix your command" from "fix your token" from
 * "try again later". `tessera run` exits with its child's code once the child has started.
 */
export enum ExitCode {
  Ok = 0,
  /** Anything else: a broker error (5xx), a broken audit chain, a failed rotation. */
  Error = 1,
  /** Bad usage or input (unknown flag, 400/422 from the broker), or a feature this broker lacks. */
  Usage = 2,
  /** No usable token, 401 (bad or expired token) or 403 (policy or operator-only). */
  Auth = 3,
  /** 404: unknown (or not your) lease or role. */
  NotFound = 4,
  /** 409: the lease is not in a state that allows this (e.g. renewing a revoked lease). */
  Conflict = 5,
  /** Retry may help: broker unreachable, 429, 503. */
  Unavailable = 6,
  /** `tessera run`: the command could not be executed / was not found (as shells do). */
  CannotExecute = 126,
  CommandNotFound = 127,
}

/** A failure the CLI itself detects, with its exit code. */
export class CliError extends Error {
  constructor(
    message: string,
    readonly exitCode: ExitCode,
  ) {
    super(message);
    this.name = 'CliError';
  }
}

export function exitCodeFor(err: unknown): number {
  if (err instanceof CliError) return err.exitCode;
  if (err instanceof CommanderError) return err.exitCode === 0 ? ExitCode.Ok : ExitCode.Usage;
  if (err instanceof InvalidOptionError || (err as Error)?.name === 'ConfigError') return ExitCode.Usage;
  if (err instanceof TokenUnavailableError) return ExitCode.Auth;
  if (err instanceof BrokerUnreachableError) return ExitCode.Unavailable;
  if (err instanceof TesseraApiError) {
    if (err.status === 400 || err.status === 413 || err.status === 422) return ExitCode.Usage;
    if (err.status === 401 || err.status === 403) return ExitCode.Auth;
    if (err.status === 404) return ExitCode.NotFound;
    if (err.status === 409) return ExitCode.Conflict;
    if (err.status === 429 || err.status === 503) return ExitCode.Unavailable;
  }
  return ExitCode.Error;
}

const API_PREFIX: Record<number, string> = {
  400: 'invalid request',
  401: 'authentication failed',
  403: 'permission denied',
  404: 'not found',
  409: 'conflict',
  413: 'request too large',
  422: 'invalid request',
  429: 'rate limited',
  503: 'broker unavailable',
};

/** One line, whatever the error: terminals and log scrapers read these. */
export function describeError(err: unknown): string {
  let text: string;
  if (err instanceof TesseraApiError) {
    const prefix = API_PREFIX[err.status] ?? `broker error (HTTP ${err.status})`;
    const ref = err.requestId ? `${err.code}, request ${err.requestId}` : err.code;
    text = `${prefix}: ${err.message} [${ref}]`;
  } else if (err instanceof Error) {
    text = err.message;
  } else {
    text = String(err);
  }
  return text.replace(/\s+/g, ' ').trim();
}
