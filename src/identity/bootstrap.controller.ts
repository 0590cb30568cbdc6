import { Body, Controller, HttpCode, Post, Req } from '@nestjs/common';
import { ApiBearerAuth, ApiOperation, ApiTags } from '@nestjs/swagger';
import { z } from 'zod';
import { AuthedRequest, OperatorOnly, Public } from '../http/auth.guard';
import { durationInput, parseInput, subjectInput } from '../http/validation';
import { BootstrapService } from './bootstrap.service';

const createBody = z
  .object({
    subject: subjectInput,
    expires_in: durationInput.optional(),
    uses: z.number().int().min(1).max(100).optional(),
  })
  .strict();
const exchangeBody = z.object({ secret_id: z.string().min(1).max(256) }).strict();

@ApiTags('identity')
@Controller('v1/auth')
export class BootstrapController {
  constructor(private readonly bootstrap: BootstrapService) {}

  @Post('bootstrap-secrets')
  @HttpCode(201)
  @OperatorOnly()
  @ApiBearerAuth()
  @ApiOperation({ summary: 'Create a single-use bootstrap secret bound to a subject (shown once)' })
  create(@Req() req: AuthedRequest, @Body() body: unknown) {
    const b = parseInput(createBody, body);
    return this.bootstrap.createSecret(req.identity!, { subject: b.subject, expiresIn: b.expires_in, uses: b.uses });
  }

  @Post('bootstrap')
  @HttpCode(200)
  @Public()
  @ApiOperation({ summary: 'Exchange a bootstrap secret for a short-lived broker-signed token' })
  exchange(@Req() req: AuthedRequest, @Body() body: unknown) {
    return this.bootstrap.exchange(parseInput(exchangeBody, body).secret_id, req);
  }
}
