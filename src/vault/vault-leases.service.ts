import { Inject, Injectable } from '@nestjs/common';
import { Clock } from '../common/clock';
import { DomainError } from '../common/errors';
import { CONFIG } from '../config/config.module';
import { TesseraConfig } from '../config/config.loader';
import { Identity } from '../identity/identity';
import { LeaseView } from '../leases/lease.model';
import { LeaseService } from '../leases/lease.service';
import { LEASE_ID } from '../leases/names';
import { PolicyService } from '../policy/policy.service';
import { StaticService } from '../statics/static.service';
import { staticConfig } from '../statics/static-secrets';
import { VaultEnvelope, envelope, secondsUntil, vaultSeconds } from './vault-envelope';
import { VaultTokenService } from './vault-token.service';

export type MountKind = 'database' | 'aws';

const leaseNotFound = () => new DomainError('malformed', 'lease_not_found', 'lease not found');
const unknownRole = (name: string) => new DomainError('malformed', 'unknown_role', `unknown role: ${name}`);

/**
 * The Vault-compatible API's view of leases and static secrets: Vault's paths, lease ids and envelopes
 * over LeaseService and StaticService, which decide and do the work exactly as for the native API. A
 * lease id is `{mount}/creds/{role}/{tessera lease id}`, so prefix revocation works on it.
 */
@Injectable()
export class VaultLeasesService {
  constructor(
    @Inject(CONFIG) private readonly config: TesseraConfig,
    private readonly leases: LeaseService,
    private readonly statics: StaticService,
    private readonly policy: PolicyService,
    private readonly vaultTokens: VaultTokenService,
    @Inject(Clock) private readonly clock: Clock,
  ) {}

  /** The mount kind a path's first segment names, if it is one of the configured mounts. */
  mountKind(mount: string): MountKind | undefined {
    if (mount === this.config.vault.database_mount) return 'database';
    if (mount === this.config.vault.aws_mount) return 'aws';
    return undefined;
  }

  /** `opts.sts`: the `{aws_mount}/sts/{role}` path, which serves only roles whose credentials are STS sessions (not renewable). */
  async issue(identity: Identity, tokenId: string | undefined, requestId: string, mount: string, roleName: string, opts: { sts?: boolean } = {}): Promise<VaultEnvelope> {
    const kind = this.requireMount(mount);
    if (opts.sts && kind !== 'aws') throw new DomainError('not_found', 'not_found', 'unsupported path');
    const role = this.config.roles.get(roleName);
    // A role of the other mount is unknown here; only a caller who may lease it (or an operator) learns that.
    if (role && mountOfPlugin(role.plugin) !== kind && (identity.operator || this.policy.canIssue(identity, roleName).allowed)) throw unknownRole(roleName);
    if (!role && identity.operator) throw unknownRole(roleName);
    // As Vault: sts/ is for assumed_role and federation_token roles; an IAM user role is leased through creds/.
    if (opts.sts && role && (role.terms?.renewable ?? true) && (identity.operator || this.policy.canIssue(identity, roleName).allowed)) {
      throw new DomainError('malformed', 'not_sts_role', `role "${roleName}" issues IAM users, not STS credentials: read ${mount}/creds/${roleName}`);
    }
    const issued = await this.leases.issue(identity, roleName, {});
    await this.vaultTokens.issuedWith(tokenId, issued.lease_id);
    const c = issued.credentials;
    const data = kind === 'aws' ? awsData(c) : { username: c.username, password: c.password };
    return envelope(requestId, {
      lease_id: `${mount}/creds/${issued.role}/${issued.lease_id}`,
      renewable: issued.renewable,
      lease_duration: issued.ttl_seconds,
      data,
      mount_type: kind,
    });
  }

  async staticCreds(identity: Identity, requestId: string, mount: string, name: string): Promise<VaultEnvelope> {
    const kind = this.requireMount(mount);
    // The credentials' fields depend on the plugin: username and password, or an access key pair.
    const creds: Record<string, unknown> & { plugin: string | null; rotated_at: string | null; next_rotation_at: string | null } = await this.statics.creds(identity, name);
    if (!creds.plugin || mountOfPlugin(creds.plugin) !== kind) throw unknownRole(name);
    const now = this.clock.now();
    const data =
      kind === 'aws'
        ? { access_key: creds.access_key_id, secret_key: creds.secret_access_key }
        : {
            username: creds.username,
            password: creds.password,
            last_vault_rotation: creds.rotated_at,
            ttl: creds.next_rotation_at ? secondsUntil(creds.next_rotation_at, now) : 0,
            rotation_period: staticConfig(this.config, name)?.rotate_every ?? 0,
          };
    return envelope(requestId, { data, mount_type: kind });
  }

  /** Vault's renew: from now by the increment (0 or absent: the role's default), capped at the lease's max, with a warning when capped. */
  async renew(identity: Identity, requestId: string, vaultLeaseId: string, increment: number | undefined): Promise<VaultEnvelope> {
    const id = this.tesseraId(vaultLeaseId);
    if (!id) throw leaseNotFound();
    const requested = increment || undefined;
    let view: LeaseView;
    try {
      view = await this.leases.renew(identity, id, requested);
    } catch (err) {
      throw await this.renewError(identity, id, err);
    }
    const now = this.clock.now();
    const duration = secondsUntil(view.expires_at, now);
    const wanted = requested ?? this.config.roles.get(view.role)?.defaultTtl ?? duration;
    const warnings =
      wanted > duration + 1 ? [`TTL of "${vaultSeconds(wanted)}" exceeded the effective max_ttl of "${vaultSeconds(duration)}"; TTL value is capped accordingly`] : null;
    return envelope(requestId, { lease_id: this.vaultId(view), renewable: view.expires_at < view.max_expires_at, lease_duration: duration, warnings });
  }

