import { Inject, Injectable, OnApplicationShutdown } from '@nestjs/common';
import { PLUGINS } from '../../plugins';
import { CredentialPlugin, PluginError } from '../../plugins/contract';
import { CONFIG } from '../config/config.module';
import { TesseraConfig } from '../config/config.loader';
import { Metrics } from '../metrics/metrics';

type Operation = 'createUser' | 'renewUser' | 'revokeUser' | 'verifyLogin' | 'ping' | 'setStaticSecret' | 'retireStaticSecret';

/**
 * One plugin instance per configured connection, created at boot (a configured plugin that is missing
 * or whose config is invalid stopped start-up already, in the config loader). Every call goes through
 * `call`, the same middleware for every plugin: timing, metrics, and scrubbing of the request's secrets
 * out of any error message.
 */
@Injectable()
export class PluginRegistry implements OnApplicationShutdown {
  private readonly instances = new Map<string, { plugin: string; impl: CredentialPlugin }>();

  constructor(
    @Inject(CONFIG) config: TesseraConfig,
    private readonly metrics: Metrics,
  ) {
    for (const conn of config.connections.values()) {
      this.instances.set(conn.name, { plugin: conn.plugin, impl: PLUGINS[conn.plugin].create(conn.name, conn.settings) });
    }
  }

  maxUsernameLength(connection: string): number {
    return this.get(connection).impl.maxUsernameLength;
  }

  pluginOf(connection: string): string {
    return this.get(connection).plugin;
  }

  connectionNames(): string[] {
    return [...this.instances.keys()];
  }

  async call<T>(connection: string, operation: Operation, secrets: readonly string[], fn: (p: CredentialPlugin) => Promise<T>): Promise<T> {
    const { plugin, impl } = this.get(connection);
    const end = this.metrics.pluginCalls.startTimer({ plugin, operation });
    try {
      const result = await fn(impl);
      end({ outcome: 'ok' });
      return result;
    } catch (err) {
      end({ outcome: 'error' });
      throw scrub(err, secrets);
    }
  }

  async onApplicationShutdown(): Promise<void> {
    await Promise.all([...this.instances.values()].map((i) => i.impl.close().catch(() => undefined)));
  }

  private get(connection: string) {
    const entry = this.instances.get(connection);
    if (!entry) throw new Error(`no plugin instance for connection ${connection}`);
    return entry;
  }
}

/** Returns a PluginError whose message cannot contain any of the given secrets. */
export function scrub(err: unknown, secrets: readonly string[]): PluginError {
  const source = err instanceof PluginError ? err : new PluginError(String((err as Error)?.message ?? err), true, 'plugin_error');
  let message = source.message;
  for (const secret of secrets) if (secret) message = message.split(secret).join('[redacted]');
  if (message === source.message) return source;
  return new PluginError(message, source.retryable, source.code);
}
