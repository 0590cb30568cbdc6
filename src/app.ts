import 'reflect-metadata';
import { INestApplicationContext } from '@nestjs/common';
import { NestFactory } from '@nestjs/core';
import { NestExpressApplication } from '@nestjs/platform-express';
import { DocumentBuilder, SwaggerModule } from '@nestjs/swagger';
import express, { NextFunction, Request, Response } from 'express';
import { Logger, PinoLogger } from 'nestjs-pino';
import { randomUUID } from 'node:crypto';
import { readFileSync } from 'node:fs';
import { isIP } from 'node:net';
import { AppModule } from './app.module';
import { ConfigError, TesseraConfig } from './config/config.loader';
import { ConsoleRoutes } from './console/console.providers';
import { accessLog, accessLogged } from './http/access-log';
import { ErrorFilter, ErrorSurfaces, toHttpError } from './http/error.filter';
import { httpRequestMetrics } from './metrics/http-metrics';
import { Metrics } from './metrics/metrics';
import { migrate } from './storage/migrator';
import { isVaultRoute, vaultErrorSurface, vaultRequestHandling } from './vault/vault-http';

export interface ServerOptions {
  /** Also run the job processors and reconciler in this process (the default for `tessera server`). */
  worker: boolean;
  /** Apply pending migrations first (the default). */
  migrate?: boolean;
}

/** Methods whose requests carry a body: their Content-Type, when given, must be JSON even for an empty body. */
const BODY_METHODS = new Set(['POST', 'PUT', 'PATCH', 'DELETE']);

function isJson(contentType: string | undefined): boolean {
  return contentType?.split(';')[0].trim().toLowerCase() === 'application/json';
}

function isLoopback(host: string): boolean {
  if (host === 'localhost') return true;
  if (isIP(host) === 4) return host.startsWith('127.');
  const v6 = host.replace(/^\[|\]$/g, '').toLowerCase();
  return isIP(v6) === 6 && (v6 === '::1' || /^::ffff:127\./.test(v6) || /^0{0,4}(:0{0,4}){6}:0{0,3}1$/.test(v6));
}

/**
 * Plain HTTP is served on loopback only: elsewhere bearer tokens and issued credentials would cross the
 * network in clear. `server.allow_insecure: true` overrides (TLS ends at a proxy on the same host, say).
 */
export function checkListener(config: TesseraConfig): void {
  const { host, tls, allow_insecure } = config.server;
  if (tls || allow_insecure || isLoopback(host)) return;
  throw new ConfigError(
    `config ${config.source}: server.host: ${host} is not a loopback address and server.tls is not configured, so tokens and ` +
      'credentials would cross the network unencrypted; configure server.tls, bind 127.0.0.1, or set server.allow_insecure: true ' +
      '(for example when a TLS-terminating proxy on the same host forwards to the broker)',
  );
}

export async function createServer(config: TesseraConfig, options: ServerOptions): Promise<NestExpressApplication> {
  checkListener(config);
  if (options.migrate !== false) await migrate(config.storage.postgres_url);
  const tls = config.server.tls;
  const app = await NestFactory.create<NestExpressApplication>(AppModule.forRoot(config, { http: true, worker: options.worker }), {
    bodyParser: false,
    bufferLogs: true,
    abortOnError: false,
    // With TLS, clients may present an X.509-SVID. The handshake accepts clients without one (they
    // use bearer tokens); a certificate that does not chain to client_ca is refused by the auth guard.
    httpsOptions: tls && {
      cert: readFileSync(tls.cert),
      key: readFileSync(tls.key),
      // Every trust domain's bundle; the auth guard then requires the SVID's own domain's bundle.
      ca: Object.values(tls.client_ca).map((file) => readFileSync(file)),
      requestCert: true,
      rejectUnauthorized: false,
    },
  });
  app.useLogger(app.get(Logger));
  // Every error, from the router or before it, is written in the shape of the request's API surface.
  const errors = new ErrorSurfaces([vaultErrorSurface(config)]);
  app.disable('x-powered-by');
  // Every response is no-store: an ETag (a hash of each body) would only cost time.
  app.set('etag', false);
  app.set('query parser', 'simple');
  app.use(httpRequestMetrics(app.get(Metrics)));
  app.use((req: Request & { id?: string }, res: Response, next: NextFunction) => {
    req.id = randomUUID();
    res.setHeader('X-Request-Id', req.id);
    next();
  });
  if (accessLogged(config.log.level)) app.use(accessLog(() => PinoLogger.root));
  app.use((_req: Request, res: Response, next: NextFunction) => {
    // Responses can carry credentials: never cache them.
    res.setHeader('Cache-Control', 'no-store');
    next();
  });
  // The operator console (DESIGN §12): its own router, sessions, forms and error pages, ahead of the
  // API's JSON-only body handling; nothing under /ui/ reaches the API's routes.
  if (config.ui) app.use('/ui', app.get(ConsoleRoutes).router());
  // The Vault-compatible routes parse their bodies as JSON whatever the Content-Type (DESIGN §11).
  app.use(vaultRequestHandling(config, (req, res, error) => errors.send(req, res, error)));
  app.use((req: Request, res: Response, next: NextFunction) => {
    if (isVaultRoute(req)) return next();
    // A body the broker would not read must not be silently ignored while the request goes ahead. And a
    // request that declares a type other than JSON is refused whether or not it has a body, so the
    // answer does not depend on the length (a browser sends text/plain and form posts cross-site
    // without asking first). A bodiless POST with no Content-Type at all is fine.
    const hasBody = Number(req.headers['content-length'] ?? 0) > 0 || req.headers['transfer-encoding'] !== undefined;
    const declared = req.headers['content-type'] !== undefined;
    if ((hasBody || (declared && BODY_METHODS.has(req.method))) && !isJson(req.headers['content-type'])) {
      errors.send(req, res, { status: 415, code: 'unsupported_media_type', message: 'send the body as application/json' });
      return;
    }
    next();
  });
  // Raw body kept for signed webhooks (the signature is over the exact bytes received).
  // No inflating: a signature is over the bytes received, and a compressed body is refused (415).
  app.use(express.json({ limit: config.server.body_limit, inflate: false, verify: (req, _res, buf) => ((req as { rawBody?: Buffer }).rawBody = buf) }));
  // Body-parser errors happen before Nest's router; give them the same error shape.
  app.use((err: unknown, req: Request, res: Response, _next: NextFunction) => {
    errors.send(req, res, toHttpError(err));
  });
  app.useGlobalFilters(new ErrorFilter(errors));
  app.enableShutdownHooks();
  const doc = SwaggerModule.createDocument(
    app,
    new DocumentBuilder().setTitle('Tessera').setDescription('Dynamic secrets broker').setVersion('1').addBearerAuth().build(),
  );
  SwaggerModule.setup('docs', app, doc, { jsonDocumentUrl: 'docs-json' });
  await app.listen(config.server.port, config.server.host);
  return app;
}

export async function createWorker(config: TesseraConfig): Promise<INestApplicationContext> {
  await migrate(config.storage.postgres_url);
  const app = await NestFactory.createApplicationContext(AppModule.forRoot(config, { http: false, worker: true }), {
    bufferLogs: true,
    abortOnError: false,
  });
  app.useLogger(app.get(Logger));
  app.enableShutdownHooks();
  await app.init();
  return app;
}
