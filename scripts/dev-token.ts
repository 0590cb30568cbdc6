/** Prints a JWT-SVID for SUBJECT signed with the development key in config/dev (local use only). */
import { readFileSync } from 'node:fs';
import { mintJwtSvid } from './tokens';

async function run(): Promise<void> {
  const subject = process.argv[2];
  if (!subject) {
    process.stderr.write('usage: npm run -s dev-token -- spiffe://dev.example/ns/payments/api [ttl-seconds]\n');
    process.exit(2);
  }
  const key = JSON.parse(readFileSync('config/dev/signing-key.jwk.json', 'utf8'));
  process.stdout.write(`${await mintJwtSvid(key, { subject, ttlSeconds: Number(process.argv[3] ?? 3600) })}\n`);
}

void run();
