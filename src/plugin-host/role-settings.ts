import { Inject, Injectable } from '@nestjs/common';
import { PLUGINS } from '../../plugins';
import { RoleSettings } from '../../plugins/contract';
import { CONFIG } from '../config/config.module';
import { TesseraConfig } from '../config/config.loader';

/**
 * The plugin settings to use for an existing lease. A role removed from the config since the lease was
 * issued still has to be revoked: its plugin's defaults are used then.
 */
@Injectable()
export class RoleSettingsResolver {
  constructor(@Inject(CONFIG) private readonly config: TesseraConfig) {}

  forLease(lease: { role: string; plugin: string; connection: string }): RoleSettings {
    const role = this.config.roles.get(lease.role);
    if (role && role.plugin === lease.plugin && role.connection === lease.connection) return role.settings;
    return PLUGINS[lease.plugin]?.roleSchema.parse({}) ?? {};
  }
}
