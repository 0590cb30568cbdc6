/** Pages outside the signed-in console: sign in, signed out, and errors. */
import { html } from '../html';
import { PageContext, layout } from './components';

export function errorPage(ctx: PageContext, status: number, title: string, message: string, requestId: string): string {
  const signIn = status === 401 || (status === 403 && !ctx.session);
  return layout(
    title,
    ctx,
    html`<section class="panel error">
  <p>${message}</p>
  <p class="muted">HTTP ${status} · request ${requestId}</p>
  <p>${signIn ? html`<a class="button" href="/ui/login">Sign in</a>` : html`<a href="/ui/">Back to the console</a>`}</p>
</section>`,
  );
}

export function signInPage(issuer: string): string {
  return layout(
    'Sign in',
    {},
    html`<section class="panel narrow">
  <p>The operator console of this Tessera broker. Sign in with your identity provider (<strong>${issuer}</strong>); only operators are let in.</p>
  <p><a class="button" href="/ui/login">Sign in</a></p>
</section>`,
  );
}

export function signedOutPage(): string {
  return layout('Signed out', {}, html`<section class="panel narrow"><p>Your console session has ended.</p><p><a class="button" href="/ui/login">Sign in</a></p></section>`);
}

/**
 * After the callback: the session cookie is SameSite=Strict, and a browser does not send it on a
 * redirect that started at the identity provider's site; a navigation from this page (our own
 * origin) carries it.
 */
export function signedInPage(): string {
  return layout(
    'Signed in',
    {},
    html`<section class="panel narrow"><p>You are signed in.</p><p><a class="button" href="/ui/">Continue to the console</a></p></section>`,
    { head: html`<meta http-equiv="refresh" content="0;url=/ui/">` },
  );
}
