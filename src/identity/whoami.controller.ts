import { Controller, Get, Req } from '@nestjs/common';
import { ApiBearerAuth, ApiOperation, ApiTags } from '@nestjs/swagger';
import { AuthedRequest } from '../http/auth.guard';

@ApiTags('identity')
@ApiBearerAuth()
@Controller('v1')
export class WhoamiController {
  @Get('whoami')
  @ApiOperation({ summary: 'Who the broker thinks you are' })
  whoami(@Req() req: AuthedRequest) {
    const { subject, issuer, operator } = req.identity!;
    return { subject, issuer, operator };
  }
}
