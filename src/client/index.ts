/**
 * Tessera's client library (built to dist/src/client). It imports nothing from the broker, so a program
 * using it loads no NestJS, plugins or SDKs.
 */
export { BrokerUnreachableError, InvalidOptionError, LeaseLostError, TesseraApiError, TesseraError, TokenUnavailableError } from './errors';
export { LeaseKeeper } from './lease-keeper';
export type { LeaseKeeperOptions } from './lease-keeper';
export { DEFAULT_ADDR, TesseraClient } from './tessera-client';
export type { RequestOptions, TesseraClientOptions } from './tessera-client';
export { resolveToken } from './token-source';
export type { TokenSource } from './token-source';
export type * from './types';
export { isRetryable, retrying, revokeWithRetry, withLease } from './with-lease';
export type { LeaseContext, WithLeaseOptions } from './with-lease';
