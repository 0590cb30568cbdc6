import { Controller, HttpCode, Param, Post, Req } from '@nestjs/common';
import { ApiBearerAuth, ApiOperation, ApiTags } from '@nestjs/swagger';
import { AuthedRequest, OperatorOnly } from '../http/auth.guard';
import { RoleSessionsService } from './role-sessions.service';

/** Operator actions on a configured role (the list itself is GET /v1/roles, in config/). */
@ApiTags('operators')
@ApiBearerAuth()
@OperatorOnly()
@Controller('v1')
export class RolesController {
  constructor(private readonly sessions: RoleSessionsService) {}

  @Post('roles/:role/revoke-sessions')
  @HttpCode(200)
  @ApiOperation({ summary: 'Emergency: every session the role issued so far stops working (assumed_role roles)' })
  revokeSessions(@Req() req: AuthedRequest, @Param('role') role: string) {
    return this.sessions.revokeSessions(req.identity!, role);
  }
}
