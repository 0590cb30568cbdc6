import { Inject, Injectable, Logger } from '@nestjs/common';
import { ModuleRef } from '@nestjs/core';
import express, { NextFunction, Request, Response, Router } from 'express';
import { existsSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { AuditDenials } from '../audit/audit-denials';
import { AuditLog } from '../audit/audit.log';
import { DomainError } from '../common/errors';
import { TokenBucket } from '../common/token-bucket';
import { TesseraConfig } from '../config/config.loader';
import { CONFIG } from '../config/config.module';
import { HealthController } from '../health/health.controller';
import { errorBody, toHttpError } from '../http/error.filter';
import { JobProducer } from '../jobs/job.producer';
import { LeaseService } from '../leases/lease.service';
import { RoleSessionsService } from '../roles/role-sessions.service';
import { StaticService } from '../statics/static.service';
import { ConsoleAuthService } from './console-auth.service';
import { ConsoleCookies, ConsoleRequest, crossSiteReason, isForm, securityHeaders } from './console-http';
import { addressKey } from '../common/client-address';
import { ConsolePages } from './console-pages';
import { sameText } from './oidc-client';
import { errorPage, signInPage, signedInPage, signedOutPage } from './pages/errors.page';

const TITLES: Record<number, string> = {
  400: 'Bad request',
  401: 'Signed out',
  403: 'Not allowed',
  404: 'Not found',
  409: 'Conflict',
  413: 'Too large',
  415: 'Unsupported request',
  422: 'Invalid input',
  429: 'Slow down',
  503: 'Unavailable',
};

/**
 * Sign-ins started per client address (an IPv6 client's /64) per second, bursts of ten. Only the start
 * is limited (it writes a row; beyond ui.max_pending_sign_ins the oldest are dropped): the callback is not,
 * so nobody can keep an operator from finishing a sign-in by spending the bucket.
 */
const SIGN_INS_PER_SECOND = 2;

type Handler = (req: ConsoleRequest, res: Response) => Promise<void>;

/** The console's static files, read once: from src/console/assets whether running from src or dist. */
function loadAssets(): Map<string, { type: string; body: Buffer }> {
  const dir = [join(__dirname, 'assets'), join(__dirname, '..', '..', '..', 'src', 'console', 'assets')].find((d) => existsSync(join(d, 'console.css')));
  if (!dir) throw new Error('the operator console\'s assets (src/console/assets) are missing');
  return new Map([
    ['console.css', { type: 'text/css; charset=utf-8', body: readFileSync(join(dir, 'console.css')) }],
    ['console.js', { type: 'text/javascript; charset=utf-8', body: readFileSync(join(dir, 'console.js')) }],
  ]);
}

/**
 * The operator console (DESIGN §12) at /ui/: an express router mounted before the API's JSON-only
 * body handling, with its own authentication (the session cookie only: no bearer or Vault token is
 * looked at here, and the API's extractors never look at the cookie), its own CSRF and origin checks,
 * and its own error pages.
 */
@Injectable()
export class ConsoleRoutes {
  private readonly log = new Logger('console');
  private readonly cookies: ConsoleCookies;
  private readonly publicOrigin: string;
  private readonly pages: ConsolePages;
  private readonly signIns = new TokenBucket(SIGN_INS_PER_SECOND, SIGN_INS_PER_SECOND * 5);

  constructor(
    @Inject(CONFIG) private readonly config: TesseraConfig,
    private readonly auth: ConsoleAuthService,
    private readonly denials: AuditDenials,
    leases: LeaseService,
    statics: StaticService,
    audit: AuditLog,
    jobs: JobProducer,
    roleSessions: RoleSessionsService,
    moduleRef: ModuleRef,
  ) {
    this.publicOrigin = new URL(config.ui!.public_url).origin;
    this.cookies = new ConsoleCookies(this.publicOrigin.startsWith('https:'));
    const targets = () => moduleRef.get(HealthController, { strict: false }).targetsReport();
    this.pages = new ConsolePages({ config, leases, statics, audit, jobs, roleSessions, targets });
  }

  router(): Router {
    const r = express.Router({ strict: false });
    const p = this.pages;
    const assets = loadAssets();
    const form = express.urlencoded({ extended: false, limit: '16kb', parameterLimit: 20 });
    const page = (fn: Handler) => this.wrap(fn, false);
    const api = (fn: Handler) => this.wrap(fn, true);
    const signedIn = this.signedIn.bind(this);
    const post = [this.stateChanging.bind(this), form, signedIn, this.csrf.bind(this)];

    r.use(securityHeaders);
    // Console requests are in the broker's access log (src/http/access-log.ts) with the API's: the path
    // only, so the callback's code and state stay out of it.
    r.get('/assets/:file', (req, res) => {
      const asset = assets.get(String(req.params.file));
      if (!asset) return void this.renderError(req, res, new DomainError('not_found', 'not_found', 'no such file'), false);
      res.type(asset.type).send(asset.body);
    });
    r.get('/signin', page((req, res) => this.signInOrHome(req, res)));
    r.get('/login', page((req, res) => this.beginSignIn(req, res)));
    r.get('/callback', page((req, res) => this.callback(req, res)));
    r.get('/signed-out', page(async (_req, res) => void res.type('html').send(signedOutPage())));
    r.post('/logout', ...post, page((req, res) => this.signOut(req, res)));

    r.get('/', signedIn, page((req, res) => p.overview(req, res)));
    r.get('/leases', signedIn, page((req, res) => p.leases(req, res)));
    r.get('/leases/bulk-revoke', signedIn, page((req, res) => p.bulkPreview(req, res)));
    r.post('/leases/bulk-revoke', ...post, page((req, res) => p.bulkRevoke(req, res)));
    r.get('/leases/:id', signedIn, page((req, res) => p.lease(req, res)));
    r.post('/leases/:id/revoke', ...post, page((req, res) => p.revokeLease(req, res)));
    r.get('/static', signedIn, page((req, res) => p.statics(req, res)));
    r.post('/static/emergency', ...post, page((req, res) => p.emergencyRotate(req, res)));
    r.get('/static/:name', signedIn, page((req, res) => p.staticSecret(req, res)));
    r.post('/static/:name/rotate', ...post, page((req, res) => p.rotateNow(req, res)));
    r.get('/rotations', signedIn, page((req, res) => p.rotations(req, res)));
    r.get('/api/rotations', signedIn, api((req, res) => p.rotationsJson(req, res)));
    r.get('/roles', signedIn, page((req, res) => p.roles(req, res)));
    r.post('/roles/:role/revoke-sessions', ...post, page((req, res) => p.revokeSessions(req, res)));
    r.get('/audit', signedIn, page((req, res) => p.audit(req, res)));
    r.post('/audit/verify', ...post, page((req, res) => p.audit(req, res, true)));
    // Nothing under /ui/ reaches the API's router.
    r.use((req: Request, res: Response) => this.renderError(req, res, new DomainError('not_found', 'not_found', 'there is no such page'), req.path.startsWith('/api/')));
    r.use((err: unknown, req: Request, res: Response, _next: NextFunction) => this.renderError(req, res, err, req.path.startsWith('/api/')));
    return r;
  }

  /** Pages need a live session: without one a page redirects to sign-in, the JSON API answers 401. */
  private async signedIn(request: Request, res: Response, next: NextFunction): Promise<void> {
    const req = request as ConsoleRequest;
    try {
      const ids = this.cookies.read(req, this.cookies.session);
      const found = await this.auth.firstSession(ids);
      if (found) {
        req.consoleSession = found.session;
        req.consoleSessionId = found.id;
        return next();
      }
      if (ids.length) this.cookies.clear(res, this.cookies.session);
      if (req.method === 'GET' && !req.path.startsWith('/api/')) return void res.redirect(303, '/ui/signin');
      throw new DomainError('unauthenticated', 'no_session', 'your console session has ended or is not valid; sign in again');
    } catch (err) {
      next(err);
    }
  }

  /** Before anything else about a POST: it must come from the console's own origin, as a form. */
  private async stateChanging(request: Request, _res: Response, next: NextFunction): Promise<void> {
    const req = request as ConsoleRequest;
    const reason = crossSiteReason(req, this.publicOrigin);
    if (reason) {
      // Read-only, so the refusal names the operator whose browser sent it (nothing is done as them).
      req.consoleSession = (await this.auth.firstSession(this.cookies.read(req, this.cookies.session)).catch(() => undefined))?.session;
      return next(await this.refuse(req, `cross-site request (${reason})`, 'cross_site_request', 'this request came from another site and was refused'));
    }
    const hasBody = Number(req.headers['content-length'] ?? 0) > 0 || req.headers['transfer-encoding'] !== undefined;
    if ((hasBody || req.headers['content-type'] !== undefined) && !isForm(req)) {
      return next(new DomainError('malformed', 'unsupported_media_type', 'the console accepts forms (application/x-www-form-urlencoded) only'));
    }
    next();
  }

  /** Every state-changing request carries the session's CSRF token. */
  private async csrf(request: Request, _res: Response, next: NextFunction): Promise<void> {
    const req = request as ConsoleRequest;
    const sent = (req.body as { _csrf?: unknown } | undefined)?._csrf;
    if (typeof sent === 'string' && sameText(sent, req.consoleSession!.csrfToken)) return next();
    next(await this.refuse(req, 'missing or wrong CSRF token', 'csrf_token_invalid', 'this form is stale or was not sent by the console; reload the page and try again'));
  }

  private async refuse(req: ConsoleRequest, reason: string, code: string, message: string): Promise<DomainError> {
    try {
      await this.denials.denied({ status: 403, action: `console ${req.method} ${req.path.slice(0, 200)}`, reason, identity: req.consoleSession?.identity ?? null, client: req.ip ?? null });
    } catch (err) {
      return err as DomainError;
    }
    return new DomainError('forbidden', code, message);
  }

  private async signInOrHome(req: ConsoleRequest, res: Response): Promise<void> {
    if (await this.auth.firstSession(this.cookies.read(req, this.cookies.session))) return void res.redirect(303, '/ui/');
    res.type('html').send(signInPage(this.config.ui!.oidc.issuer));
  }

  private async beginSignIn(req: ConsoleRequest, res: Response): Promise<void> {
    if (!this.signIns.take(addressKey(req.ip))) throw new DomainError('rate_limited', 'too_many_sign_ins', 'too many sign-ins from this address; wait a moment');
    const { loginId, redirectTo, maxAgeSeconds } = await this.auth.beginSignIn();
    this.cookies.set(res, this.cookies.login, loginId, maxAgeSeconds, 'Lax');
    res.redirect(303, redirectTo);
  }

  private async callback(req: ConsoleRequest, res: Response): Promise<void> {
    const text = (v: unknown) => (typeof v === 'string' && v.length <= 4096 ? v : undefined);
    const loginIds = this.cookies.read(req, this.cookies.login);
    this.cookies.clear(res, this.cookies.login);
    const { sessionId, session } = await this.auth.finishSignIn(loginIds, { code: text(req.query.code), state: text(req.query.state), error: text(req.query.error), iss: text(req.query.iss) }, req.ip ?? null);
    this.cookies.set(res, this.cookies.session, sessionId, (session.expiresAt.getTime() - Date.now()) / 1000, 'Strict');
    res.type('html').send(signedInPage());
  }

  private async signOut(req: ConsoleRequest, res: Response): Promise<void> {
    await this.auth.signOut(req.consoleSessionId!, req.consoleSession!);
    this.cookies.clear(res, this.cookies.session);
    res.redirect(303, '/ui/signed-out');
  }

  private wrap(fn: Handler, json: boolean) {
    return (req: Request, res: Response) => {
      fn(req as ConsoleRequest, res).catch((err) => this.renderError(req, res, err, json));
    };
  }

  private renderError(req: ConsoleRequest, res: Response, err: unknown, json: boolean): void {
    const mapped = toHttpError(err);
    if (mapped.unexpected) this.log.error(`unexpected error on ${req.method} /ui${req.path} (request ${String((req as { id?: unknown }).id ?? 'unknown')}): ${(err as Error)?.stack ?? err}`);
    if (res.headersSent) return;
    const requestId = String((req as { id?: unknown }).id ?? '');
    if (json) return void res.status(mapped.status).json(errorBody(req, mapped.code, mapped.message));
    const title = mapped.code === 'not_an_operator' ? 'Not an operator' : (TITLES[mapped.status] ?? 'Something went wrong');
    res.status(mapped.status).type('html').send(errorPage({ session: req.consoleSession }, mapped.status, title, mapped.message, requestId));
  }
}
