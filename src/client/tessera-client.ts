import { BrokerUnreachableError, InvalidOptionError, TesseraApiError } from './errors';
import { TokenSource, resolveToken } from './token-source';
import {
  AuditVerifyResult,
  BulkRevokeFilter,
  Duration,
  IssuedLease,
  LeaseListFilter,
  LeasePage,
  LeaseState,
  LeaseView,
  RotationStatus,
  StaticCreds,
  Whoami,
} from './types';

export const DEFAULT_ADDR = 'http://127.0.0.1:8200';
const DEFAULT_TIMEOUT_MS = 30_000;

export interface TesseraClientOptions {
  /** Base URL of the broker; default http://127.0.0.1:8200. */
  addr?: string;
  token: TokenSource;
  /** Per-request timeout; default 30 s. */
  timeoutMs?: number;
}

export interface RequestOptions {
  timeoutMs?: number;
  signal?: AbortSignal;
}

/** A typed client for the broker's HTTP API. Safe to share; holds no state besides its options. */
export class TesseraClient {
  readonly addr: string;
  private readonly token: TokenSource;
  private readonly timeoutMs: number;

  constructor(options: TesseraClientOptions) {
    this.addr = normaliseAddr(options.addr ?? DEFAULT_ADDR);
    this.token = options.token;
    this.timeoutMs = options.timeoutMs ?? DEFAULT_TIMEOUT_MS;
  }

  whoami(opts?: RequestOptions): Promise<Whoami> {
    return this.request('GET', '/v1/whoami', undefined, opts);
  }

  issue(role: string, input: { ttl?: Duration; runId?: string } = {}, opts?: RequestOptions): Promise<IssuedLease> {
    return this.request('POST', `/v1/creds/${seg(role)}`, { ttl: input.ttl, run_id: input.runId }, opts);
  }

  getLease(id: string, opts?: RequestOptions): Promise<LeaseView> {
    return this.request('GET', `/v1/leases/${seg(id)}`, undefined, opts);
  }

  listLeases(filter: LeaseListFilter = {}, opts?: RequestOptions): Promise<LeasePage> {
    const query = new URLSearchParams();
    const params: Record<string, string | number | undefined> = {
      role: filter.role,
      state: filter.state,
      run_id: filter.runId,
      owner: filter.owner,
      limit: filter.limit,
      cursor: filter.cursor,
    };
    for (const [key, value] of Object.entries(params)) if (value !== undefined) query.set(key, String(value));
    const qs = query.toString();
    return this.request('GET', `/v1/leases${qs ? `?${qs}` : ''}`, undefined, opts);
  }

  renew(id: string, input: { increment?: Duration } = {}, opts?: RequestOptions): Promise<LeaseView> {
    return this.request('POST', `/v1/leases/${seg(id)}/renew`, { increment: input.increment }, opts);
  }

  /** Idempotent. `revoking` means the target was unreachable and the broker keeps retrying. */
  revoke(id: string, opts?: RequestOptions): Promise<{ state: LeaseState }> {
    return this.request('POST', `/v1/leases/${seg(id)}/revoke`, undefined, opts);
  }

  /** Revokes the caller's own leases: all of them, or one run's. */
  revokeOwned(runId?: string, opts?: RequestOptions): Promise<{ revoked: number }> {
    return this.request('POST', '/v1/leases/revoke-owned', { run_id: runId }, opts);
  }

  /** Operator only: leases move to `revoking` at once and a job removes the accounts. */
  bulkRevoke(filter: BulkRevokeFilter, opts?: RequestOptions): Promise<{ job_id: string; matched: number }> {
    const body = { role: filter.role, connection: filter.connection, owner: filter.owner, owner_issuer: filter.ownerIssuer, run_id: filter.runId };
    return this.request('POST', '/v1/leases/revoke', body, opts);
  }

  auditVerify(opts?: RequestOptions): Promise<AuditVerifyResult> {
    return this.request('GET', '/v1/audit/verify', undefined, opts);
  }

  staticCreds(name: string, opts?: RequestOptions): Promise<StaticCreds> {
    return this.request('GET', `/v1/static/${seg(name)}/creds`, undefined, opts);
  }

  rotateStatic(name: string, input: { reason?: string } = {}, opts?: RequestOptions): Promise<{ rotation_id: string; status: string }> {
    return this.request('POST', `/v1/static/${seg(name)}/rotate`, { reason: input.reason }, opts);
  }

