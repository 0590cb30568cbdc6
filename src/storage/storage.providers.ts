import { Provider } from '@nestjs/common';
import { CONFIG } from '../config/config.module';
import { TesseraConfig } from '../config/config.loader';
import { SecretBox } from '../crypto/secret-box';
import { Database } from './database';

export const storageProviders: Provider[] = [
  { provide: Database, useFactory: (c: TesseraConfig) => new Database(c.storage.postgres_url, c.storage.pool_size), inject: [CONFIG] },
  { provide: SecretBox, useFactory: (c: TesseraConfig) => new SecretBox(c.encryption.key, c.encryption.previous_keys), inject: [CONFIG] },
];
