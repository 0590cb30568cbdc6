/**
 * A role's `acl` string, read as Redis ACL rules: split on whitespace into tokens, each checked against a
 * strict grammar before anything reaches Redis. Each token later travels as its own argument of
 * ACL SETUSER, so no value can become another rule or another command. Rules that touch the password or
 * the user's state are the plugin's, and rules that grant administration need `allow_admin: true`.
 */

/** Commands Redis 7 files under @admin or @dangerous, as whole commands: granting them grants one. */
const ADMIN_COMMANDS = new Set([
  'acl', 'bgrewriteaof', 'bgsave', 'client', 'cluster', 'config', 'debug', 'failover', 'flushall', 'flushdb', 'info',
  'keys', 'lastsave', 'latency', 'migrate', 'module', 'monitor', 'pfdebug', 'pfselftest', 'psync', 'replconf',
  'replicaof', 'restore', 'restore-asking', 'role', 'save', 'shutdown', 'slaveof', 'slowlog', 'sort', 'sort_ro',
  'swapdb', 'sync',
]);

/** Subcommands of those that Redis does not count as administration (the others of `acl`/`client` are). */
const HARMLESS_SUBCOMMANDS = new Set([
  'acl|cat', 'acl|genpass', 'acl|whoami', 'acl|help',
  'client|caching', 'client|getname', 'client|getredir', 'client|help', 'client|id', 'client|info', 'client|no-touch',
  'client|reply', 'client|setinfo', 'client|setname', 'client|tracking', 'client|trackinginfo',
  'cluster|countkeysinslot', 'cluster|getkeysinslot', 'cluster|help', 'cluster|info', 'cluster|keyslot', 'cluster|links',
  'cluster|myid', 'cluster|myshardid', 'cluster|nodes', 'cluster|shards', 'cluster|slots',
  'config|help', 'latency|help', 'module|help', 'slowlog|help',
]);

/**
 * Commands whose subcommands change what the whole server runs: FUNCTION LOAD/DELETE/FLUSH/RESTORE
 * replace the functions every user (the admin too) calls with FCALL under their own rights, and
 * FUNCTION KILL, SCRIPT KILL and SCRIPT FLUSH act on other users' scripts. Redis files them under
 * @write, @slow and @scripting, not @admin, so a broad category would bring them in.
 */
const SERVER_WIDE_COMMANDS = new Set(['function', 'script']);
const SERVER_WIDE_HARMLESS = new Set([
  'function|list', 'function|stats', 'function|dump', 'function|help',
  'script|load', 'script|exists', 'script|debug', 'script|help',
]);

/** Categories that hold administration; `+@all` and `allcommands` hold everything. */
const ADMIN_CATEGORIES = new Set(['admin', 'dangerous', 'all']);

/** Rules the plugin sets itself: a role must not. */
const PASSWORD_RULES = new Set(['nopass', 'resetpass']);
const STATE_RULES = new Set(['on', 'off', 'reset']);

const COMMAND = /^[+-]([a-z][a-z0-9_.-]{0,63})(?:\|([a-z0-9_.:-]{1,64}))?$/;
const CATEGORY = /^[+-]@([a-z]{1,32})$/;
/** A key or channel glob: printable ASCII, no spaces (tokens are split on whitespace before this). */
const PATTERN = /^[\x21-\x7e]{1,256}$/;
const KEY_RULE = /^(~|%[RWrw]{1,2}~)(.*)$/;
const KEYWORDS = new Set(['allkeys', 'resetkeys', 'allchannels', 'resetchannels', 'nocommands', 'allcommands']);

export const MAX_ACL_LENGTH = 4096;

/** The tokens of an acl string, or the reason it is refused (naming the token). */
export function parseAcl(acl: string, opts: { allowAdmin: boolean }): { rules: string[] } | { problem: string } {
  if (acl.length > MAX_ACL_LENGTH) return { problem: `must be at most ${MAX_ACL_LENGTH} characters` };
  const rules = acl.split(/\s+/).filter((t) => t.length > 0);
  for (const token of rules) {
    const problem = ruleProblem(token, opts);
    if (problem) return { problem: `rule "${shown(token)}" ${problem}` };
  }
  return { rules };
}

function ruleProblem(token: string, { allowAdmin }: { allowAdmin: boolean }): string | undefined {
  const lower = token.toLowerCase();
  const first = token[0];
  if (first === '>' || first === '<' || first === '#' || first === '!' || PASSWORD_RULES.has(lower)) {
    return 'sets or removes a password: the plugin sets each user\'s password itself';
  }
  if (STATE_RULES.has(lower)) return 'changes whether the user is enabled: the plugin controls that';
  if (first === '(' || lower === 'clearselectors') return 'is a selector: selectors are not supported, write the rules directly';
  if (KEYWORDS.has(lower)) {
    if (lower === 'allcommands' && !allowAdmin) return 'grants every command, administration included: set allow_admin: true to allow it';
    return undefined;
  }
  const key = KEY_RULE.exec(token);
  if (key) return PATTERN.test(key[2]) ? undefined : 'must be a key pattern of printable characters';
  if (first === '&') return PATTERN.test(token.slice(1)) ? undefined : 'must be a channel pattern of printable characters';
  const category = CATEGORY.exec(lower);
  if (category) {
    if (first === '+' && ADMIN_CATEGORIES.has(category[1]) && !allowAdmin) return 'grants administration commands: set allow_admin: true to allow it';
    return undefined;
  }
  const command = COMMAND.exec(lower);
  if (command) {
    if (first === '+' && !allowAdmin && isAdminCommand(command[1], command[2])) return 'grants an administration command: set allow_admin: true to allow it';
    if (first === '+' && !allowAdmin && isServerWideCommand(command[1], command[2])) {
      return 'grants a command that changes the functions or scripts of the whole server: set allow_admin: true to allow it';
    }
    return undefined;
  }
  return 'is not an ACL rule the plugin accepts (~keys, %R~keys, %W~keys, &channels, +command, -command, +command|sub, +@category, -@category, allkeys, resetkeys, allchannels, resetchannels, nocommands)';
}

function isAdminCommand(command: string, subcommand: string | undefined): boolean {
  if (!ADMIN_COMMANDS.has(command)) return false;
  return subcommand === undefined || !HARMLESS_SUBCOMMANDS.has(`${command}|${subcommand}`);
}

function isServerWideCommand(command: string, subcommand: string | undefined): boolean {
  if (!SERVER_WIDE_COMMANDS.has(command)) return false;
  return subcommand === undefined || !SERVER_WIDE_HARMLESS.has(`${command}|${subcommand}`);
}

/** The token as an error message may show it: printable, and short. */
function shown(token: string): string {
  const printable = token.replace(/[^\x20-\x7e]/g, '?');
  return printable.length > 40 ? `${printable.slice(0, 40)}…` : printable;
}

/**
 * What follows the role's rules when it may not administer: Redis's own classification strips whatever
 * administration a broad category (`+@write` holds FLUSHALL, `+@read` holds KEYS) would bring in, and
 * the subcommands that change the server's functions and scripts, which Redis files elsewhere
 * (`+@write` holds FUNCTION LOAD, `+@slow` and `+@scripting` SCRIPT FLUSH).
 */
export const NO_ADMIN_RULES = [
  '-@admin', '-@dangerous',
  '-function|load', '-function|delete', '-function|flush', '-function|restore', '-function|kill',
  '-script|kill', '-script|flush',
] as const;
