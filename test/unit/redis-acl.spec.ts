import fc from 'fast-check';
import Redis from 'ioredis';
import { NO_ADMIN_RULES, parseAcl } from '../../plugins/redis/redis-acl';
import { RedisPlugin } from '../../plugins/redis/redis.plugin';
import { redisConnectionSchema, redisRoleSchema } from '../../plugins/redis/redis.config';

const ADMIN_GRANTS = /^(\+@(admin|dangerous|all)|allcommands|\+(acl|config|debug|module|shutdown|flushall|client|monitor)(\|.*)?|\+function(\|(?!(list|stats|dump|help)$).*)?|\+script(\|(kill|flush))?)$/i;
const PLUGIN_OWNED = /^([><#!(]|(on|off|reset|nopass|resetpass)$)/i;

describe('redis role acl', () => {
  it('keeps each rule as one token and accepts the usual shapes', () => {
    expect(parseAcl(' ~cache:*  %R~ro:* %W~wo:* &news:*\t+get +mget -del +@read -@write +client|setname allkeys resetchannels ', { allowAdmin: false })).toEqual({
      rules: ['~cache:*', '%R~ro:*', '%W~wo:*', '&news:*', '+get', '+mget', '-del', '+@read', '-@write', '+client|setname', 'allkeys', 'resetchannels'],
    });
    expect(parseAcl('', { allowAdmin: false })).toEqual({ rules: [] });
    expect(redisRoleSchema.parse({})).toEqual({ acl: '', allow_admin: false });
  });

  it('removing administration is always allowed; granting it needs allow_admin', () => {
    expect(parseAcl('-@admin -acl -config|set', { allowAdmin: false })).toEqual({ rules: ['-@admin', '-acl', '-config|set'] });
    for (const acl of ['+@admin', '+@DANGEROUS', '+@all', 'allcommands', '+acl', '+ACL|setuser', '+config|get', '+debug', '+module', '+shutdown', '+flushall', '+client', '+client|kill']) {
      expect(parseAcl(acl, { allowAdmin: false })).toEqual({ problem: expect.stringContaining('allow_admin: true') });
      expect(parseAcl(acl, { allowAdmin: true })).toEqual({ rules: [acl] });
    }
  });

  it('changing the server\'s functions or scripts needs allow_admin; reading them and running scripts does not', () => {
    for (const acl of ['+function', '+FUNCTION|load', '+function|delete', '+function|flush', '+function|restore', '+function|kill', '+script', '+script|kill', '+script|flush']) {
      expect(parseAcl(acl, { allowAdmin: false })).toEqual({ problem: expect.stringContaining('allow_admin: true') });
      expect(parseAcl(acl, { allowAdmin: true })).toEqual({ rules: [acl] });
    }
    const reading = '+function|list +function|stats +function|dump +function|help +script|load +script|exists +script|help +fcall +fcall_ro +eval +evalsha -function -script|flush';
    expect(parseAcl(reading, { allowAdmin: false })).toEqual({ rules: reading.split(' ') });
    // Without allow_admin, every user's rules end by taking those subcommands away again (Redis 7.0 syntax).
    expect(NO_ADMIN_RULES).toEqual(['-@admin', '-@dangerous', '-function|load', '-function|delete', '-function|flush', '-function|restore', '-function|kill', '-script|kill', '-script|flush']);
  });

  it('removing the commands that list key names is accepted (the README advises it when names are sensitive)', () => {
    expect(parseAcl('~cache:* +@read -scan -randomkey -dbsize -memory|stats -pubsub|channels', { allowAdmin: false })).toEqual({
      rules: ['~cache:*', '+@read', '-scan', '-randomkey', '-dbsize', '-memory|stats', '-pubsub|channels'],
    });
  });

  it('the admin connection never sends a command twice nor after its caller saw it fail', () => {
    const plugin = new RedisPlugin('cache', redisConnectionSchema.parse({ url: 'redis://default@127.0.0.1:6379' }));
    const { options, status } = (plugin as unknown as { admin: Redis }).admin;
    expect(options).toMatchObject({ autoResendUnfulfilledCommands: false, enableOfflineQueue: false, maxRetriesPerRequest: 0, lazyConnect: true });
    expect(status).toBe('wait'); // nothing connected yet
  });

  it('property: whatever the input, an accepted acl holds no password, state or selector rule, and no admin grant without allow_admin', () => {
    const piece = fc.oneof(
      fc.constantFrom('~', '%R~', '&', '+', '-', '+@', '-@', '>', '<', '#', '!', '(', ')', '|', 'on', 'off', 'reset', 'nopass', 'resetpass', 'acl', 'config', 'admin', 'all', 'get', 'function', 'script', 'load', 'flush', 'kill', 'list', ' ', '\n', '\u0000', '"', ';'),
      fc.string({ maxLength: 6 }),
    );
    fc.assert(
      fc.property(fc.array(piece, { maxLength: 12 }), fc.boolean(), (pieces, allowAdmin) => {
        const parsed = parseAcl(pieces.join(''), { allowAdmin });
        if ('problem' in parsed) return;
        for (const rule of parsed.rules) {
          expect(rule).not.toMatch(PLUGIN_OWNED);
          expect(rule).toMatch(/^[\x21-\x7e]+$/);
          if (!allowAdmin) expect(rule).not.toMatch(ADMIN_GRANTS);
        }
      }),
      { numRuns: 2000 },
    );
  });

  it('the connection needs a redis URL and a namespace that leaves default and the admin outside', () => {
    expect(redisConnectionSchema.parse({ url: 'redis://default@127.0.0.1:6379' })).toMatchObject({ user_prefix: 'tsr_', protected_users: [] });
    expect(redisConnectionSchema.safeParse({ url: 'redis://default@127.0.0.1:6379', user_prefix: 'de' }).success).toBe(false);
    expect(redisConnectionSchema.safeParse({ url: 'rediss://tsr_admin:pw@cache:6380' }).success).toBe(false);
    expect(redisConnectionSchema.safeParse({ url: 'rediss://tessera_admin:pw@cache:6380', protected_users: ['queue'] }).success).toBe(true);
    expect(redisConnectionSchema.safeParse({ url: 'redis://x', extra: 1 }).success).toBe(false);
  });
});
