import { Provider } from '@nestjs/common';
import { ConsoleAuthService } from './console-auth.service';
import { ConsoleSessionRepository } from './console-session.repository';
import { ConsoleRoutes } from './console.router';

/** The operator console's providers: registered only when `ui` is configured and the process serves HTTP. */
export const CONSOLE_PROVIDERS: Provider[] = [ConsoleSessionRepository, ConsoleAuthService, ConsoleRoutes];

export { ConsoleRoutes };
