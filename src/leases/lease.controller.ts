import { Body, Controller, Get, HttpCode, Param, Post, Query, Req, Res } from '@nestjs/common';
import { ApiBearerAuth, ApiBody, ApiOperation, ApiTags } from '@nestjs/swagger';
import type { Response } from 'express';
import { AuthedRequest, OperatorOnly } from '../http/auth.guard';
import { parseInput } from '../http/validation';
import { bulkRevokeBody, issueBody, listQuery, openApi, renewBody, revokeOwnedBody } from './lease.dto';
import { LeaseService } from './lease.service';

@ApiTags('leases')
@ApiBearerAuth()
@Controller('v1')
export class LeaseController {
  constructor(private readonly leases: LeaseService) {}

  @Post('creds/:role')
  @HttpCode(201)
  @ApiOperation({ summary: 'Lease a credential for a role' })
  @ApiBody({ schema: openApi.issueBody as object, required: false })
  issue(@Req() req: AuthedRequest, @Param('role') role: string, @Body() body: unknown) {
    const input = parseInput(issueBody, body);
    return this.leases.issue(req.identity!, role, { ttl: input.ttl, runId: input.run_id });
  }

  @Get('leases')
  @ApiOperation({ summary: 'List leases (your own; operators see all)' })
  list(@Req() req: AuthedRequest, @Query() query: unknown) {
    const q = parseInput(listQuery, query, 'query');
    return this.leases.list(req.identity!, { role: q.role, state: q.state, runId: q.run_id, owner: q.owner, limit: q.limit, cursor: q.cursor });
  }

  @Post('leases/revoke-owned')
  @HttpCode(200)
  @ApiOperation({ summary: 'Revoke your own leases (all, or one run\'s)' })
  @ApiBody({ schema: openApi.revokeOwnedBody as object, required: false })
  revokeOwned(@Req() req: AuthedRequest, @Body() body: unknown) {
    return this.leases.revokeOwned(req.identity!, parseInput(revokeOwnedBody, body).run_id);
  }

  @Post('leases/revoke')
  @HttpCode(202)
  @OperatorOnly()
  @ApiOperation({ summary: 'Bulk revoke by role, connection, owner or run id (operator)' })
  @ApiBody({ schema: openApi.bulkRevokeBody as object })
  bulkRevoke(@Req() req: AuthedRequest, @Body() body: unknown) {
    const b = parseInput(bulkRevokeBody, body);
    return this.leases.bulkRevoke(req.identity!, { role: b.role, connection: b.connection, owner: b.owner, ownerIssuer: b.owner_issuer, runId: b.run_id });
  }

  @Get('leases/:id')
  @ApiOperation({ summary: 'Show a lease' })
  get(@Req() req: AuthedRequest, @Param('id') id: string) {
    return this.leases.get(req.identity!, id);
  }

  @Post('leases/:id/renew')
  @HttpCode(200)
  @ApiOperation({ summary: 'Extend a lease (capped at its max_expires_at)' })
  @ApiBody({ schema: openApi.renewBody as object, required: false })
  renew(@Req() req: AuthedRequest, @Param('id') id: string, @Body() body: unknown) {
    return this.leases.renew(req.identity!, id, parseInput(renewBody, body).increment);
  }

  @Post('leases/:id/revoke')
  @ApiOperation({ summary: 'Revoke a lease: 200 when done, 202 while the target is unreachable' })
  async revoke(@Req() req: AuthedRequest, @Param('id') id: string, @Res({ passthrough: true }) res: Response) {
    const result = await this.leases.revoke(req.identity!, id);
    res.status(result.state === 'revoking' ? 202 : 200);
    return result;
  }
}
