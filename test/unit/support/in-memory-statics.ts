import { Clock } from '../../../src/common/clock';
import { SealedVersion } from '../../../src/statics/static-secrets';
import type { SealedRow } from '../../../src/statics/static.sql';
import { RotationRow, RotationStatus, StaticRepository, StaticRow, StaticStatus, VersionRow } from '../../../src/statics/static.repository';

type Public<T> = { [K in keyof T]: T[K] };

/**
 * StaticRepository in memory, statement by statement as its SQL does. Its timestamps are the fake
 * clock's, but strictly increasing (as a real database's are between statements), so "promoted after
 * the exposure was reported" holds without advancing the clock. Sealed content is stored as plain JSON.
 */
export class InMemoryStatics implements Public<StaticRepository> {
  readonly secrets = new Map<string, StaticRow>();
  readonly versions: VersionRow[] = [];
  readonly rotations = new Map<string, RotationRow>();
  /** Secrets whose lock someone holds (a rotation running, or a test standing in for another replica). */
  readonly locked = new Set<string>();
  private last = 0;

  constructor(private readonly clock: Clock) {}

  private now(): Date {
    this.last = Math.max(this.clock.now().getTime(), this.last + 1);
    return new Date(this.last);
  }

  async register(secrets: { name: string; connection: string }[]): Promise<string[]> {
    const added = secrets.filter((s) => !this.secrets.has(s.name));
    for (const s of added) {
      this.secrets.set(s.name, { name: s.name, connection: s.connection, status: 'unowned', current_version: null, rotated_at: null, next_rotation_at: null, last_error: null, exposed_at: null });
    }
    return added.map((s) => s.name);
  }

  async withLock<T>(name: string, fn: () => Promise<T>): Promise<T | undefined> {
    if (this.locked.has(name)) return undefined;
    this.locked.add(name);
    try {
      return await fn();
    } finally {
      this.locked.delete(name);
    }
  }

  async get(name: string): Promise<StaticRow | undefined> {
    const row = this.secrets.get(name);
    return row && { ...row };
  }

  async getMany(names: string[]): Promise<StaticRow[]> {
    return names.flatMap((name) => (this.secrets.has(name) ? [{ ...this.secrets.get(name)! }] : []));
  }

  async start(name: string, target: number): Promise<{ current?: VersionRow; pending?: VersionRow; trigger?: string }> {
    const trigger = this.waiting(name)
      .filter((r) => r.target_version === target)
      .sort((a, b) => a.created_at.getTime() - b.created_at.getTime())[0]?.trigger;
    await this.step(name, target, 'started', 'running');
    return { current: await this.version(name, 'current'), pending: await this.version(name, 'pending'), trigger };
  }

  async version(name: string, state: 'pending' | 'current'): Promise<VersionRow | undefined> {
    const v = this.versions.find((x) => x.name === name && x.state === state);
    return v && { ...v };
  }

  async insertPending(v: { name: string; version: number; account: string; content: SealedVersion; handle?: string }, step?: string): Promise<VersionRow | undefined> {
    if (this.versions.some((x) => x.name === v.name && (x.version === v.version || x.state === 'pending'))) return undefined;
    const row: VersionRow = {
      name: v.name, version: v.version, account: v.account, key_id: 'plain', sealed: seal(v.content), handle: v.handle ?? null,
      state: 'pending', created_at: this.now(), promoted_at: null, retire_after: null,
    };
    this.versions.push(row);
    if (step !== undefined) await this.step(v.name, v.version, step, 'running');
    return { ...row };
  }

  async updatePending(name: string, version: number, content: SealedVersion, handle: string | undefined, step?: string): Promise<void> {
    const v = this.find(name, version, 'pending');
    if (v) Object.assign(v, { sealed: seal(content), handle: handle ?? null });
    if (v && step !== undefined) await this.step(name, version, step, 'running');
  }

  sealedRow(name: string, version: number, content: SealedVersion): SealedRow {
    return { name, version, keyId: 'plain', blob: Buffer.from(JSON.stringify(content)) };
  }

  open(v: Pick<VersionRow, 'name' | 'version' | 'key_id' | 'sealed'>): SealedVersion {
    return JSON.parse(v.sealed.toString('utf8')) as SealedVersion;
  }

  async deletePending(name: string, version: number): Promise<void> {
    const i = this.versions.findIndex((x) => x.name === name && x.version === version && x.state === 'pending');
    if (i >= 0) this.versions.splice(i, 1);
  }

  async promote(name: string, version: number, graceSeconds: number, nextAt: Date | null, _q: unknown, opts: { finish: boolean } = { finish: true }): Promise<void> {
    const pending = this.find(name, version, 'pending');
    if (!pending) throw new Error(`static secret ${name}: version ${version} is no longer pending`);
    const now = this.now();
    for (const v of this.of(name, 'previous')) v.state = 'retired';
    for (const v of this.of(name, 'current')) Object.assign(v, { state: 'previous', retire_after: new Date(now.getTime() + graceSeconds * 1000) });
    Object.assign(pending, { state: 'current', promoted_at: now });
    Object.assign(this.secrets.get(name)!, { current_version: version, status: 'active', rotated_at: now, next_rotation_at: nextAt, last_error: null });
    if (opts.finish) this.finishRotations(name, version, false);
  }

  async markExposed(names: string[]): Promise<void> {
    const now = this.now();
    for (const name of names) {
      const row = this.secrets.get(name);
      if (row) row.exposed_at = now;
    }
  }

  async exposure(name: string): Promise<Date | null> {
    return this.secrets.get(name)?.exposed_at ?? null;
  }

