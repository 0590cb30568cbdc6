/** Every plugin the broker knows, keyed by the `plugin` value of a connection in the config file. */
import type { PluginFactory } from './contract';
import { awsIamPlugin } from './aws-iam/aws-iam.plugin';
import { mysqlPlugin } from './mysql/mysql.plugin';
import { postgresPlugin } from './postgres/postgres.plugin';
import { redisPlugin } from './redis/redis.plugin';

export const PLUGINS: Readonly<Record<string, PluginFactory<any, any>>> = {
  [postgresPlugin.name]: postgresPlugin,
  [mysqlPlugin.name]: mysqlPlugin,
  [awsIamPlugin.name]: awsIamPlugin,
  [redisPlugin.name]: redisPlugin,
};
