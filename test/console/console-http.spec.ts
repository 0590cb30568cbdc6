import type { Request, Response } from 'express';
import { ConsoleCookies, crossSiteReason } from '../../src/console/console-http';

const request = (headers: Record<string, string>) => ({ headers }) as unknown as Request;

function response(): Response & { cookies: string[] } {
  const cookies: string[] = [];
  return { cookies, append: (name: string, value: string) => name === 'Set-Cookie' && cookies.push(value) } as unknown as Response & { cookies: string[] };
}

describe('console cookies and origin checks', () => {
  it('over https the cookies are __Host- prefixed and Secure; over loopback http neither', () => {
    const secure = new ConsoleCookies(true);
    expect(secure.session).toBe('__Host-tessera_console');
    const res = response();
    secure.set(res, secure.session, 'v', 60, 'Strict');
    expect(res.cookies).toEqual(['__Host-tessera_console=v; Path=/; Max-Age=60; HttpOnly; SameSite=Strict; Secure']);

    const plain = new ConsoleCookies(false);
    const res2 = response();
    plain.set(res2, plain.login, 'w', 600, 'Lax');
    plain.clear(res2, plain.session);
    // Cleared at Path=/ and at Path=/ui, where another service on the host could have set the name.
    expect(res2.cookies).toEqual([
      'tessera_console_login=w; Path=/; Max-Age=600; HttpOnly; SameSite=Lax',
      'tessera_console=; Path=/; Max-Age=0; HttpOnly; SameSite=Strict',
      'tessera_console=; Path=/ui; Max-Age=0; HttpOnly; SameSite=Strict',
    ]);
    // A __Host- cookie can only live at Path=/: one clearing cookie.
    const res3 = response();
    secure.clear(res3, secure.session);
    expect(res3.cookies).toEqual(['__Host-tessera_console=; Path=/; Max-Age=0; HttpOnly; SameSite=Strict; Secure']);
  });

  it('reads every value of a cookie by its exact name, in the order sent', () => {
    const cookies = new ConsoleCookies(false);
    const req = request({ cookie: 'xtessera_console=no; tessera_console_login=l; tessera_console=s' });
    expect(cookies.read(req, cookies.session)).toEqual(['s']);
    expect(cookies.read(req, cookies.login)).toEqual(['l']);
    expect(cookies.read(request({}), cookies.session)).toEqual([]);
    // A cookie of the same name set at Path=/ui by another service is sent first: both are read.
    expect(cookies.read(request({ cookie: 'tessera_console=junk; tessera_console=s' }), cookies.session)).toEqual(['junk', 's']);
  });

  it('a state-changing request must come from the console\'s own origin', () => {
    const origin = 'https://tessera.example';
    expect(crossSiteReason(request({ origin, 'sec-fetch-site': 'same-origin' }), origin)).toBeUndefined();
    expect(crossSiteReason(request({}), origin)).toBeUndefined();
    expect(crossSiteReason(request({ origin: 'https://evil.example' }), origin)).toContain('is not the console\'s');
    expect(crossSiteReason(request({ origin: 'null' }), origin)).toContain('is not the console\'s');
    expect(crossSiteReason(request({ origin, 'sec-fetch-site': 'same-site' }), origin)).toContain('Sec-Fetch-Site');
    expect(crossSiteReason(request({ 'sec-fetch-site': 'cross-site' }), origin)).toContain('Sec-Fetch-Site');
  });
});
