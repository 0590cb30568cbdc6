/** The console's HTTP rules: security headers, cookies, and what a state-changing request must carry. */
import type { NextFunction, Request, Response } from 'express';
import { ConsoleSession } from './console-auth.service';

/** Only the console's own origin; no inline script or style; never framed; forms post only here. */
export const CONTENT_SECURITY_POLICY = [
  "default-src 'self'",
  "script-src 'self'",
  "style-src 'self'",
  "img-src 'self'",
  "connect-src 'self'",
  "font-src 'self'",
  "object-src 'none'",
  "frame-ancestors 'none'",
  "form-action 'self'",
  "base-uri 'none'",
].join('; ');

export function securityHeaders(_req: Request, res: Response, next: NextFunction): void {
  res.setHeader('Content-Security-Policy', CONTENT_SECURITY_POLICY);
  res.setHeader('X-Frame-Options', 'DENY');
  res.setHeader('X-Content-Type-Options', 'nosniff');
  // The callback's URL carries the authorization code: never send it to another origin as a referrer.
  // (Not no-referrer: with it a browser sends `Origin: null` even on same-origin form posts.)
  res.setHeader('Referrer-Policy', 'same-origin');
  res.setHeader('Cross-Origin-Opener-Policy', 'same-origin');
  res.setHeader('Cross-Origin-Resource-Policy', 'same-origin');
  next();
}

export type ConsoleRequest = Request & { consoleSession?: ConsoleSession; consoleSessionId?: string };

/** Cookie names: `__Host-` (Secure, Path=/, no Domain) whenever the console is served over https. */
export class ConsoleCookies {
  readonly session: string;
  readonly login: string;

  constructor(private readonly secure: boolean) {
    const prefix = secure ? '__Host-' : '';
    this.session = `${prefix}tessera_console`;
    this.login = `${prefix}tessera_console_login`;
  }

  /**
   * Every value of the cookie `name`, in the order the browser sent them. There can be several: another
   * service on this host can set the same name with a longer path (e.g. Path=/ui), which the browser
   * sends first; callers try each, so such a cookie cannot shadow the console's own.
   */
  read(req: Request, name: string): string[] {
    const header = req.headers.cookie;
    if (!header) return [];
    const values: string[] = [];
    for (const part of header.split(';')) {
      const eq = part.indexOf('=');
      if (eq > 0 && part.slice(0, eq).trim() === name) values.push(part.slice(eq + 1).trim());
    }
    return values;
  }

  /**
   * The session cookie is SameSite=Strict: no other site can make the browser send it. The login
   * cookie must come back on the identity provider's redirect to the callback, a cross-site
   * navigation, so it is Lax; it only ties the callback to the browser that began the sign-in.
   */
  set(res: Response, name: string, value: string, maxAgeSeconds: number, sameSite: 'Strict' | 'Lax'): void {
    const attributes = [`${name}=${value}`, 'Path=/', `Max-Age=${Math.max(0, Math.floor(maxAgeSeconds))}`, 'HttpOnly', `SameSite=${sameSite}`];
    if (this.secure) attributes.push('Secure');
    res.append('Set-Cookie', attributes.join('; '));
  }

  /** Clears the cookie at Path=/ and, without the __Host- prefix (which requires Path=/), at Path=/ui too. */
  clear(res: Response, name: string): void {
    this.set(res, name, '', 0, 'Strict');
    if (!this.secure) res.append('Set-Cookie', `${name}=; Path=/ui; Max-Age=0; HttpOnly; SameSite=Strict`);
  }
}

/**
 * Why a state-changing request comes from somewhere else, or undefined when it does not. A browser
 * sends Origin with every POST and Sec-Fetch-Site with every request; either naming another origin is
 * refused even when the request carries a valid CSRF token.
 */
export function crossSiteReason(req: Request, publicOrigin: string): string | undefined {
  const origin = req.headers.origin;
  if (origin !== undefined && origin !== publicOrigin) return `Origin ${origin.slice(0, 100)} is not the console's`;
  const site = req.headers['sec-fetch-site'];
  if (site !== undefined && site !== 'same-origin') return `Sec-Fetch-Site: ${String(site).slice(0, 20)}`;
  return undefined;
}

export function isForm(req: Request): boolean {
  return req.headers['content-type']?.split(';')[0].trim().toLowerCase() === 'application/x-www-form-urlencoded';
}

/**
 * Whether a page may open a confirmation dialog from its query: only for a navigation from the
 * console's own pages (Sec-Fetch-Site: same-origin) or from a client that does not send the header.
 * A link on another site, or on another port of this host (same-site), shows the page without it.
 */
export function mayConfirm(req: Request): boolean {
  const site = req.headers['sec-fetch-site'];
  return site === undefined || site === 'same-origin';
}

