import { Body, Controller, Get, Head, HttpCode, Inject, Post, Req, Res } from '@nestjs/common';
import { ApiExcludeController } from '@nestjs/swagger';
import type { Response } from 'express';
import { DomainError } from '../common/errors';
import { CONFIG } from '../config/config.module';
import { TesseraConfig } from '../config/config.loader';
import { CachedCheck } from '../health/health.controller';
import { AuthedRequest, OperatorOnly, Public } from '../http/auth.guard';
import { parseInput } from '../http/validation';
import { JobProducer } from '../jobs/job.producer';
import { Database } from '../storage/database';
import { VaultLeasesService } from './vault-leases.service';
import { leaseIdBody, optionalLeaseRenewBody } from './vault.dto';

type VaultRequest = AuthedRequest & { id?: string };
const requestId = (req: VaultRequest) => String(req.id ?? '');
const VERSION = '1.15.0+tessera';

/** The rest of a path after a route's fixed part, decoded segment by segment: lease ids and prefixes contain "/". */
function pathAfter(req: VaultRequest, fixed: string): string {
  const at = req.path.indexOf(fixed);
  if (at < 0) return '';
  const rest = req.path.slice(at + fixed.length);
  try {
    return rest.split('/').map(decodeURIComponent).join('/');
  } catch {
    throw new DomainError('malformed', 'invalid_path', 'the path is not valid percent-encoding');
  }
}

function leaseIdOf(req: VaultRequest, fixed: string, bodyId: string | undefined): string {
  const fromPath = pathAfter(req, fixed);
  const id = fromPath || bodyId;
  if (!id) throw new DomainError('malformed', 'missing_lease_id', 'lease_id is required');
  return id;
}

/** Vault's `sys/` routes Tessera serves (DESIGN §11): leases, prefix revocation, mount discovery, health. */
@ApiExcludeController()
@Controller('v1/sys')
export class VaultSysController {
  private readonly stateDb: CachedCheck;
  private readonly queue: CachedCheck;

  constructor(
    @Inject(CONFIG) private readonly config: TesseraConfig,
    private readonly vault: VaultLeasesService,
    @Inject(Database) db: Database,
    jobs: JobProducer,
  ) {
    this.stateDb = new CachedCheck(() => db.query('SELECT 1'));
    this.queue = new CachedCheck(() => jobs.ping());
  }

  @Post(['leases/renew', 'leases/renew/*lease'])
  @HttpCode(200)
  renew(@Req() req: VaultRequest, @Body() body: unknown) {
    const b = parseInput(optionalLeaseRenewBody, body);
    return this.vault.renew(req.identity!, requestId(req), leaseIdOf(req, '/sys/leases/renew/', b.lease_id), b.increment);
  }

  @Post(['leases/revoke', 'leases/revoke/*lease'])
  @HttpCode(204)
  async revoke(@Req() req: VaultRequest, @Body() body: unknown): Promise<void> {
    const fromBody = req.path.endsWith('/leases/revoke') ? parseInput(leaseIdBody, body).lease_id : undefined;
    await this.vault.revoke(req.identity!, leaseIdOf(req, '/sys/leases/revoke/', fromBody));
  }

  @Post('leases/lookup')
  @HttpCode(200)
  lookup(@Req() req: VaultRequest, @Body() body: unknown) {
    return this.vault.lookup(req.identity!, requestId(req), parseInput(leaseIdBody, body).lease_id);
  }

  @Post(['leases/revoke-prefix/*prefix', 'leases/revoke-force/*prefix', 'revoke-prefix/*prefix'])
  @HttpCode(204)
  @OperatorOnly()
  async revokePrefix(@Req() req: VaultRequest): Promise<void> {
    const [, rest] = /\/(?:revoke-prefix|revoke-force)\/(.*)$/.exec(req.path) ?? [];
    await this.vault.revokePrefix(req.identity!, pathAfter({ path: `/${rest ?? ''}` } as VaultRequest, '/'));
  }

  /** The CLI and ESO ask which engine serves a path; only the two mounts exist. */
  @Get('internal/ui/mounts/*path')
  @Public()
  mounts(@Req() req: VaultRequest) {
    const mount = pathAfter(req, '/internal/ui/mounts/').split('/')[0];
    const type = this.vault.mountKind(mount);
    if (!type) throw new DomainError('not_found', 'not_found', 'unsupported path');
    return { request_id: requestId(req), lease_id: '', renewable: false, lease_duration: 0, data: { path: `${mount}/`, type, options: null }, wrap_info: null, warnings: null, auth: null };
  }

  @Get('health')
  @Public()
  health(@Res({ passthrough: true }) res: Response) {
    return this.healthStatus(res);
  }

  @Head('health')
  @Public()
  async healthHead(@Res({ passthrough: true }) res: Response): Promise<void> {
    await this.healthStatus(res);
  }

  private async healthStatus(res: Response) {
    const [stateDb, queue] = await Promise.all([this.stateDb.get(), this.queue.get()]);
    res.status(stateDb && queue ? 200 : 503);
    return {
      initialized: true,
      sealed: false,
      standby: false,
      performance_standby: false,
      replication_performance_mode: 'disabled',
      replication_dr_mode: 'disabled',
      server_time_utc: Math.floor(Date.now() / 1000),
      version: VERSION,
      cluster_name: 'tessera',
    };
  }
}
