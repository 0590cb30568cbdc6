import { Body, Controller, Get, HttpCode, Param, Post, Req } from '@nestjs/common';
import { ApiBearerAuth, ApiOperation, ApiTags } from '@nestjs/swagger';
import { z } from 'zod';
import { NAME } from '../config/config.schema';
import { AuthedRequest, OperatorOnly } from '../http/auth.guard';
import { parseInput } from '../http/validation';
import { StaticService } from './static.service';

const reason = z.string().max(500).regex(/^[^\u0000-\u001f\u007f]*$/, 'must not contain control characters');
/** `emergency: true`: the current credential is exposed; every earlier credential is destroyed (DESIGN §4). */
const rotateBody = z.object({ reason: reason.optional(), emergency: z.boolean().optional() }).strict();
const connectionBody = z.object({ connection: z.string().regex(NAME, 'not a valid name'), reason: reason.optional() }).strict();

@ApiTags('static secrets')
@ApiBearerAuth()
@Controller('v1')
export class StaticController {
  constructor(private readonly statics: StaticService) {}

  @Get('static')
  @OperatorOnly()
  @ApiOperation({ summary: 'Configured static secrets and their state (no secrets)' })
  list() {
    return this.statics.list();
  }

  @Get('static/:name/creds')
  @ApiOperation({ summary: 'The current credentials of a static secret' })
  creds(@Req() req: AuthedRequest, @Param('name') name: string) {
    return this.statics.creds(req.identity!, name);
  }

  @Get('static/:name')
  @ApiOperation({ summary: 'Metadata and rotation history (no secrets)' })
  describe(@Req() req: AuthedRequest, @Param('name') name: string) {
    return this.statics.describe(req.identity!, name);
  }

  @Post('static/:name/rotate')
  @HttpCode(202)
  @OperatorOnly()
  @ApiOperation({ summary: 'Rotate a static secret now; emergency: true when its current credential is exposed' })
  rotate(@Req() req: AuthedRequest, @Param('name') name: string, @Body() body: unknown) {
    const b = parseInput(rotateBody, body);
    return this.statics.rotate(req.identity!, name, b.reason, b.emergency === true);
  }

  @Post('rotate')
  @HttpCode(202)
  @OperatorOnly()
  @ApiOperation({ summary: 'Emergency: rotate every static secret on a connection (high-priority queue)' })
  rotateConnection(@Req() req: AuthedRequest, @Body() body: unknown) {
    const b = parseInput(connectionBody, body);
    return this.statics.rotateConnection(req.identity!.subject, b.connection, 'emergency', b.reason);
  }

  @Get('rotations/:id')
  @OperatorOnly()
  @ApiOperation({ summary: 'Status and steps of a rotation' })
  rotation(@Param('id') id: string) {
    return this.statics.rotationStatus(id);
  }
}