  /** Revokes one lease; an unknown one is no error (Vault answers 204 for both). */
  async revoke(identity: Identity, vaultLeaseId: string): Promise<void> {
    const id = this.tesseraId(vaultLeaseId);
    if (!id) return;
    await this.leases.revoke(identity, id).catch((err) => {
      if (!(err instanceof DomainError && err.kind === 'not_found')) throw err;
    });
  }

  async lookup(identity: Identity, requestId: string, vaultLeaseId: string): Promise<VaultEnvelope> {
    const id = this.tesseraId(vaultLeaseId);
    if (!id) throw leaseNotFound();
    const view = await this.leases.get(identity, id).catch((err) => {
      throw err instanceof DomainError && err.kind === 'not_found' ? leaseNotFound() : err;
    });
    const now = this.clock.now();
    const live = view.state === 'active' && Date.parse(view.expires_at) > now.getTime();
    return envelope(requestId, {
      data: {
        id: this.vaultId(view),
        issue_time: view.created_at,
        expire_time: view.expires_at,
        last_renewal: null,
        renewable: live && view.expires_at < view.max_expires_at,
        ttl: live ? secondsUntil(view.expires_at, now) : 0,
      },
    });
  }

  /**
   * Operators: revokes every lease under a path prefix, by whole segments (`database/`,
   * `database/creds/ROLE`, or one lease id). The accounts are removed by a job.
   */
  async revokePrefix(operator: Identity, prefix: string): Promise<void> {
    const [mount, creds, roleName, leaseId, ...rest] = prefix.split('/').filter((s) => s !== '');
    const kind = mount === undefined ? undefined : this.mountKind(mount);
    if (!kind || (creds !== undefined && creds !== 'creds') || rest.length) throw new DomainError('malformed', 'invalid_prefix', 'prefix must be MOUNT/, MOUNT/creds/ROLE or a lease id');
    if (leaseId !== undefined) return this.revoke(operator, prefix);
    const roles = [...this.config.roles.values()].filter((r) => mountOfPlugin(r.plugin) === kind && (roleName === undefined || r.name === roleName));
    for (const role of roles) await this.leases.bulkRevoke(operator, { role: role.name });
  }

  /** `{mount}/creds/{role}/{id}` (or the bare Tessera lease id) to the Tessera lease id; undefined when it names no lease. */
  private tesseraId(vaultLeaseId: string): string | undefined {
    if (LEASE_ID.test(vaultLeaseId)) return vaultLeaseId;
    const parts = vaultLeaseId.split('/');
    if (parts.length !== 4 || parts[1] !== 'creds' || !LEASE_ID.test(parts[3])) return undefined;
    const kind = this.mountKind(parts[0]);
    const role = this.config.roles.get(parts[2]);
    if (!kind || !role || mountOfPlugin(role.plugin) !== kind) return undefined;
    return parts[3];
  }

  private vaultId(view: Pick<LeaseView, 'lease_id' | 'role' | 'plugin'>): string {
    const mount = mountOfPlugin(view.plugin) === 'aws' ? this.config.vault.aws_mount : this.config.vault.database_mount;
    return `${mount}/creds/${view.role}/${view.lease_id}`;
  }

  private requireMount(mount: string): MountKind {
    const kind = this.mountKind(mount);
    if (!kind) throw new DomainError('not_found', 'not_found', 'unsupported path');
    return kind;
  }

  /** Vault's answers for a renew that cannot happen: 400 `lease not found` or `lease expired`. */
  private async renewError(identity: Identity, id: string, err: unknown): Promise<unknown> {
    if (!(err instanceof DomainError)) return err;
    if (err.kind === 'not_found') return leaseNotFound();
    if (err.code === 'lease_expired') return new DomainError('malformed', 'lease_expired', 'lease expired');
    if (err.code === 'not_renewable') return new DomainError('malformed', 'not_renewable', 'lease is not renewable');
    if (err.code === 'lease_not_active') {
      const view = await this.leases.get(identity, id).catch(() => undefined);
      return view && Date.parse(view.expires_at) <= this.clock.now().getTime() ? new DomainError('malformed', 'lease_expired', 'lease expired') : leaseNotFound();
    }
    return err;
  }
}

/** Vault's aws/creds data: STS credentials carry `security_token` (and `arn`), as Vault's assumed_role and sts do. */
function awsData(c: Record<string, string | number>): Record<string, unknown> {
  return {
    access_key: c.access_key_id,
    secret_key: c.secret_access_key,
    security_token: c.session_token ?? null,
    ...(c.arn !== undefined && { arn: c.arn }),
  };
}

export function mountOfPlugin(plugin: string): MountKind {
  return plugin === 'aws-iam' ? 'aws' : 'database';
}
