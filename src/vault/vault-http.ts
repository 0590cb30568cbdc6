import express, { NextFunction, Request, RequestHandler, Response } from 'express';
import { TesseraConfig } from '../config/config.loader';
import { VAULT_RESERVED_MOUNTS } from '../config/config.schema';
import { ErrorSurface, HttpError } from '../http/error.filter';

/** Vault's `{"errors": [...]}` with Vault's status codes, for the Vault-compatible routes (DESIGN §11). */
export function vaultErrorSurface(config: TesseraConfig): ErrorSurface {
  const isVault = vaultRouteMatcher(config);
  // A Vault client announces itself (X-Vault-Request, X-Vault-Token): on a path Tessera does not serve
  // at all (KV, say) it still gets an error it can read. A native route keeps the native shape.
  const fromVaultClient = (req: Request) => req.headers['x-vault-request'] !== undefined || req.headers['x-vault-token'] !== undefined;
  const native = nativeRouteMatcher();
  return { matches: (req) => isVault(req) || (fromVaultClient(req) && !native(req)), render: (_req, res, error) => void res.status(vaultStatus(error)).json({ errors: [vaultMessage(error)] }) };
}

/** The first path segments after /v1 that belong to the Vault-compatible API. */
export function vaultRouteMatcher(config: TesseraConfig): (req: Request) => boolean {
  const mounts = new Set([config.vault.database_mount, config.vault.aws_mount]);
  return (req) => {
    const [v1, first, second] = req.path.split('/').slice(1);
    if (v1 !== 'v1') return false;
    if (first === 'sys' || mounts.has(first)) return true;
    return first === 'auth' && (second === 'jwt' || second === 'kubernetes' || second === 'token');
  };
}

/** Routes of the native API (the segments Vault mounts may not use, but the Vault API's `auth` and `sys`). */
function nativeRouteMatcher(): (req: Request) => boolean {
  const native = new Set(VAULT_RESERVED_MOUNTS.filter((s) => s !== 'auth' && s !== 'sys'));
  return (req) => {
    const [v1, first, second] = req.path.split('/').slice(1);
    if (v1 !== 'v1') return req.path === '/metrics' || req.path.startsWith('/docs');
    return native.has(first) || (first === 'auth' && (second === 'bootstrap' || second === 'bootstrap-secrets'));
  };
}

/**
 * A missing, bad or expired token and a policy refusal are both 403 `permission denied` (Vault Agent
 * and the CLI re-authenticate on exactly that); the native API's 409 and 422 are Vault's 400.
 */
function vaultStatus(error: HttpError): number {
  if (error.status === 401) return 403;
  if (error.status === 409 || error.status === 422 || error.status === 415) return 400;
  return error.status;
}

function vaultMessage(error: HttpError): string {
  if (error.status === 401 || error.status === 403) return 'permission denied';
  if (error.status === 404 && error.code === 'not_found') return 'unsupported path';
  return error.message;
}

/**
 * Request handling of the Vault routes, ahead of the native API's content-type check: bodies are JSON
 * whatever the Content-Type (Vault's Go client, and so the CLI, Agent and ESO, sends none), PUT is POST,
 * and what Tessera does not do (response wrapping, namespaces) is refused rather than ignored.
 */
export function vaultRequestHandling(config: TesseraConfig, send: (req: Request, res: Response, error: HttpError) => void): RequestHandler {
  const isVault = vaultRouteMatcher(config);
  const json = express.json({ type: () => true, limit: config.server.body_limit, inflate: false, strict: true });
  return (req: Request, res: Response, next: NextFunction) => {
    if (!isVault(req)) return next();
    // These routes take any body type, so a web page could post to them cross-site with credentials
    // a browser attaches by itself (a client certificate over mTLS). Vault clients are not browsers:
    // a request a browser marks as coming from another site, or from any page's origin, is refused.
    const site = req.headers['sec-fetch-site'];
    if (req.headers.origin !== undefined || (site !== undefined && site !== 'none' && site !== 'same-origin')) {
      return send(req, res, { status: 403, code: 'cross_site', message: 'requests from web pages are not accepted on the Vault-compatible API' });
    }
    if (req.headers['x-vault-wrap-ttl'] !== undefined) {
      return send(req, res, { status: 400, code: 'unsupported', message: 'response wrapping is not supported' });
    }
    const namespace = req.headers['x-vault-namespace'];
    if (namespace !== undefined && namespace !== '' && namespace !== 'root' && namespace !== 'root/') {
      return send(req, res, { status: 400, code: 'unsupported', message: 'namespaces are not supported' });
    }
    if (req.method === 'PUT') req.method = 'POST';
    json(req, res, (err?: unknown) => {
      if (err) return next(err);
      (req as Request & { vaultRoute?: boolean }).vaultRoute = true;
      next();
    });
  };
}

/** Set by vaultRequestHandling: the request is a Vault route and its body is already parsed. */
export function isVaultRoute(req: Request): boolean {
  return (req as Request & { vaultRoute?: boolean }).vaultRoute === true;
}
