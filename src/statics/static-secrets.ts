import { z } from 'zod';
import { staticSecretSchema } from '../config/config.schema';
import { TesseraConfig } from '../config/config.loader';

export type StaticSecretConfig = z.infer<typeof staticSecretSchema>;

/** A configured static secret, by name (own properties only: hostile names find nothing). */
export function staticConfig(config: TesseraConfig, name: string): StaticSecretConfig | undefined {
  return Object.hasOwn(config.static_secrets, name) ? config.static_secrets[name] : undefined;
}

export function strategyOf(secret: StaticSecretConfig): 'single' | 'alternating' {
  return secret.strategy ?? (secret.usernames ? 'alternating' : 'single');
}

/** The account the next version goes to: the same one (single, IAM) or the one not in use (alternating). */
export function nextAccount(secret: StaticSecretConfig, currentAccount: string | undefined): string {
  if (secret.iam_user) return secret.iam_user;
  if (secret.usernames) return currentAccount === secret.usernames[0] ? secret.usernames[1] : secret.usernames[0];
  return secret.username!;
}

/** What is sealed for a version: the credentials readers get, how to verify them, the password set. */
export interface SealedVersion {
  password?: string;
  credentials?: Record<string, string | number>;
  verify?: { username: string; password: string; keyId?: string };
}
