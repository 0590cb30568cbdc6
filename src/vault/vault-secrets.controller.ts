import { Controller, Get, HttpCode, Param, Post, Req } from '@nestjs/common';
import { ApiExcludeController } from '@nestjs/swagger';
import { AuthedRequest } from '../http/auth.guard';
import { VaultTokenRequest } from './vault-token.extractor';
import { VaultLeasesService } from './vault-leases.service';

type VaultRequest = AuthedRequest & VaultTokenRequest & { id?: string };

/**
 * `{database_mount|aws_mount}/creds/{role}`, `{aws_mount}/sts/{role}` (Vault's path for STS roles, GET or
 * POST as hvac and the vault CLI send it) and `/static-creds/{name}` (DESIGN §11); other first segments are 404.
 */
@ApiExcludeController()
@Controller('v1')
export class VaultSecretsController {
  constructor(private readonly vault: VaultLeasesService) {}

  @Get(':mount/creds/:role')
  creds(@Req() req: VaultRequest, @Param('mount') mount: string, @Param('role') role: string) {
    return this.vault.issue(req.identity!, req.vaultTokenId, String(req.id ?? ''), mount, role);
  }

  @Get(':mount/sts/:role')
  sts(@Req() req: VaultRequest, @Param('mount') mount: string, @Param('role') role: string) {
    return this.vault.issue(req.identity!, req.vaultTokenId, String(req.id ?? ''), mount, role, { sts: true });
  }

  @Post(':mount/sts/:role')
  @HttpCode(200)
  stsPost(@Req() req: VaultRequest, @Param('mount') mount: string, @Param('role') role: string) {
    return this.vault.issue(req.identity!, req.vaultTokenId, String(req.id ?? ''), mount, role, { sts: true });
  }

  @Get(':mount/static-creds/:name')
  staticCreds(@Req() req: VaultRequest, @Param('mount') mount: string, @Param('name') name: string) {
    return this.vault.staticCreds(req.identity!, String(req.id ?? ''), mount, name);
  }
}
