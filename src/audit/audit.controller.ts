import { Controller, Get, Query } from '@nestjs/common';
import { ApiBearerAuth, ApiOperation, ApiTags } from '@nestjs/swagger';
import { z } from 'zod';
import { OperatorOnly } from '../http/auth.guard';
import { parseInput } from '../http/validation';
import { AuditLog } from './audit.log';

const auditQuery = z
  .object({
    since: z.string().datetime({ offset: true }).optional(),
    limit: z.string().regex(/^\d{1,4}$/).transform(Number).refine((n) => n >= 1 && n <= 1000, 'must be 1-1000').default(100),
  })
  .strict();

@ApiTags('operators')
@ApiBearerAuth()
@OperatorOnly()
@Controller('v1')
export class AuditController {
  constructor(private readonly audit: AuditLog) {}

  @Get('audit')
  @ApiOperation({ summary: 'Audit events, oldest first' })
  async events(@Query() query: unknown) {
    const q = parseInput(auditQuery, query, 'query');
    return { items: await this.audit.list(q.since ? new Date(q.since) : undefined, q.limit) };
  }

  @Get('audit/verify')
  @ApiOperation({ summary: 'Check the audit chain' })
  verify() {
    return this.audit.verify();
  }
}
