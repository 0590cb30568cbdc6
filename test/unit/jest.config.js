/**
 * The unit tier alone: fakes only, no PostgreSQL, Redis or MariaDB (so no global setup).
 *   npx jest -c test/unit/jest.config.js
 */
module.exports = {
  rootDir: '../..',
  testEnvironment: 'node',
  roots: ['<rootDir>/test/unit'],
  testMatch: ['**/*.spec.ts'],
  transform: { '^.+\\.ts$': 'ts-jest' },
};
