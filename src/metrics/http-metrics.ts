import type { NextFunction, Request, Response } from 'express';
import type { Metrics } from './metrics';

/** The `route` label of a request that no route matched: a 404 for an unknown path, or an answer given before routing. */
export const UNMATCHED = 'unmatched';

/** A path that is nothing but a wildcard (`/{*path}`, `*`): the route of middleware applied to every path, not an endpoint. */
const CATCH_ALL = /^\/?(\{\*\w*\}|\*\w*)$/;

/**
 * The route label of an answered request: the template of the route that handled it (`/v1/leases/:id`),
 * never the path it was asked for, so ids and names in paths never reach a label. Middleware that Nest
 * applies to every path is itself an Express route (`/{*path}`): a request whose last route is such a
 * catch-all reached no endpoint, and is `unmatched`, like one that matched no route at all.
 */
export function routeLabel(req: Pick<Request, 'route' | 'baseUrl'>): string {
  const path: unknown = req.route?.path;
  if (typeof path !== 'string' || path === '' || CATCH_ALL.test(path)) return UNMATCHED;
  return `${req.baseUrl ?? ''}${path}`;
}

/** Counts every response in tessera_http_requests_total{route,status} once it is sent. */
export function httpRequestMetrics(metrics: Pick<Metrics, 'httpRequests'>) {
  return (req: Request, res: Response, next: NextFunction): void => {
    res.once('finish', () => metrics.httpRequests.inc({ route: routeLabel(req), status: String(res.statusCode) }));
    next();
  };
}
