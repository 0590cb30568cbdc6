import { ArgumentsHost, Catch, ExceptionFilter, HttpException, Logger } from '@nestjs/common';
import type { Request, Response } from 'express';
import { DomainError, STATUS_OF } from '../common/errors';

export interface ErrorBody {
  error: { code: string; message: string; request_id: string };
}

const CODE_OF_STATUS: Record<number, string> = {
  400: 'malformed',
  401: 'unauthenticated',
  403: 'forbidden',
  404: 'not_found',
  405: 'method_not_allowed',
  409: 'conflict',
  413: 'too_large',
  415: 'unsupported_media_type',
  422: 'invalid',
  429: 'rate_limited',
  503: 'unavailable',
};

export function errorBody(req: Request, code: string, message: string): ErrorBody {
  return { error: { code, message, request_id: String((req as { id?: unknown }).id ?? '') } };
}

/**
 * Turns any error into the contract's shape. Domain errors map by kind; anything unexpected is a 500
 * whose details go to the log only (they may name internals), never to the caller.
 */
export function toHttpError(err: unknown): { status: number; code: string; message: string; unexpected: boolean } {
  if (err instanceof DomainError) return { status: STATUS_OF[err.kind], code: err.code, message: err.message, unexpected: false };
  if (err instanceof HttpException) {
    const status = err.getStatus();
    return { status, code: CODE_OF_STATUS[status] ?? 'error', message: status === 404 ? 'no such route' : err.message, unexpected: status >= 500 };
  }
  const bodyError = err as { type?: string; status?: number };
  if (bodyError?.type === 'entity.too.large') return { status: 413, code: 'too_large', message: 'request body too large', unexpected: false };
  if (bodyError?.type === 'entity.parse.failed') return { status: 400, code: 'malformed_json', message: 'request body is not valid JSON', unexpected: false };
  if (typeof bodyError?.status === 'number' && bodyError.status >= 400 && bodyError.status < 500) {
    return { status: bodyError.status, code: CODE_OF_STATUS[bodyError.status] ?? 'malformed', message: 'request could not be read', unexpected: false };
  }
  if (isDependencyDown(err)) return { status: 503, code: 'state_unavailable', message: 'a dependency of the broker is unavailable; try again', unexpected: false };
  return { status: 500, code: 'internal', message: 'internal error', unexpected: true };
}

const NETWORK_CODES = new Set(['ECONNREFUSED', 'ECONNRESET', 'ETIMEDOUT', 'EPIPE', 'EHOSTUNREACH', 'ENOTFOUND']);

/** The state database or Redis unreachable: 503, not 500. */
function isDependencyDown(err: unknown): boolean {
  const e = err as { code?: unknown; message?: unknown };
  if (typeof e?.code === 'string' && (NETWORK_CODES.has(e.code) || /^(08|53|57P)/.test(e.code))) return true;
  return typeof e?.message === 'string' && /timeout exceeded when trying to connect|Connection terminated|Stream isn't writeable|Connection is closed/.test(e.message);
}

export interface HttpError {
  status: number;
  code: string;
  message: string;
}

/**
 * How one API surface writes its errors. The native API writes `{error: {code, message, request_id}}`;
 * another surface (the Vault-compatible API's `{errors: [...]}`) adds its own renderer for its routes
 * instead of editing the filter.
 */
export interface ErrorSurface {
  matches(req: Request): boolean;
  render(req: Request, res: Response, error: HttpError): void;
}

export const nativeErrors: ErrorSurface = {
  matches: () => true,
  render: (req, res, error) => void res.status(error.status).json(errorBody(req, error.code, error.message)),
};

/** Picks the surface of a request (the first that matches; the native API last) and writes the error. */
export class ErrorSurfaces {
  private readonly surfaces: readonly ErrorSurface[];

  constructor(surfaces: readonly ErrorSurface[] = []) {
    this.surfaces = [...surfaces, nativeErrors];
  }

  send(req: Request, res: Response, error: HttpError): void {
    this.surfaces.find((s) => s.matches(req))!.render(req, res, error);
  }
}

@Catch()
export class ErrorFilter implements ExceptionFilter {
  private readonly log = new Logger('http');

  constructor(private readonly surfaces: ErrorSurfaces = new ErrorSurfaces()) {}

  catch(err: unknown, host: ArgumentsHost): void {
    const ctx = host.switchToHttp();
    const req = ctx.getRequest<Request>();
    const res = ctx.getResponse<Response>();
    const mapped = toHttpError(err);
    if (mapped.unexpected) this.log.error(`unexpected error on ${req.method} ${req.path} (request ${(req as { id?: string }).id ?? 'unknown'}): ${(err as Error)?.stack ?? err}`);
    if (res.headersSent) return;
    // Readiness failures keep terminus's per-dependency report as the body.
    if (err instanceof HttpException && err.getStatus() === 503 && isHealthReport(err.getResponse())) {
      res.status(503).json(err.getResponse());
      return;
    }
    this.surfaces.send(req, res, mapped);
  }
}

function isHealthReport(body: unknown): boolean {
  return typeof body === 'object' && body !== null && 'details' in body && 'status' in body;
}
