import type { NextFunction, Request, Response } from 'express';
import type { Logger } from 'pino';

/** Levels at which every request gets an access-log line (`log.level`). */
const ACCESS_LEVELS = new Set(['trace', 'debug', 'info']);

export function accessLogged(level: string): boolean {
  return ACCESS_LEVELS.has(level);
}

/**
 * One line per request at info: its id, method, path and status, and how long it took; a request
 * whose client went away before the answer was sent is logged as aborted. The
 * path only: a query string can carry what must not be logged (an OIDC authorization code, a token a
 * client put in the URL). Nothing is bound to the request for the code that serves it (no child
 * logger, no async-local context), so a request costs one log call, made after its answer is sent.
 */
export function accessLog(logger: () => Logger) {
  return (req: Request & { id?: string }, res: Response, next: NextFunction): void => {
    const started = performance.now();
    // 'close' comes once per response: after it was sent, or when the client went away first.
    res.once('close', () => {
      const url = req.originalUrl ?? req.url;
      const q = url.indexOf('?');
      const path = (q < 0 ? url : url.slice(0, q)).slice(0, MAX_PATH);
      // A request left before its answer began has no status (Node's default 200 would mislead).
      const line = { req: { id: req.id, method: req.method, url: path }, res: { statusCode: res.headersSent ? res.statusCode : null }, responseTime: Math.round(performance.now() - started) };
      if (res.writableFinished) logger().info(line, 'request completed');
      else logger().info(line, 'request aborted');
    });
    next();
  };
}

/** The longest path written (the rest of a longer one is cut off). */
const MAX_PATH = 512;
