import { Inject, Injectable } from '@nestjs/common';
import { AuditLog } from '../audit/audit.log';
import { Clock } from '../common/clock';
import { CONFIG } from '../config/config.module';
import { TesseraConfig } from '../config/config.loader';
import { PluginHost } from '../plugin-host/plugin-host';
import { Database } from '../storage/database';
import { RotationService } from './rotation.service';
import { nextRotation } from './schedule';
import { nextAccount, staticConfig } from './static-secrets';
import { StaticRepository } from './static.repository';

/** Taking ownership of a newly registered static secret: importing its configured password, or rotating it once. */
@Injectable()
export class OwnershipService {
  constructor(
    @Inject(CONFIG) private readonly config: TesseraConfig,
    @Inject(Database) private readonly db: Pick<Database, 'tx'>,
    private readonly statics: StaticRepository,
    @Inject(PluginHost) private readonly plugins: Pick<PluginHost, 'for'>,
    @Inject(AuditLog) private readonly audit: Pick<AuditLog, 'append'>,
    private readonly rotations: RotationService,
    private readonly clock: Clock,
  ) {}

  /**
   * Takes ownership of a secret not owned yet: imports a configured password (after checking it logs
   * in), else rotates once. Under the secret's lock, so replicas starting together do it once.
   */
  async takeOwnership(name: string): Promise<void> {
    const secret = staticConfig(this.config, name);
    if (!secret) return;
    await this.statics.withLock(name, async () => {
      const row = await this.statics.get(name);
      if (!row || row.status !== 'unowned' || (await this.statics.version(name, 'pending'))) return;
      // A configured password reported leaked is never imported: a rotation replaces it.
      if (secret.password === undefined || row.exposed_at) {
        await this.rotations.schedule(name, 1, row.exposed_at ? 'retry' : 'register', Boolean(row.exposed_at));
        return;
      }
      const account = nextAccount(secret, undefined);
      const plugin = this.plugins.for(secret.connection);
      const result = await plugin.setStaticSecret({ account, password: secret.password, apply: false });
      // A target that cannot be reached is not a wrong password: stay unowned, and try again next sweep.
      if (!(await plugin.verifyLogin(result.verify)).ok) {
        await this.statics.markFailed(name, 'the configured password does not log in; Tessera will rotate it', 0);
        return;
      }
      const content = { password: secret.password, credentials: result.credentials, verify: result.verify };
      if (!(await this.statics.insertPending({ name, version: 1, account, content }))) return;
      const imported = await this.db.tx(async (tx) => {
        // Read under the row lock markExposed takes: a report that came in meanwhile is about this very
        // password (promoted now, it would look like a version made after the report).
        if (await this.statics.exposure(name, tx)) return false;
        await this.statics.promote(name, 1, secret.grace, nextRotation(secret, this.clock.now()), tx);
        await this.audit.append({ type: 'static.imported', actor: null, detail: { name, version: 1, account } }, tx);
        return true;
      });
      if (!imported) {
        await this.statics.deletePending(name, 1);
        await this.rotations.schedule(name, 1, 'retry', true);
      }
    });
  }
}
