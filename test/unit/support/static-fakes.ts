import { LateLogins, PluginCapabilities, PluginError, RetireStaticSecretRequest, RetireStaticSecretResponse, SetStaticSecretRequest, StaticSecretResult, VerifyRequest } from '../../../plugins/contract';
import { TesseraConfig } from '../../../src/config/config.loader';
import { staticSecretSchema } from '../../../src/config/config.schema';
import { Metrics } from '../../../src/metrics/metrics';
import { PluginHost } from '../../../src/plugin-host/plugin-host';
import { Database } from '../../../src/storage/database';
import { ExposureContainment } from '../../../src/statics/exposure';
import { EndedSessions } from '../../../src/statics/late-logins';
import { OwnershipService } from '../../../src/statics/ownership.service';
import { RotationBatchRepository } from '../../../src/statics/rotation-batch.repository';
import { RotationService } from '../../../src/statics/rotation.service';
import { StaticRepository } from '../../../src/statics/static.repository';
import { InMemoryStatics } from './in-memory-statics';
import { FakeAudit, FakeClock, FakeJobs } from './lease-fakes';

/** What the fake target answers when it ends an account's sessions for a replaced password. */
export const FAKE_LATE_LOGINS: LateLogins = { before: '1000', withinMs: 1000 };

type StaticVerb = 'setStaticSecret' | 'retireStaticSecret' | 'verifyLogin';

/**
 * A target of static accounts. Password targets keep each account's passwords that log in and its
 * open sessions; with `keyOverlap` (IAM-like) accounts hold access keys that coexist instead. Every
 * call is recorded; `failWhen` makes calls fail, `before` runs something first (a report arriving
 * while the target works).
 */
export class FakeStaticTarget {
  readonly capabilities: PluginCapabilities;
  readonly passwords = new Map<string, string[]>();
  readonly sessions = new Map<string, number>();
  readonly keys = new Map<string, { account: string; secret: string }>();
  readonly calls: { verb: StaticVerb; req: Record<string, unknown> }[] = [];
  readonly before: Partial<Record<StaticVerb, (req: never) => Promise<void> | void>> = {};
  /** Like MySQL 8's RETAIN CURRENT PASSWORD: a new password leaves the previous one working too. */
  retainsPrevious = false;
  private readonly failures: { verb: StaticVerb; err: PluginError; times: number; when: (req: never) => boolean }[] = [];
  private keyCount = 0;

  constructor(opts: { keyOverlap?: boolean } = {}) {
    this.capabilities = { staticStrategies: ['single', 'alternating'], targetExpiry: true, keyOverlap: opts.keyOverlap ?? false, sessions: !opts.keyOverlap, batchRevoke: false };
  }

  /** An account that exists before Tessera, with a password Tessera does not know. */
  account(name: string, password: string): this {
    this.passwords.set(name, [password]);
    this.sessions.set(name, 0);
    return this;
  }

  /** Makes the next `times` calls of `verb` (those matching `when`) throw `err`. */
  failWhen<V extends StaticVerb>(verb: V, err: PluginError, opts: { times?: number; when?: (req: Parameters<FakeStaticTarget[V]>[0]) => boolean } = {}): void {
    this.failures.push({ verb, err, times: opts.times ?? 1, when: (opts.when ?? (() => true)) as (req: never) => boolean });
  }

  logsIn(username: string, password: string, keyId?: string): boolean {
    if (keyId !== undefined) return this.keys.get(keyId)?.account === username && this.keys.get(keyId)?.secret === password;
    return this.passwords.get(username)?.includes(password) ?? false;
  }

  /** Opens a session with a password (false when refused). */
  connect(username: string, password: string): boolean {
    if (!this.logsIn(username, password)) return false;
    this.sessions.set(username, (this.sessions.get(username) ?? 0) + 1);
    return true;
  }

  keysOf(account: string): string[] {
    return [...this.keys.entries()].filter(([, k]) => k.account === account).map(([id]) => id);
  }

  callsOf(verb: StaticVerb): Record<string, unknown>[] {
    return this.calls.filter((c) => c.verb === verb).map((c) => c.req);
  }

