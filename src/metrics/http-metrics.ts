import type { NextFunction, Request, Response } from 'express';
import type { Metrics } from './metrics';

/** The `route` label of a request that no route matched: a 404 for an unknown path, or an answer given before routing. */
export const UNMATCHED = 'unmatched';

/**
 * The route label of an answered request: the template of the route that handled it (`/v1/leases/:id`),
 * never the path it was asked for, so ids and names in paths never reach a label.
 */
export function routeLabel(req: Pick<Request, 'route' | 'baseUrl'>): string {
  const path: unknown = req.route?.path;
  if (typeof path !== 'string' || path === '') return UNMATCHED;
  return `${req.baseUrl ?? ''}${path}`;
}

/** Counts every response in tessera_http_requests_total{route,status} once it is sent. */
export function httpRequestMetrics(metrics: Pick<Metrics, 'httpRequests'>) {
  return (req: Request, res: Response, next: NextFunction): void => {
    res.once('finish', () => metrics.httpRequests.inc({ route: routeLabel(req), status: String(res.statusCode) }));
    next();
  };
}
