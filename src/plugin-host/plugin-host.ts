import { Inject, Injectable, OnApplicationShutdown } from '@nestjs/common';
import { PLUGINS } from '../../plugins';
import { CredentialPlugin, PluginError, RevokeUserOutcome, RevokeUserRequest, RevokeUsersRequest, RevokeUsersResponse, SECRET_FIELDS } from '../../plugins/contract';
import { CONFIG } from '../config/config.module';
import { TesseraConfig } from '../config/config.loader';
import { Metrics } from '../metrics/metrics';

/**
 * What the broker's services call: a plugin's verbs, behind the middleware. Closing is the host's
 * business. `revokeUsers` is always there: plugins without the batch verb get `revokeEach`.
 */
export type TargetPlugin = Omit<CredentialPlugin, 'close' | 'revokeUsers'> & {
  revokeUsers(req: RevokeUsersRequest): Promise<RevokeUsersResponse>;
};

const VERBS = ['createUser', 'renewUser', 'revokeUser', 'setStaticSecret', 'retireStaticSecret', 'verifyLogin', 'ping'] as const;
/** Verbs a plugin may leave out; the wrapped plugin has them only when the plugin does. */
const OPTIONAL_VERBS = ['revokeSessions', 'checkStoredPasswords', 'endSessionsStartedBefore'] as const;
type Verb = (typeof VERBS)[number] | (typeof OPTIONAL_VERBS)[number];

/** How many single revokes the fallback for plugins without the batch verb runs at once. */
const REVOKE_EACH_CONCURRENCY = 8;

/**
 * One plugin instance per configured connection, created at boot (a configured plugin that is missing
 * or whose config is invalid stopped start-up already, in the config loader). `for(connection)` hands
 * out the plugin wrapped in one middleware, the same for every plugin and verb, as Vault wraps its
 * database plugins: timing and metrics per call, and every secret of the request (its `password`
 * fields) scrubbed out of any error before it leaves.
 */
@Injectable()
export class PluginHost implements OnApplicationShutdown {
  private readonly instances = new Map<string, { impl: CredentialPlugin; wrapped: TargetPlugin }>();

  constructor(@Inject(CONFIG) config: TesseraConfig, metrics: Metrics) {
    for (const conn of config.connections.values()) {
      const impl = PLUGINS[conn.plugin].create(conn.name, conn.settings);
      this.instances.set(conn.name, { impl, wrapped: wrap(impl, conn.plugin, metrics) });
    }
  }

  for(connection: string): TargetPlugin {
    const entry = this.instances.get(connection);
    if (!entry) throw new Error(`no plugin instance for connection ${connection}`);
    return entry.wrapped;
  }

  connectionNames(): string[] {
    return [...this.instances.keys()];
  }

  async onApplicationShutdown(): Promise<void> {
    await Promise.all([...this.instances.values()].map((i) => i.impl.close().catch(() => undefined)));
  }
}

function wrap(impl: CredentialPlugin, plugin: string, metrics: Metrics): TargetPlugin {
  const wrapped = { maxUsernameLength: impl.maxUsernameLength, capabilities: impl.capabilities } as TargetPlugin;
  for (const verb of [...VERBS, ...OPTIONAL_VERBS.filter((v) => typeof impl[v] === 'function')]) {
    const call = (impl[verb] as (req?: unknown) => Promise<unknown>).bind(impl);
    (wrapped as unknown as Record<Verb, (req?: unknown) => Promise<unknown>>)[verb] = async (req?: unknown) => {
      const end = metrics.pluginCalls.startTimer({ plugin, operation: verb });
      try {
        const result = await call(req);
        end({ outcome: 'ok' });
        return result;
      } catch (err) {
        end({ outcome: 'error' });
        throw scrub(err, secretsOf(req));
      }
    };
  }
  // The batch verb: the plugin's own when it has one, else one revokeUser (wrapped above) per user.
  // Either way each user gets an outcome, and a call that throws counts as that error for every user.
  const batch = impl.capabilities.batchRevoke && impl.revokeUsers ? impl.revokeUsers.bind(impl) : undefined;
  wrapped.revokeUsers = async (req: RevokeUsersRequest) => {
    if (!batch) return revokeEach(wrapped, req);
    const end = metrics.pluginCalls.startTimer({ plugin, operation: 'revokeUsers' });
    let results: RevokeUserOutcome[];
    try {
      results = (await batch(req)).results;
    } catch (err) {
      end({ outcome: 'error' });
      const error = scrub(err, []);
      return { results: req.users.map((u) => ({ username: u.username, ok: false as const, error })) };
    }
    end({ outcome: results.every((r) => r.ok) ? 'ok' : 'error' });
    return { results: answerEach(req, results) };
  };
  return wrapped;
}

/** The batch verb for plugins without one: `revokeUser` for each user, a few at a time. */
export async function revokeEach(plugin: Pick<TargetPlugin, 'revokeUser'>, req: RevokeUsersRequest): Promise<RevokeUsersResponse> {
  const results: RevokeUserOutcome[] = new Array(req.users.length);
  let next = 0;
  const worker = async () => {
    for (let i = next++; i < req.users.length; i = next++) {
      const user: RevokeUserRequest = req.users[i];
      results[i] = await plugin.revokeUser(user).then(
        () => ({ username: user.username, ok: true as const }),
        (err: unknown) => ({ username: user.username, ok: false as const, error: scrub(err, []) }),
      );
    }
  };
  await Promise.all(Array.from({ length: Math.min(REVOKE_EACH_CONCURRENCY, req.users.length) }, worker));
  return { results };
}

/**
 * One outcome per requested user, in the request's order, whatever the plugin answered: a user it
 * gave no outcome for failed (retryably), and every error is a scrubbed PluginError.
 */
function answerEach(req: RevokeUsersRequest, results: readonly RevokeUserOutcome[]): RevokeUserOutcome[] {
  const byName = new Map(results.map((r) => [r.username, r]));
  return req.users.map((u) => {
    const r = byName.get(u.username);
    if (!r) return { username: u.username, ok: false as const, error: new PluginError(`no outcome for ${u.username}`, true) };
    return r.ok ? r : { username: u.username, ok: false as const, error: scrub(r.error, []) };
  });
}

/** The values of a request's secret fields. */
export function secretsOf(req: unknown): string[] {
  if (!req || typeof req !== 'object') return [];
  const fields = req as Record<string, unknown>;
  const own = SECRET_FIELDS.map((f) => fields[f]).filter((v): v is string => typeof v === 'string' && v.length > 0);
  // Requests about many accounts carry their secrets in lists of objects (checkStoredPasswords).
  const listed = Object.values(fields).flatMap((v) => (Array.isArray(v) ? v.flatMap((item) => (Array.isArray(item) ? [] : secretsOf(item))) : []));
  return [...own, ...listed];
}

/** Returns a PluginError whose message cannot contain any of the given secrets. */
export function scrub(err: unknown, secrets: readonly string[]): PluginError {
  const source = err instanceof PluginError ? err : new PluginError(String((err as Error)?.message ?? err), true, 'plugin_error');
  let message = source.message;
  for (const secret of secrets) if (secret) message = message.split(secret).join('[redacted]');
  if (message === source.message) return source;
  return new PluginError(message, source.retryable, source.code);
}
