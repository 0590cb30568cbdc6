import { existsSync, mkdirSync } from 'node:fs';
import { join } from 'node:path';
import { Browser, BrowserContext, Locator, Page, chromium } from 'playwright-core';

export const CHROMIUM = '/usr/bin/chromium';
const ARGS = ['--headless', '--no-sandbox', '--disable-gpu', '--disable-quic', '--no-first-run', '--disable-background-networking', '--disable-component-update', '--disable-sync'];

/** Debian's Chromium, driven by playwright-core (no browser download). */
export function launchChromium(): Promise<Browser> {
  if (!existsSync(CHROMIUM)) throw new Error(`${CHROMIUM} is missing: apt-get install -y chromium`);
  return chromium.launch({ executablePath: CHROMIUM, args: ARGS });
}

/**
 * A browser context that can reach loopback only (the OpenID Provider's development pages load a web
 * font: that request is refused, as the test machine has no network), 1280×800.
 */
export async function loopbackContext(browser: Browser): Promise<BrowserContext> {
  const context = await browser.newContext({ viewport: { width: 1280, height: 800 } });
  await context.route('**/*', (route) => {
    const host = new URL(route.request().url()).hostname;
    return host === '127.0.0.1' || host === 'localhost' ? route.continue() : route.abort();
  });
  return context;
}

/** Waits until the locator's text contains `text` (playwright-core has no `expect`). */
export async function waitForText(locator: Locator, text: string | RegExp, timeoutMs = 20_000): Promise<string> {
  const deadline = Date.now() + timeoutMs;
  let last = '';
  for (;;) {
    last = (await locator.textContent({ timeout: 1000 }).catch(() => null)) ?? '';
    if (typeof text === 'string' ? last.includes(text) : text.test(last)) return last;
    if (Date.now() > deadline) {
      throw new Error(`timed out waiting for ${String(text)} on ${locator.page().url()}; last text: ${last.slice(0, 300) || (await locator.page().locator('main').textContent().catch(() => ''))?.slice(0, 500)}`);
    }
    await new Promise((r) => setTimeout(r, 200));
  }
}

/** Signs in through the OpenID Provider's development forms (any login is accepted; it becomes the subject). */
export async function signIn(page: Page, consoleUrl: string, login: string): Promise<void> {
  await page.goto(`${consoleUrl}/ui/`);
  await page.getByRole('link', { name: 'Sign in' }).click();
  await page.locator('input[name="login"]').fill(login);
  await page.locator('input[name="password"]').fill('any-password');
  await page.getByRole('button', { name: 'Sign-in' }).click();
  await page.getByRole('button', { name: 'Continue' }).click();
}

/** docs/console-<name>.png at 1280×800, when TESSERA_CONSOLE_SCREENSHOTS is set. */
export async function screenshot(page: Page, name: string): Promise<void> {
  if (!process.env.TESSERA_CONSOLE_SCREENSHOTS) return;
  const dir = join(__dirname, '..', '..', 'docs');
  mkdirSync(dir, { recursive: true });
  await page.screenshot({ path: join(dir, `console-${name}.png`), fullPage: false });
}
