import { Inject, Injectable } from '@nestjs/common';
import { PLUGINS } from '../../plugins';
import { DEFAULT_LEASE_TERMS, LeaseTerms, RoleSettings } from '../../plugins/contract';
import { CONFIG } from '../config/config.module';
import { TesseraConfig } from '../config/config.loader';

type LeaseTarget = { role: string; plugin: string; connection: string };

/** The configured role of an existing lease, if the config still has it on the same plugin and connection. */
export function roleForLease(config: TesseraConfig, lease: LeaseTarget) {
  const role = config.roles.get(lease.role);
  return role && role.plugin === lease.plugin && role.connection === lease.connection ? role : undefined;
}

/**
 * The plugin settings to use for an existing lease. A role removed from the config since the lease was
 * issued still has to be revoked: its plugin's defaults are used then.
 */
@Injectable()
export class RoleSettingsResolver {
  constructor(@Inject(CONFIG) private readonly config: TesseraConfig) {}

  forLease(lease: LeaseTarget): RoleSettings {
    return roleForLease(this.config, lease)?.settings ?? PLUGINS[lease.plugin]?.roleSchema.parse({}) ?? {};
  }

  /** What the lease's role allows (e.g. whether revoking it removes anything from the target). */
  termsForLease(lease: LeaseTarget): LeaseTerms {
    return roleForLease(this.config, lease)?.terms ?? DEFAULT_LEASE_TERMS;
  }
}