  async versionsBefore(name: string, version: number, limit: number): Promise<VersionRow[]> {
    return this.versions
      .filter((v) => v.name === name && v.version < version && (v.state === 'previous' || v.state === 'retired'))
      .sort((a, b) => b.version - a.version)
      .slice(0, limit)
      .map((v) => ({ ...v }));
  }

  async contained(name: string, version: number, exposedAt: Date): Promise<void> {
    for (const v of this.of(name, 'previous')) v.state = 'retired';
    const row = this.secrets.get(name)!;
    if (row.exposed_at?.getTime() === exposedAt.getTime()) row.exposed_at = null;
    this.finishRotations(name, version, true);
  }

  async markFailed(name: string, error: string, retryAfterSeconds: number): Promise<void> {
    const now = this.now();
    Object.assign(this.secrets.get(name)!, { status: 'rotation_failed', last_error: error, next_rotation_at: new Date(now.getTime() + retryAfterSeconds * 1000) });
  }

  async due(limit: number): Promise<{ name: string; status: StaticStatus; current_version: number | null; exposed: boolean }[]> {
    const now = this.clock.now().getTime();
    const stalePending = (name: string) => this.versions.some((v) => v.name === name && v.state === 'pending' && v.created_at.getTime() < now - 60_000);
    return [...this.secrets.values()]
      .filter(
        (s) =>
          s.status === 'unowned' ||
          (s.next_rotation_at !== null && s.next_rotation_at.getTime() <= now) ||
          (s.exposed_at !== null && s.exposed_at.getTime() < now - 60_000 && s.status !== 'rotation_failed') ||
          stalePending(s.name),
      )
      .sort((a, b) => (a.next_rotation_at?.getTime() ?? -Infinity) - (b.next_rotation_at?.getTime() ?? -Infinity))
      .slice(0, limit)
      .map((s) => ({ name: s.name, status: s.status, current_version: s.current_version, exposed: s.exposed_at !== null }));
  }

  async toRetire(): Promise<VersionRow[]> {
    const now = this.clock.now().getTime();
    return this.versions.filter((v) => v.state === 'previous' && v.retire_after !== null && v.retire_after.getTime() <= now).map((v) => ({ ...v }));
  }

  async markRetired(name: string, version: number): Promise<void> {
    const v = this.find(name, version, 'previous');
    if (v) v.state = 'retired';
  }

  async createRotations(rs: { id: string; name: string; target: number; trigger: string; reason?: string; requestedBy?: string }[]): Promise<void> {
    for (const r of rs) await this.createRotation(r);
  }

  async createRotation(r: { id: string; name: string; target: number; trigger: string; reason?: string; requestedBy?: string }): Promise<void> {
    this.rotations.set(r.id, {
      id: r.id, name: r.name, target_version: r.target, trigger: r.trigger, reason: r.reason ?? null, requested_by: r.requestedBy ?? null,
      status: 'queued', steps: [], error: null, created_at: this.now(), finished_at: null,
    });
  }

  async rotationTrigger(name: string, target: number): Promise<string | undefined> {
    return [...this.rotations.values()].find((r) => r.name === name && r.target_version === target)?.trigger;
  }

  async ensureRotation(name: string, target: number, trigger: string, id: string): Promise<void> {
    if (this.waiting(name).some((r) => r.target_version === target)) return;
    await this.createRotation({ id, name, target, trigger });
  }

  async step(name: string, target: number, step: string, status: RotationStatus, error?: string): Promise<void> {
    const now = this.now();
    for (const r of this.waiting(name).filter((x) => x.target_version === target)) {
      r.steps.push({ step, at: now.toISOString(), ...(error && { error }) });
      Object.assign(r, { status, error: error ?? r.error, finished_at: status === 'succeeded' || status === 'failed' ? now : r.finished_at });
    }
  }

  async rotation(id: string): Promise<RotationRow | undefined> {
    const r = this.rotations.get(id);
    return r && { ...r, steps: [...r.steps] };
  }

  async history(name: string): Promise<{ versions: Omit<VersionRow, 'sealed' | 'key_id'>[]; rotations: RotationRow[] }> {
    const versions = this.versions
      .filter((v) => v.name === name)
      .sort((a, b) => b.version - a.version)
      .slice(0, 20)
      .map(({ sealed: _s, key_id: _k, ...v }) => v);
    const rotations = [...this.rotations.values()].filter((r) => r.name === name).reverse().slice(0, 20);
    return { versions, rotations };
  }

  async list(): Promise<StaticRow[]> {
    return [...this.secrets.values()].sort((a, b) => a.name.localeCompare(b.name)).map((r) => ({ ...r }));
  }

  /** The steps recorded on a rotation request, in order. */
  steps(id: string): string[] {
    return this.rotations.get(id)!.steps.map((s) => s.step);
  }

  private finishRotations(name: string, version: number, exposure: boolean): void {
    const now = this.now();
    for (const r of this.waiting(name)) {
      if (r.target_version <= version && (exposure || !['emergency', 'event'].includes(r.trigger))) Object.assign(r, { status: 'succeeded', finished_at: now });
    }
  }

  private waiting(name: string): RotationRow[] {
    return [...this.rotations.values()].filter((r) => r.name === name && (r.status === 'queued' || r.status === 'running'));
  }

  private find(name: string, version: number, state: VersionRow['state']): VersionRow | undefined {
    return this.versions.find((v) => v.name === name && v.version === version && v.state === state);
  }

  private of(name: string, state: VersionRow['state']): VersionRow[] {
    return this.versions.filter((v) => v.name === name && v.state === state);
  }
}

const seal = (content: SealedVersion) => Buffer.from(JSON.stringify(content), 'utf8');
