import { Controller, Get, Inject } from '@nestjs/common';
import { ApiBearerAuth, ApiOperation, ApiTags } from '@nestjs/swagger';
import { OperatorOnly } from '../http/auth.guard';
import { CONFIG } from './config.module';
import { TesseraConfig } from './config.loader';

/** The configured roles and connections, without any secret. */
@ApiTags('operators')
@ApiBearerAuth()
@OperatorOnly()
@Controller('v1')
export class ConfigController {
  constructor(@Inject(CONFIG) private readonly config: TesseraConfig) {}

  @Get('roles')
  @ApiOperation({ summary: 'Configured roles' })
  roles() {
    return {
      items: [...this.config.roles.values()].map((r) => ({ name: r.name, connection: r.connection, plugin: r.plugin, default_ttl: r.defaultTtl, max_ttl: r.maxTtl })),
    };
  }

  @Get('connections')
  @ApiOperation({ summary: 'Configured connections' })
  connections() {
    return { items: [...this.config.connections.values()].map((c) => ({ name: c.name, plugin: c.plugin })) };
  }
}