  async setStaticSecret(req: SetStaticSecretRequest): Promise<StaticSecretResult> {
    await this.enter('setStaticSecret', req);
    if (this.capabilities.keyOverlap) {
      const keyId = `AKIAFAKE${String(++this.keyCount).padStart(8, '0')}`;
      const secret = `secret-${keyId}`;
      this.keys.set(keyId, { account: req.account, secret });
      return { credentials: { access_key_id: keyId, secret_access_key: secret }, verify: { username: req.account, password: secret, keyId }, handle: keyId };
    }
    if (req.apply !== false) {
      const old = this.passwords.get(req.account) ?? [];
      this.passwords.set(req.account, this.retainsPrevious && old[0] !== req.password ? [req.password, ...old.slice(0, 1)] : [req.password]);
      if (req.endSessions) this.sessions.set(req.account, 0);
    }
    const lateLogins = req.apply !== false && req.endSessions ? FAKE_LATE_LOGINS : undefined;
    return { credentials: { username: req.account, password: req.password }, verify: { username: req.account, password: req.password }, ...(lateLogins && { lateLogins }) };
  }

  async retireStaticSecret(req: RetireStaticSecretRequest): Promise<RetireStaticSecretResponse> {
    await this.enter('retireStaticSecret', req);
    if (this.capabilities.keyOverlap) {
      for (const id of this.keysOf(req.account)) if (id === req.handle || (req.keep && !req.keep.includes(id))) this.keys.delete(id);
      return {};
    }
    if (req.password) this.passwords.set(req.account, [req.password]);
    if (req.endSessions) this.sessions.set(req.account, 0);
    return req.endSessions ? { lateLogins: FAKE_LATE_LOGINS } : {};
  }

  async verifyLogin(req: VerifyRequest): Promise<{ ok: boolean }> {
    await this.enter('verifyLogin', req);
    return { ok: this.logsIn(req.username, req.password, req.keyId) };
  }

  private async enter(verb: StaticVerb, req: object): Promise<void> {
    this.calls.push({ verb, req: { ...req } });
    await this.before[verb]?.(req as never);
    const failure = this.failures.find((f) => f.verb === verb && f.times > 0 && f.when(req as never));
    if (failure) {
      failure.times--;
      throw failure.err;
    }
  }
}

/**
 * RotationService, ExposureContainment and OwnershipService over in-memory fakes, with no waits.
 * `plugin`: a real target plugin instead of the fake one (the repository, audit and jobs stay fakes).
 */
export function rotationWorld(secrets: Record<string, Record<string, unknown>>, opts: { keyOverlap?: boolean; plugin?: object } = {}) {
  const clock = new FakeClock();
  const audit = new FakeAudit();
  const statics = new InMemoryStatics(clock);
  const target = new FakeStaticTarget(opts);
  const jobs = new FakeJobs();
  const metrics = new Metrics();
  const static_secrets = Object.fromEntries(Object.entries(secrets).map(([name, s]) => [name, staticSecretSchema.parse({ connection: 'target', ...s })]));
  const config = { static_secrets, reconcile_every: 1 } as unknown as TesseraConfig;
  const plugins = { for: () => opts.plugin ?? target } as unknown as Pick<PluginHost, 'for'>;
  const db: Pick<Database, 'tx'> = { tx: (fn) => fn(undefined as never) };
  const repo = statics as unknown as StaticRepository;
  const timings = { verifyBackoffMs: 0, exposureDrainMs: 0 };
  // The batch statements containment uses, over the same in-memory rows.
  const batch = {
    versionsBefore: async (cs: { name: string; version: number }[], limit: number) =>
      new Map(await Promise.all(cs.map(async (c) => [c.name, await statics.versionsBefore(c.name, c.version, limit)] as const))),
    contained: async (vs: { name: string; version: number; exposedAt: Date }[]) => {
      for (const v of vs) {
        await statics.step(v.name, v.version, 'contained', 'running');
        await statics.contained(v.name, v.version, v.exposedAt);
      }
    },
  } as unknown as RotationBatchRepository;
  // The second sweeps of replaced passwords asked for (none from the fake target, which has no late logins).
  const lateSweeps: EndedSessions[] = [];
  const containment = new ExposureContainment(repo, batch, plugins, db, audit, timings, { record: async (ended: EndedSessions[]) => void lateSweeps.push(...ended) });
  const rotations = new RotationService(config, db, repo, plugins, jobs, audit, metrics, clock, containment, timings);
  const ownership = new OwnershipService(config, db, repo, plugins, audit, rotations, clock);
  return { clock, audit, statics, target, jobs, metrics, config, rotations, ownership, lateSweeps };
}
