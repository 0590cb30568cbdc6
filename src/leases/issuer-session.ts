import { Logger } from '@nestjs/common';
import { randomInt } from 'node:crypto';
import { Client } from 'pg';

/** First key of every issuer lock (the second is the process's own): no other advisory lock uses it. */
export const ISSUER_LOCK_NAMESPACE = 0x7e55e7b;

interface Held {
  key: number;
  client: Client;
}

/**
 * This process's proof of life for the leases it is issuing: a PostgreSQL session advisory lock on
 * (ISSUER_LOCK_NAMESPACE, random key), held on a connection of its own for as long as the process
 * lives. Each pending lease records the key; when the process dies, PostgreSQL ends its session and the
 * lock with it, so the reconciler can tell an abandoned pending lease at once (DESIGN §9, invariant 1)
 * instead of waiting for `pending_timeout`. If the session drops while the process lives, the next
 * issue takes a new lock; leases pending under the old one are then treated as abandoned, which their
 * issue notices (the activation finds the lease taken) and answers by removing the account.
 */
export class IssuerSession {
  private readonly log = new Logger(IssuerSession.name);
  private held: Promise<Held> | undefined;
  private closed = false;

  constructor(private readonly url: string) {}

  /** The key this process holds; the lock is taken at the first call. */
  async key(): Promise<number> {
    if (this.closed) throw new Error('the issuer session is closed');
    const held = (this.held ??= this.open());
    try {
      return (await held).key;
    } catch (err) {
      if (this.held === held) this.held = undefined;
      throw err;
    }
  }

  async close(): Promise<void> {
    this.closed = true;
    const held = this.held;
    this.held = undefined;
    if (held) await held.then((h) => h.client.end()).catch(() => undefined);
  }

  private async open(): Promise<Held> {
    const client = new Client({ connectionString: this.url, application_name: 'tessera-issuer', keepAlive: true, connectionTimeoutMillis: 5000 });
    const lost = () => {
      if (this.held === current) this.held = undefined;
      if (!this.closed) this.log.warn('the issuer lock session ended; the next issue takes a new lock');
    };
    client.on('error', () => {
      lost();
      client.end().catch(() => undefined);
    });
    client.on('end', lost);
    const current: Promise<Held> = (async () => {
      await client.connect();
      try {
        // A random key clashes with another live process's about once in two billion; then draw again.
        for (;;) {
          const key = randomInt(1, 2 ** 31 - 1);
          const { rows } = await client.query<{ ok: boolean }>('SELECT pg_try_advisory_lock($1, $2) AS ok', [ISSUER_LOCK_NAMESPACE, key]);
          if (rows[0].ok) return { key, client };
        }
      } catch (err) {
        await client.end().catch(() => undefined);
        throw err;
      }
    })();
    return current;
  }
}
