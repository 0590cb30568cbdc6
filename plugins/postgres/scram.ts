/**
 * SCRAM-SHA-256 verifiers computed by the broker (RFC 5802 / RFC 7677, PostgreSQL's storage format).
 * Handing PostgreSQL a ready verifier keeps the plaintext password out of the database and its
 * statement logs, and lets the round count be chosen: PostgreSQL re-hashes a plaintext password with
 * 4096 PBKDF2 rounds on every CREATE ROLE, which dominates the cost of issuing a credential.
 */
import { createHash, createHmac, pbkdf2, pbkdf2Sync } from 'node:crypto';
import { promisify } from 'node:util';
import { randomBytesPooled } from '../contract';

const pbkdf2Async = promisify(pbkdf2);
/** Up to this many rounds the hash takes microseconds: handing it to the thread pool would cost more. */
const SYNC_ROUNDS = 256;

export async function scramSha256Verifier(password: string, iterations: number): Promise<string> {
  const salt = randomBytesPooled(16);
  // Broker passwords are ASCII, so SASLprep leaves them unchanged.
  const input = Buffer.from(password, 'utf8');
  const salted = iterations <= SYNC_ROUNDS ? pbkdf2Sync(input, salt, iterations, 32, 'sha256') : await pbkdf2Async(input, salt, iterations, 32, 'sha256');
  const clientKey = createHmac('sha256', salted).update('Client Key').digest();
  const storedKey = createHash('sha256').update(clientKey).digest();
  const serverKey = createHmac('sha256', salted).update('Server Key').digest();
  return `SCRAM-SHA-256$${iterations}:${salt.toString('base64')}$${storedKey.toString('base64')}:${serverKey.toString('base64')}`;
}
