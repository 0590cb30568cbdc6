import { Body, Controller, Get, HttpCode, Post, Req } from '@nestjs/common';
import { ApiExcludeController } from '@nestjs/swagger';
import { DomainError } from '../common/errors';
import { Identity } from '../identity/identity';
import { Public } from '../http/auth.guard';
import { parseInput } from '../http/validation';
import { envelope, secondsUntil } from './vault-envelope';
import { VaultTokenRow } from './vault-token.repository';
import { VaultTokenRequest } from './vault-token.extractor';
import { VaultTokenService } from './vault-token.service';
import { loginBody, tokenRenewBody } from './vault.dto';

type VaultRequest = VaultTokenRequest & { id?: string; identity?: Identity };

const requestId = (req: VaultRequest) => String(req.id ?? '');

/** Vault's auth routes (DESIGN §11): login with a token the native API accepts, and the client token's self-service. */
@ApiExcludeController()
@Controller('v1/auth')
export class VaultAuthController {
  constructor(private readonly tokens: VaultTokenService) {}

  @Post(['jwt/login', 'kubernetes/login'])
  @HttpCode(200)
  @Public()
  async login(@Req() req: VaultRequest, @Body() body: unknown) {
    const { jwt } = parseInput(loginBody, body);
    const { token, row } = await this.tokens.login(jwt, { ip: req.ip });
    return envelope(requestId(req), { auth: authOf(token, row, new Date()) });
  }

  @Get('token/lookup-self')
  lookupSelfGet(@Req() req: VaultRequest) {
    return this.lookupSelf(req);
  }

  @Post('token/lookup-self')
  @HttpCode(200)
  async lookupSelf(@Req() req: VaultRequest) {
    const row = await this.tokens.lookup(clientToken(req));
    const now = new Date();
    return envelope(requestId(req), {
      data: {
        id: presentedToken(req),
        accessor: row.id,
        policies: ['default'],
        ttl: secondsUntil(row.expires_at, now),
        creation_ttl: secondsUntil(row.expires_at, row.renewed_at ?? row.created_at),
        expire_time: row.expires_at.toISOString(),
        issue_time: row.created_at.toISOString(),
        renewable: row.expires_at < row.max_expires_at,
        type: 'service',
        orphan: true,
        entity_id: '',
        path: `auth/jwt/login`,
        meta: { subject: row.subject, issuer: row.issuer },
        display_name: `jwt-${row.subject}`,
      },
    });
  }

  @Post('token/renew-self')
  @HttpCode(200)
  async renewSelf(@Req() req: VaultRequest, @Body() body: unknown) {
    const { increment } = parseInput(tokenRenewBody, body);
    const { row, capped } = await this.tokens.renew(clientToken(req), increment);
    return envelope(requestId(req), {
      auth: authOf(presentedToken(req), row, new Date()),
      warnings: capped ? ['TTL of the token is capped at its max TTL (vault.token_max_ttl)'] : null,
    });
  }

  @Post('token/revoke-self')
  @HttpCode(204)
  async revokeSelf(@Req() req: VaultRequest): Promise<void> {
    await this.tokens.revoke({ tokenId: clientToken(req), identity: req.identity! });
  }
}

/** The id of the client token the request was authenticated with; a JWT used directly has no token to look up. */
function clientToken(req: VaultRequest): string {
  if (!req.vaultTokenId) throw new DomainError('malformed', 'not_a_client_token', 'the request carries no client token from auth/jwt/login');
  return req.vaultTokenId;
}

/** The client token as the caller sent it: Vault echoes it back in lookup-self and renew-self. */
function presentedToken(req: VaultRequest): string {
  const header = req.headers['x-vault-token'];
  return typeof header === 'string' && header !== '' ? header : (/^Bearer (\S+)$/i.exec(req.headers.authorization ?? '')?.[1] ?? '');
}

function authOf(token: string, row: VaultTokenRow, now: Date) {
  return {
    client_token: token,
    accessor: row.id,
    policies: ['default'],
    token_policies: ['default'],
    metadata: { subject: row.subject, issuer: row.issuer },
    lease_duration: secondsUntil(row.expires_at, now),
    renewable: true,
    entity_id: '',
    token_type: 'service',
    orphan: true,
  };
}
