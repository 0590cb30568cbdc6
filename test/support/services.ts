/** Connection details of the real services the tests use (overridable for other machines). */
export const PG_ADMIN_URL = process.env.TESSERA_TEST_PG_URL ?? 'postgres://postgres@127.0.0.1:5432';
export const REDIS_URL = process.env.TESSERA_TEST_REDIS_URL ?? 'redis://127.0.0.1:6379';
/** The database the postgres plugin issues credentials on during tests. */
export const TARGET_DB = 'tessera_target';
export const TARGET_URL = `${PG_ADMIN_URL}/${TARGET_DB}`;
export const MYSQL_ADMIN_URL = process.env.TESSERA_TEST_MYSQL_URL ?? 'mysql://root@127.0.0.1:3306/test';
