import { Body, Controller, HttpCode, Post, Req } from '@nestjs/common';
import { ApiBearerAuth, ApiOperation, ApiTags } from '@nestjs/swagger';
import { AuthedRequest, Public } from '../http/auth.guard';
import { parseInput } from '../http/validation';
import { EventsService, eventBody } from './events.service';

/** POST /v1/events: signed webhooks (or operators) reporting a leaked secret or a finished workload. */
@ApiTags('events')
@ApiBearerAuth()
@Controller('v1')
export class EventsController {
  constructor(private readonly events: EventsService) {}

  @Post('events')
  @HttpCode(202)
  @Public()
  @ApiOperation({ summary: 'Signed webhook (X-Tessera-Signature: t=<unix seconds>,v1=<hex HMAC-SHA256 of "<t>." + body>; 300 s window; each signature once) or operator: secret.exposed, workload.completed' })
  async event(@Req() req: AuthedRequest, @Body() body: unknown) {
    const actor = await this.events.authenticate(req);
    return this.events.handle(actor, parseInput(eventBody, body));
  }
}
