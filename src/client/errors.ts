/**
 * Errors the client throws. Messages never contain the token or a credential: they are written to
 * logs and terminals.
 */
export class TesseraError extends Error {
  constructor(message: string) {
    super(message);
    this.name = new.target.name;
  }
}

/** The broker answered with an error status; fields come from its `{"error": {...}}` body. */
export class TesseraApiError extends TesseraError {
  constructor(
    readonly status: number,
    readonly code: string,
    message: string,
    readonly requestId: string | null,
  ) {
    super(message);
  }

  /**
   * The route itself does not exist on this broker (an older version), as opposed to an unknown lease
   * or role: the broker's fallback 404 has the generic code `not_found`, domain 404s a specific one.
   */
  get routeMissing(): boolean {
    return this.status === 404 && this.code === 'not_found';
  }
}

/** No HTTP answer at all: connection refused, DNS failure, timeout. */
export class BrokerUnreachableError extends TesseraError {
  constructor(
    readonly addr: string,
    readonly reason: string,
  ) {
    super(`broker unreachable at ${addr} (${reason})`);
  }
}

/** The token could not be obtained (missing file, empty file, no token configured). */
export class TokenUnavailableError extends TesseraError {}

/** A lease can no longer be kept alive: it expired, hit its max TTL, or the broker refused to renew it. */
export class LeaseLostError extends TesseraError {}

/** The client was given an option it cannot use (a malformed broker address, say). */
export class InvalidOptionError extends TesseraError {}
