import { DynamicModule, Global, Module } from '@nestjs/common';
import { TesseraConfig } from './config.loader';

export const CONFIG = Symbol('TesseraConfig');

/** Provides the parsed config everywhere; it is parsed once, before the application is created. */
@Global()
@Module({})
export class ConfigModule {
  static forRoot(config: TesseraConfig): DynamicModule {
    return { module: ConfigModule, providers: [{ provide: CONFIG, useValue: config }], exports: [CONFIG] };
  }
}
