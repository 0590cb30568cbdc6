import type { NextFunction, Request, Response } from 'express';
import type { Logger } from 'pino';

/** Levels at which every request gets an access-log line (`log.level`). */
const ACCESS_LEVELS = new Set(['trace', 'debug', 'info']);

export function accessLogged(level: string): boolean {
  return ACCESS_LEVELS.has(level);
}

/**
 * One line per answered request at info: its id, method, path and status, and how long it took. The
 * path only: a query string can carry what must not be logged (an OIDC authorization code, a token a
 * client put in the URL). Nothing is bound to the request for the code that serves it (no child
 * logger, no async-local context), so a request costs one log call, made after its answer is sent.
 */
export function accessLog(logger: () => Logger) {
  return (req: Request & { id?: string }, res: Response, next: NextFunction): void => {
    const started = performance.now();
    res.once('finish', () => {
      const url = req.originalUrl ?? req.url;
      const q = url.indexOf('?');
      logger().info(
        { req: { id: req.id, method: req.method, url: q < 0 ? url : url.slice(0, q) }, res: { statusCode: res.statusCode }, responseTime: Math.round(performance.now() - started) },
        'request completed',
      );
    });
    next();
  };
}
