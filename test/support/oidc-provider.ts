import { ChildProcess, spawn } from 'node:child_process';
import { once } from 'node:events';
import { AddressInfo, createServer } from 'node:net';
import { join } from 'node:path';
import { createInterface } from 'node:readline';

export interface TestOpenIdProvider {
  issuer: string;
  stop(): Promise<void>;
}

/** A free TCP port on loopback (for a broker whose URL must be known before it starts). */
export async function freePort(): Promise<number> {
  const server = createServer();
  server.listen(0, '127.0.0.1');
  await once(server, 'listening');
  const { port } = server.address() as AddressInfo;
  await new Promise((r) => server.close(r));
  return port;
}

/**
 * Starts test/support/oidc-provider-server.mjs (the `oidc-provider` package) in a child process. `host` is
 * the name in its issuer URL: `localhost` makes it another site than a broker at 127.0.0.1, as a
 * real identity provider is.
 */
export async function startOpenIdProvider(client: { client_id: string; client_secret: string; redirect_uri: string; host?: string }): Promise<TestOpenIdProvider> {
  const child: ChildProcess = spawn(process.execPath, [join(__dirname, 'oidc-provider-server.mjs')], {
    env: { ...process.env, OIDC_TEST_CLIENT: JSON.stringify(client), NODE_ENV: 'development' },
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  let errors = '';
  child.stderr!.on('data', (chunk) => (errors = (errors + chunk).slice(-4000)));
  const lines = createInterface({ input: child.stdout! });
  const first = await Promise.race([
    once(lines, 'line').then(([line]) => String(line)),
    once(child, 'exit').then(() => {
      throw new Error(`the OpenID Provider exited before it listened: ${errors}`);
    }),
    new Promise<never>((_, reject) => setTimeout(() => reject(new Error(`the OpenID Provider did not start: ${errors}`)), 20_000).unref()),
  ]);
  const { issuer } = JSON.parse(first) as { issuer: string };
  return {
    issuer,
    async stop() {
      if (child.exitCode !== null) return;
      child.kill('SIGTERM');
      await Promise.race([once(child, 'exit'), new Promise((r) => setTimeout(r, 3000).unref())]);
      if (child.exitCode === null) child.kill('SIGKILL');
    },
  };
}
