import { Controller, Get, Inject, Query, Req, Res } from '@nestjs/common';
import { ApiBearerAuth, ApiExcludeEndpoint, ApiOperation, ApiTags } from '@nestjs/swagger';
import type { Response } from 'express';
import { z } from 'zod';
import { AuditLog } from '../audit/audit.log';
import { CONFIG } from '../config/config.module';
import { TesseraConfig } from '../config/config.loader';
import { Metrics } from '../metrics/metrics';
import { AuthedRequest, OperatorOnly, Public } from './auth.guard';
import { parseInput } from './validation';

const auditQuery = z
  .object({
    since: z.string().datetime({ offset: true }).optional(),
    limit: z.string().regex(/^\d{1,4}$/).transform(Number).refine((n) => n >= 1 && n <= 1000, 'must be 1-1000').default(100),
  })
  .strict();

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

@ApiTags('operators')
@ApiBearerAuth()
@OperatorOnly()
@Controller('v1')
export class OperatorController {
  constructor(
    @Inject(CONFIG) private readonly config: TesseraConfig,
    private readonly audit: AuditLog,
  ) {}

  @Get('audit')
  @ApiOperation({ summary: 'Audit events, oldest first' })
  async events(@Query() query: unknown) {
    const q = parseInput(auditQuery, query, 'query');
    return { items: await this.audit.list(q.since ? new Date(q.since) : undefined, q.limit) };
  }

  @Get('audit/verify')
  @ApiOperation({ summary: 'Check the audit hash chain' })
  verify() {
    return this.audit.verify();
  }

  @Get('roles')
  roles() {
    return {
      items: [...this.config.roles.values()].map((r) => ({ name: r.name, connection: r.connection, plugin: r.plugin, default_ttl: r.defaultTtl, max_ttl: r.maxTtl })),
    };
  }

  @Get('connections')
  connections() {
    return { items: [...this.config.connections.values()].map((c) => ({ name: c.name, plugin: c.plugin })) };
  }
}

@Controller()
export class MetricsController {
  constructor(private readonly metrics: Metrics) {}

  @Public()
  @Get('metrics')
  @ApiExcludeEndpoint()
  async scrape(@Res() res: Response) {
    res.type(this.metrics.registry.contentType).send(await this.metrics.registry.metrics());
  }
}