  rotateConnection(connection: string, opts?: RequestOptions): Promise<{ rotation_ids: string[] }> {
    return this.request('POST', '/v1/rotate', { connection }, opts);
  }

  getRotation(id: string, opts?: RequestOptions): Promise<RotationStatus> {
    return this.request('GET', `/v1/rotations/${seg(id)}`, undefined, opts);
  }

  /** Operator only: every session an assumed_role role issued so far stops working. */
  revokeRoleSessions(role: string, opts?: RequestOptions): Promise<{ role: string; revoked_before: string }> {
    return this.request('POST', `/v1/roles/${seg(role)}/revoke-sessions`, undefined, opts);
  }

  private async request<T>(method: string, path: string, body: Record<string, unknown> | undefined, opts: RequestOptions = {}): Promise<T> {
    // The token is resolved per request so a rotated token file is always honoured.
    const headers: Record<string, string> = { authorization: `Bearer ${await resolveToken(this.token)}`, accept: 'application/json' };
    let payload: string | undefined;
    if (body !== undefined) {
      payload = JSON.stringify(dropUndefined(body));
      headers['content-type'] = 'application/json';
    }
    const timeoutMs = opts.timeoutMs ?? this.timeoutMs;
    const signals = [AbortSignal.timeout(timeoutMs), ...(opts.signal ? [opts.signal] : [])];
    let res: Response;
    try {
      res = await fetch(`${this.addr}${path}`, { method, headers, body: payload, signal: AbortSignal.any(signals) });
    } catch (err) {
      if (opts.signal?.aborted) throw opts.signal.reason ?? err;
      throw new BrokerUnreachableError(this.addr, networkReason(err, timeoutMs));
    }
    const text = await res.text().catch(() => '');
    if (!res.ok) throw apiError(res, text);
    try {
      return JSON.parse(text) as T;
    } catch {
      throw new TesseraApiError(res.status, 'bad_response', `the broker answered ${method} ${path.split('?')[0]} with a body that is not JSON`, res.headers.get('x-request-id'));
    }
  }
}

function apiError(res: Response, text: string): TesseraApiError {
  const headerId = res.headers.get('x-request-id');
  try {
    const { error } = JSON.parse(text) as { error?: { code?: unknown; message?: unknown; request_id?: unknown } };
    if (error && typeof error.code === 'string' && typeof error.message === 'string') {
      return new TesseraApiError(res.status, error.code, error.message, typeof error.request_id === 'string' && error.request_id ? error.request_id : headerId);
    }
  } catch {
    /* not the API's error shape: a proxy in between, say */
  }
  return new TesseraApiError(res.status, `http_${res.status}`, `HTTP ${res.status}${res.statusText ? ` ${res.statusText}` : ''}`, headerId);
}

/** Why fetch failed, from the cause's error code only (fetch's own messages can be vague or long). */
function networkReason(err: unknown, timeoutMs: number): string {
  const e = err as { name?: string; cause?: { name?: string } };
  if (e?.name === 'TimeoutError' || e?.cause?.name === 'TimeoutError') return `no answer within ${Math.round(timeoutMs / 1000)}s`;
  const cause = e?.cause as { code?: unknown; message?: unknown } | undefined;
  if (typeof cause?.code === 'string') return cause.code;
  return typeof cause?.message === 'string' && cause.message ? cause.message.slice(0, 100) : 'connection failed';
}

function normaliseAddr(addr: string): string {
  let url: URL;
  try {
    url = new URL(addr);
  } catch {
    throw new InvalidOptionError(`broker address ${JSON.stringify(addr)} is not a URL (e.g. http://127.0.0.1:8200)`);
  }
  if (url.protocol !== 'http:' && url.protocol !== 'https:') throw new InvalidOptionError(`broker address must be http:// or https://, not ${url.protocol}`);
  if (url.username || url.password) throw new InvalidOptionError('broker address must not contain credentials');
  return url.toString().replace(/\/+$/, '');
}

const seg = (value: string) => encodeURIComponent(value);

function dropUndefined(body: Record<string, unknown>): Record<string, unknown> {
  return Object.fromEntries(Object.entries(body).filter(([, v]) => v !== undefined));
}
