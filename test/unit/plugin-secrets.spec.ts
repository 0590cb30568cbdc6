import { scrub, secretsOf } from '../../src/plugin-host/plugin-host';

describe('secrets scrubbed out of plugin errors', () => {
  it('finds the passwords of a request about many accounts (checkStoredPasswords) as well as a single one', () => {
    const req = { checks: [{ account: 'a', password: 'first-secret' }, { account: 'b', password: 'second-secret' }], note: ['plain'] };
    expect(secretsOf(req)).toEqual(['first-secret', 'second-secret']);
    expect(secretsOf({ account: 'a', password: 'only-one' })).toEqual(['only-one']);
    const err = scrub(new Error('refused first-secret and second-secret for a'), secretsOf(req));
    expect(err.message).toBe('refused [redacted] and [redacted] for a');
  });
});
