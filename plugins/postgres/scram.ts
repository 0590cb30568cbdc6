/**
 * SCRAM-SHA-256 verifiers computed by the broker (RFC 5802 / RFC 7677, PostgreSQL's storage format).
 * Handing PostgreSQL a ready verifier keeps the plaintext password out of the database and its
 * statement logs, and lets the round count be chosen: PostgreSQL re-hashes a plaintext password with
 * 4096 PBKDF2 rounds on every CREATE ROLE, which dominates the cost of issuing a credential.
 */
import { createHash, createHmac, pbkdf2, randomBytes } from 'node:crypto';
import { promisify } from 'node:util';

const pbkdf2Async = promisify(pbkdf2);

export async function scramSha256Verifier(password: string, iterations: number): Promise<string> {
  const salt = randomBytes(16);
  // Broker passwords are ASCII, so SASLprep leaves them unchanged.
  const salted = await pbkdf2Async(Buffer.from(password, 'utf8'), salt, iterations, 32, 'sha256');
  const clientKey = createHmac('sha256', salted).update('Client Key').digest();
  const storedKey = createHash('sha256').update(clientKey).digest();
  const serverKey = createHmac('sha256', salted).update('Server Key').digest();
  return `SCRAM-SHA-256$${iterations}:${salt.toString('base64')}$${storedKey.toString('base64')}:${serverKey.toString('base64')}`;
}
