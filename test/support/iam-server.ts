import { randomUUID } from 'node:crypto';
import { IncomingMessage, Server, ServerResponse, createServer } from 'node:http';
import { AddressInfo } from 'node:net';
import { IAM_NS, STS_NS, XmlValue, errorXml, successXml } from './iam-xml';
import { IamError, Params, checkName, checkPath, randomString, validation } from './iam-query';
import { StsModel, StsSession } from './iam-sts';

export { IamError } from './iam-query';

/**
 * An in-process fake of AWS IAM and STS speaking the AWS Query protocol, so the real
 * `@aws-sdk/client-iam` / `@aws-sdk/client-sts` can be pointed at it with `endpoint`. IAM roles, their
 * inline policies and STS sessions (AssumeRole, GetFederationToken) live in ./iam-sts.ts, which says
 * what it models of them.
 *
 * What it models: users, access keys (2 per user), inline policies (2048 non-whitespace characters per
 * user), attached managed policies (10 per user), groups (10 per user), login profiles, SSH public
 * keys, service-specific credentials, signing certificates and MFA devices, DeleteUser's DeleteConflict
 * while any of them remains,
 * case-insensitive user and group names, and Marker/MaxItems pagination.
 *
 * What it does not: request signatures are NOT verified (only the access key id is read out of the
 * `Authorization` header, and a session's token out of `X-Amz-Security-Token`), IAM calls with
 * long-term keys are not authorised (any caller may do anything; calls signed with STS session
 * credentials are checked against expiry and the role's explicit denies, see ./iam-sts.ts), managed
 * policies need not exist to be attached, and there is no eventual consistency (a new key works with
 * STS at once, whereas real AWS takes a few seconds).
 */

const ACCOUNT = '123456789012';
const IAM_VERSION = '2010-05-08';
const STS_VERSION = '2011-06-15';
const POLICY_ARN_RE = /^arn:aws:iam::(aws|\d{12}):policy\/.+/;
const UPPER_ALNUM = 'ABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789';
const SECRET_CHARS = 'ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/';
const MAX_KEYS_PER_USER = 2;
const MAX_ATTACHED_PER_USER = 10;
const MAX_GROUPS_PER_USER = 10;
const MAX_INLINE_POLICY_CHARS = 2048;

const STATUS: Record<string, number> = {
  NoSuchEntity: 404,
  EntityAlreadyExists: 409,
  DeleteConflict: 409,
  LimitExceeded: 409,
  ConcurrentModification: 409,
  MalformedPolicyDocument: 400,
  InvalidInput: 400,
  ValidationError: 400,
  InvalidAction: 400,
  Throttling: 400,
  AccessDenied: 403,
  InvalidClientTokenId: 403,
  ExpiredToken: 400,
  ServiceFailure: 500,
  InternalFailure: 500,
  ServiceUnavailable: 503,
};

/** HTTP status IAM uses for an error code; codes it does not know are treated as 400s. */
export function statusForCode(code: string): number {
  return STATUS[code] ?? 400;
}

interface AccessKey { id: string; secret: string; status: 'Active' | 'Inactive'; created: Date }
interface Extra { id: string; created: Date; service?: string }
interface User {
  name: string; path: string; id: string; arn: string; created: Date; boundary?: string;
  tags: Map<string, string>; keys: AccessKey[]; inline: Map<string, string>; attached: string[]; groups: string[];
  /** Other credentials a user can have, each of which blocks DeleteUser. */
  loginProfile?: Date; sshKeys: Extra[]; serviceCredentials: Extra[]; certificates: Extra[]; mfaDevices: Extra[];
}
interface Group { name: string; path: string; id: string; arn: string; created: Date }

function checkPolicyArn(arn: string): string {
  if (!POLICY_ARN_RE.test(arn)) throw new IamError('InvalidInput', `ARN ${arn} is not valid.`);
  return arn;
}

/** One page of `items` (already in a stable order by `key`), after the opaque `Marker`, of at most `MaxItems`. */
function paginate<T>(items: T[], key: (t: T) => string, p: Params): { page: T[]; IsTruncated: boolean; Marker?: string } {
  const maxRaw = p.opt('MaxItems') ?? '100';
  const max = Number(maxRaw);
  if (!Number.isInteger(max) || max < 1 || max > 1000) {
    throw validation(`Value '${maxRaw}' at 'maxItems' failed to satisfy constraint: Member must have value between 1 and 1000`);
  }
  let rest = items;
  const marker = p.opt('Marker');
  if (marker !== undefined) {
    let after: unknown;
    try {
      after = JSON.parse(Buffer.from(marker, 'base64url').toString('utf8')).after;
    } catch {
      after = undefined;
    }
    if (typeof after !== 'string') throw validation(`Value '${marker}' at 'marker' failed to satisfy constraint: invalid marker`);
    rest = items.filter((t) => key(t) > after);
  }
  const page = rest.slice(0, max);
  const truncated = rest.length > max;
  const next = truncated ? Buffer.from(JSON.stringify({ after: key(page[page.length - 1]) })).toString('base64url') : undefined;
  return { page, IsTruncated: truncated, Marker: next };
}

const byKey = <T>(items: T[], key: (t: T) => string): T[] => [...items].sort((a, b) => (key(a) < key(b) ? -1 : key(a) > key(b) ? 1 : 0));

export class IamTestServer {
  readonly calls: string[] = [];
  private readonly adminKeyIds: string[];
  private server?: Server;
  private users = new Map<string, User>(); // by lower-cased name: IAM names are case-insensitive
  private groups = new Map<string, Group>();
  private nextFailure = new Map<string, { code: string; message?: string }>();
  private alwaysFailure = new Map<string, string>();
  private matchedFailures: { action: string; match: Record<string, string>; code: string }[] = [];
  private readonly sts = new StsModel();

  constructor(opts: { adminKeyIds?: string[] } = {}) {
    this.adminKeyIds = opts.adminKeyIds ?? ['AKIDTESSERAADMIN0000'];
  }

  async start(): Promise<string> {
    const server = createServer((req, res) => {
      this.handle(req, res).catch(() => res.destroy());
    });
    this.server = server;
    await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
    return `http://127.0.0.1:${(server.address() as AddressInfo).port}`;
  }

  async stop(): Promise<void> {
    const server = this.server;
    this.server = undefined;
    if (!server) return;
    server.closeAllConnections(); // the SDK keeps connections alive
    await new Promise<void>((resolve) => server.close(() => resolve()));
  }

  // ---- inspection and control for tests ----

  hasUser(name: string): boolean {
    return this.users.has(name.toLowerCase());
  }
  accessKeys(user: string): { id: string; status: string }[] {
    return this.users.get(user.toLowerCase())?.keys.map((k) => ({ id: k.id, status: k.status })) ?? [];
  }
  userPolicies(user: string): string[] {
    return [...(this.users.get(user.toLowerCase())?.inline.keys() ?? [])];
  }
  attachedPolicies(user: string): string[] {
    return [...(this.users.get(user.toLowerCase())?.attached ?? [])];
  }
  groupsOf(user: string): string[] {
    return (this.users.get(user.toLowerCase())?.groups ?? []).map((g) => this.groups.get(g)!.name);
  }
  policyDocument(user: string, name: string): unknown {
    const doc = this.users.get(user.toLowerCase())?.inline.get(name);
    return doc === undefined ? undefined : JSON.parse(doc);
  }
  createGroup(name: string): void {
    this.CreateGroup(new Params(new URLSearchParams({ GroupName: name })));
  }
  /** Make the next call of `action` fail with this IAM error code (status chosen from the code). */
  failNext(action: string, code: string, message?: string): void {
    this.nextFailure.set(action, { code, message });
  }
  /** Make every call of `action` fail with `code` (e.g. 'ServiceUnavailable' → 503) until called with null. */
  failAlways(action: string, code: string | null): void {
    if (code === null) this.alwaysFailure.delete(action);
    else this.alwaysFailure.set(action, code);
  }
  /**
   * Make every call of `action` whose parameters include all of `match` (e.g. `{ RoleName: 'deploy-eu' }`)
   * fail with `code`; `null` stops it. Other calls of the action go through.
   */
  failWhen(action: string, match: Record<string, string>, code: string | null): void {
    const same = (f: { action: string; match: Record<string, string> }) => f.action === action && JSON.stringify(f.match) === JSON.stringify(match);
    this.matchedFailures = this.matchedFailures.filter((f) => !same(f));
    if (code !== null) this.matchedFailures.push({ action, match, code });
  }
  /** An IAM role that AssumeRole can assume; `externalId` makes its trust policy require that external id. */
  createRole(name: string, opts: { maxSessionDuration?: number; externalId?: string; path?: string } = {}): string {
    const trust = {
      Version: '2012-10-17',
      Statement: [{ Effect: 'Allow', Principal: { AWS: 'arn:aws:iam::123456789012:root' }, Action: ['sts:AssumeRole', 'sts:SetSourceIdentity', 'sts:TagSession'],
        ...(opts.externalId !== undefined && { Condition: { StringEquals: { 'sts:ExternalId': opts.externalId } } }) }],
    };
    const params = new URLSearchParams({ RoleName: name, AssumeRolePolicyDocument: JSON.stringify(trust), Path: opts.path ?? '/' });
    if (opts.maxSessionDuration !== undefined) params.set('MaxSessionDuration', String(opts.maxSessionDuration));
    const out = this.sts.handle('CreateRole', new Params(params), { kind: 'key' }) as { Role: { Arn: string } };
    return out.Role.Arn;
  }
  /** Every STS session issued so far (copies), oldest first. */
  stsSessions(): StsSession[] {
    return [...this.sts.sessions.values()].map((s) => ({ ...s, tags: { ...s.tags } }));
  }
  /** A role's inline policy, parsed; undefined when it has none of that name. */
  rolePolicy(role: string, name: string): unknown {
    const doc = this.sts.roles.get(role.toLowerCase())?.inline.get(name);
    return doc === undefined ? undefined : JSON.parse(doc);
  }
  /** Moves the server's clock (session issue times and expiry) forward, instead of waiting. */
  advanceClock(seconds: number): void {
    this.sts.clockOffsetMs += seconds * 1000;
  }
  reset(): void {
    this.sts.reset();
    this.calls.length = 0;
    this.users.clear();
    this.groups.clear();
    this.nextFailure.clear();
    this.alwaysFailure.clear();
    this.matchedFailures = [];
  }

  /** Names of the user's credentials other than access keys, e.g. ['login-profile', 'ssh:APKA…']. */
  otherCredentials(user: string): string[] {
    const u = this.users.get(user.toLowerCase());
    if (!u) return [];
    return [
      ...(u.loginProfile ? ['login-profile'] : []),
      ...u.sshKeys.map((k) => `ssh:${k.id}`),
      ...u.serviceCredentials.map((c) => `service:${c.id}`),
      ...u.certificates.map((c) => `certificate:${c.id}`),
      ...u.mfaDevices.map((d) => `mfa:${d.id}`),
    ];
  }

  // ---- HTTP ----

  private async handle(req: IncomingMessage, res: ServerResponse): Promise<void> {
    const chunks: Buffer[] = [];
    for await (const chunk of req) chunks.push(chunk as Buffer);
    const query = new URLSearchParams(new URL(req.url ?? '/', 'http://localhost').search);
    for (const [k, v] of new URLSearchParams(Buffer.concat(chunks).toString('utf8'))) query.append(k, v);
    const p = new Params(query);
    const action = p.opt('Action') ?? '';
    const isSts = p.opt('Version') === STS_VERSION;
    const ns = isSts ? STS_NS : IAM_NS;
    const requestId = randomUUID();
    this.calls.push(action);
    let status = 200;
    let body: string;
    try {
      this.injectedFailure(action, p);
      const token = req.headers['x-amz-security-token'];
      const caller = this.sts.caller(req.headers.authorization, Array.isArray(token) ? token[0] : token, `${isSts ? 'sts' : 'iam'}:${action}`);
      let result: XmlValue | void;
      if (isSts && action === 'GetCallerIdentity') result = caller.kind === 'session' ? this.sts.callerIdentity(caller.session) : this.getCallerIdentity(req.headers.authorization);
      else if (isSts && (action === 'AssumeRole' || action === 'GetFederationToken')) result = this.sts.handle(action, p, caller);
      else if (!isSts && ROLE_ACTIONS.has(action)) result = this.sts.handle(action, p, caller);
      else if (!isSts && IAM_ACTIONS.has(action)) result = (this[action as IamAction] as (p: Params) => XmlValue | void)(p);
      else throw new IamError('InvalidAction', `Could not find operation ${action} for version ${p.opt('Version') ?? IAM_VERSION}`);
      body = successXml(action, ns, result ?? undefined, requestId);
    } catch (err) {
      const e = err instanceof IamError ? err : new IamError('ServiceFailure', String(err));
      status = statusForCode(e.code);
      body = errorXml(ns, status >= 500 ? 'Receiver' : 'Sender', e.code, e.message, requestId);
    }
    res.writeHead(status, { 'content-type': 'text/xml', 'x-amzn-RequestId': requestId });
    res.end(body);
  }

  private injectedFailure(action: string, p: Params): void {
    const matched = this.matchedFailures.find((f) => f.action === action && Object.entries(f.match).every(([k, v]) => p.opt(k) === v));
    if (matched) throw new IamError(matched.code, `Injected ${matched.code} for ${action}`);
    const once = this.nextFailure.get(action);
    if (once) {
      this.nextFailure.delete(action);
      throw new IamError(once.code, once.message ?? `Injected ${once.code} for ${action}`);
    }
    const always = this.alwaysFailure.get(action);
    if (always) throw new IamError(always, `Injected ${always} for ${action}`);
  }

  private getCallerIdentity(authorization: string | undefined): XmlValue {
    const keyId = /Credential=([^/,\s]+)\//.exec(authorization ?? '')?.[1];
    if (keyId && this.adminKeyIds.includes(keyId)) {
      return { UserId: 'AIDATESSERAADMIN00000', Account: ACCOUNT, Arn: `arn:aws:iam::${ACCOUNT}:user/tessera-admin` };
    }
    for (const u of this.users.values()) {
      if (u.keys.some((k) => k.id === keyId && k.status === 'Active')) return { UserId: u.id, Account: ACCOUNT, Arn: u.arn };
    }
    throw new IamError('InvalidClientTokenId', 'The security token included in the request is invalid.');
  }

  private user(name: string): User {
    const u = this.users.get(name.toLowerCase());
    if (!u) throw new IamError('NoSuchEntity', `The user with name ${name} cannot be found.`);
    return u;
  }

  private group(name: string): Group {
    const g = this.groups.get(name.toLowerCase());
    if (!g) throw new IamError('NoSuchEntity', `The group with name ${name} cannot be found.`);
    return g;
  }

  private userXml(u: User): XmlValue {
    return {
      Path: u.path, UserName: u.name, UserId: u.id, Arn: u.arn, CreateDate: u.created,
      PermissionsBoundary: u.boundary && { PermissionsBoundaryType: 'PermissionsBoundaryPolicy', PermissionsBoundaryArn: u.boundary },
      Tags: u.tags.size ? [...u.tags].map(([Key, Value]) => ({ Key, Value })) : undefined,
    };
  }

  private groupXml(g: Group): XmlValue {
    return { Path: g.path, GroupName: g.name, GroupId: g.id, Arn: g.arn, CreateDate: g.created };
  }

  private addTags(u: User, p: Params): void {
    const tags = p.members('Tags', ['Key', 'Value']);
    const keys = new Set<string>();
    for (const t of tags) {
      if (!t.Key || t.Key.length > 128 || (t.Value ?? '').length > 256) throw new IamError('InvalidInput', 'Invalid tag key or value.');
      if (keys.has(t.Key.toLowerCase())) throw new IamError('InvalidInput', 'Duplicate tag keys found. Please note that Tag keys are case insensitive.');
      keys.add(t.Key.toLowerCase());
    }
    const merged = new Map(u.tags);
    for (const t of tags) merged.set(t.Key!, t.Value ?? '');
    if (merged.size > 50) throw new IamError('LimitExceeded', 'Cannot exceed quota for TagsPerUser: 50');
    u.tags = merged;
  }

  // ---- IAM actions (method name = Action) ----

  private CreateUser(p: Params): XmlValue {
    const name = checkName(p.req('UserName'), 'userName', 64);
    const path = checkPath(p);
    if (this.users.has(name.toLowerCase())) throw new IamError('EntityAlreadyExists', `User with name ${name} already exists.`);
    const boundary = p.opt('PermissionsBoundary');
    if (boundary !== undefined) checkPolicyArn(boundary);
    const u: User = {
      name, path, boundary, id: 'AIDA' + randomString(UPPER_ALNUM, 17), arn: `arn:aws:iam::${ACCOUNT}:user${path}${name}`,
      created: new Date(), tags: new Map(), keys: [], inline: new Map(), attached: [], groups: [],
      sshKeys: [], serviceCredentials: [], certificates: [], mfaDevices: [],
    };
    this.addTags(u, p);
    this.users.set(name.toLowerCase(), u);
    return { User: this.userXml(u) };
  }

  private GetUser(p: Params): XmlValue {
    return { User: this.userXml(this.user(p.req('UserName'))) };
  }

  private ListUsers(p: Params): XmlValue {
    const prefix = p.opt('PathPrefix') ?? '/';
    const users = byKey([...this.users.values()].filter((u) => u.path.startsWith(prefix)), (u) => u.name.toLowerCase());
    const { page, IsTruncated, Marker } = paginate(users, (u) => u.name.toLowerCase(), p);
    return { Users: page.map((u) => this.userXml(u)), IsTruncated, Marker };
  }

  private DeleteUser(p: Params): void {
    const u = this.user(p.req('UserName'));
    const conflict = (what: string): IamError => new IamError('DeleteConflict', `Cannot delete entity, must ${what} first.`);
    if (u.keys.length) throw conflict('delete access keys');
    if (u.inline.size) throw conflict('delete policies');
    if (u.attached.length) throw conflict('detach all policies');
    if (u.groups.length) throw conflict('remove users from group');
    if (u.loginProfile) throw conflict('delete login profile');
    if (u.sshKeys.length) throw conflict('delete SSH public keys');
    if (u.serviceCredentials.length) throw conflict('delete service specific credentials');
    if (u.certificates.length) throw conflict('delete signing certificates');
    if (u.mfaDevices.length) throw conflict('deactivate MFA devices');
    this.users.delete(u.name.toLowerCase());
  }

  private TagUser(p: Params): void {
    this.addTags(this.user(p.req('UserName')), p);
  }

  private ListUserTags(p: Params): XmlValue {
    const u = this.user(p.req('UserName'));
    const { page, IsTruncated, Marker } = paginate([...u.tags], ([k]) => k, p);
    return { Tags: page.map(([Key, Value]) => ({ Key, Value })), IsTruncated, Marker };
  }

  private CreateAccessKey(p: Params): XmlValue {
    const u = this.user(p.req('UserName'));
    if (u.keys.length >= MAX_KEYS_PER_USER) throw new IamError('LimitExceeded', `Cannot exceed quota for AccessKeysPerUser: ${MAX_KEYS_PER_USER}`);
    const key: AccessKey = {
      id: 'AKIA' + randomString(UPPER_ALNUM, 16), secret: randomString(SECRET_CHARS, 40), status: 'Active', created: new Date(),
    };
    u.keys.push(key);
    return { AccessKey: { UserName: u.name, AccessKeyId: key.id, Status: key.status, SecretAccessKey: key.secret, CreateDate: key.created } };
  }

  private findKey(p: Params): { u: User; index: number } {
    const id = p.req('AccessKeyId');
    const name = p.opt('UserName');
    const candidates = name !== undefined ? [this.user(name)] : [...this.users.values()];
    for (const u of candidates) {
      const index = u.keys.findIndex((k) => k.id === id);
      if (index >= 0) return { u, index };
    }
    throw new IamError('NoSuchEntity', `The Access Key with id ${id} cannot be found.`);
  }

  private DeleteAccessKey(p: Params): void {
    const { u, index } = this.findKey(p);
    u.keys.splice(index, 1);
  }

  private UpdateAccessKey(p: Params): void {
    const status = p.req('Status');
    if (status !== 'Active' && status !== 'Inactive') {
      throw validation(`Value '${status}' at 'status' failed to satisfy constraint: Member must satisfy enum value set: [Active, Inactive]`);
    }
    const { u, index } = this.findKey(p);
    u.keys[index].status = status;
  }

  private ListAccessKeys(p: Params): XmlValue {
    const u = this.user(p.req('UserName'));
    const { page, IsTruncated, Marker } = paginate(byKey(u.keys, (k) => k.id), (k) => k.id, p);
    const AccessKeyMetadata = page.map((k) => ({ UserName: u.name, AccessKeyId: k.id, Status: k.status, CreateDate: k.created }));
    return { AccessKeyMetadata, IsTruncated, Marker };
  }

  private PutUserPolicy(p: Params): void {
    const u = this.user(p.req('UserName'));
    const name = checkName(p.req('PolicyName'), 'policyName', 128);
    const doc = p.req('PolicyDocument');
    let parsed: unknown;
    try {
      parsed = JSON.parse(doc);
    } catch {
      throw new IamError('MalformedPolicyDocument', 'Syntax errors in policy.');
    }
    if (typeof parsed !== 'object' || parsed === null || Array.isArray(parsed)) {
      throw new IamError('MalformedPolicyDocument', 'Syntax errors in policy.');
    }
    const inline = new Map(u.inline).set(name, doc);
    const size = [...inline.values()].reduce((n, d) => n + d.replace(/\s/g, '').length, 0);
    if (size > MAX_INLINE_POLICY_CHARS) {
      throw new IamError('LimitExceeded', `Maximum policy size of ${MAX_INLINE_POLICY_CHARS} bytes exceeded for user ${u.name}`);
    }
    u.inline = inline;
  }

  private inlinePolicy(p: Params): { u: User; name: string; doc: string } {
    const u = this.user(p.req('UserName'));
    const name = p.req('PolicyName');
    const doc = u.inline.get(name);
    if (doc === undefined) throw new IamError('NoSuchEntity', `The user policy with name ${name} cannot be found.`);
    return { u, name, doc };
  }

  private GetUserPolicy(p: Params): XmlValue {
    const { u, name, doc } = this.inlinePolicy(p);
    return { UserName: u.name, PolicyName: name, PolicyDocument: encodeURIComponent(doc) }; // IAM URL-encodes it
  }

  private DeleteUserPolicy(p: Params): void {
    const { u, name } = this.inlinePolicy(p);
    u.inline.delete(name);
  }

  private ListUserPolicies(p: Params): XmlValue {
    const u = this.user(p.req('UserName'));
    const { page, IsTruncated, Marker } = paginate([...u.inline.keys()].sort(), (n) => n, p);
    return { PolicyNames: page, IsTruncated, Marker };
  }

  private AttachUserPolicy(p: Params): void {
    const arn = checkPolicyArn(p.req('PolicyArn'));
    const u = this.user(p.req('UserName'));
    if (u.attached.includes(arn)) return;
    if (u.attached.length >= MAX_ATTACHED_PER_USER) throw new IamError('LimitExceeded', `Cannot exceed quota for PoliciesPerUser: ${MAX_ATTACHED_PER_USER}`);
    u.attached.push(arn);
  }

  private DetachUserPolicy(p: Params): void {
    const arn = checkPolicyArn(p.req('PolicyArn'));
    const u = this.user(p.req('UserName'));
    if (!u.attached.includes(arn)) throw new IamError('NoSuchEntity', `Policy ${arn} was not found.`);
    u.attached = u.attached.filter((a) => a !== arn);
  }

  private ListAttachedUserPolicies(p: Params): XmlValue {
    const u = this.user(p.req('UserName'));
    const { page, IsTruncated, Marker } = paginate([...u.attached].sort(), (a) => a, p);
    const AttachedPolicies = page.map((arn) => ({ PolicyName: arn.slice(arn.lastIndexOf('/') + 1), PolicyArn: arn }));
    return { AttachedPolicies, IsTruncated, Marker };
  }

  private CreateGroup(p: Params): XmlValue {
    const name = checkName(p.req('GroupName'), 'groupName', 128);
    const path = checkPath(p);
    if (this.groups.has(name.toLowerCase())) throw new IamError('EntityAlreadyExists', `Group with name ${name} already exists.`);
    const g: Group = { name, path, id: 'AGPA' + randomString(UPPER_ALNUM, 17), arn: `arn:aws:iam::${ACCOUNT}:group${path}${name}`, created: new Date() };
    this.groups.set(name.toLowerCase(), g);
    return { Group: this.groupXml(g) };
  }

  private AddUserToGroup(p: Params): void {
    const g = this.group(p.req('GroupName'));
    const u = this.user(p.req('UserName'));
    const key = g.name.toLowerCase();
    if (u.groups.includes(key)) return;
    if (u.groups.length >= MAX_GROUPS_PER_USER) throw new IamError('LimitExceeded', `Cannot exceed quota for GroupsPerUser: ${MAX_GROUPS_PER_USER}`);
    u.groups.push(key);
  }

  private RemoveUserFromGroup(p: Params): void {
    const g = this.group(p.req('GroupName'));
    const u = this.user(p.req('UserName'));
    u.groups = u.groups.filter((k) => k !== g.name.toLowerCase());
  }

  private ListGroupsForUser(p: Params): XmlValue {
    const u = this.user(p.req('UserName'));
    const { page, IsTruncated, Marker } = paginate([...u.groups].sort(), (k) => k, p);
    return { Groups: page.map((k) => this.groupXml(this.groups.get(k)!)), IsTruncated, Marker };
  }

  // Credentials other than access keys: only what revocation must find and remove.

  private CreateLoginProfile(p: Params): XmlValue {
    const u = this.user(p.req('UserName'));
    p.req('Password');
    if (u.loginProfile) throw new IamError('EntityAlreadyExists', `Login Profile for user ${u.name} already exists.`);
    u.loginProfile = new Date();
    return { LoginProfile: { UserName: u.name, CreateDate: u.loginProfile } };
  }

  private GetLoginProfile(p: Params): XmlValue {
    const u = this.user(p.req('UserName'));
    if (!u.loginProfile) throw new IamError('NoSuchEntity', `Login Profile for User ${u.name} cannot be found.`);
    return { LoginProfile: { UserName: u.name, CreateDate: u.loginProfile } };
  }

  private DeleteLoginProfile(p: Params): void {
    const u = this.user(p.req('UserName'));
    if (!u.loginProfile) throw new IamError('NoSuchEntity', `Login Profile for User ${u.name} cannot be found.`);
    u.loginProfile = undefined;
  }

  private extra(list: Extra[], id: string, what: string): number {
    const index = list.findIndex((e) => e.id === id);
    if (index < 0) throw new IamError('NoSuchEntity', `The ${what} with id ${id} cannot be found.`);
    return index;
  }

  private UploadSSHPublicKey(p: Params): XmlValue {
    const u = this.user(p.req('UserName'));
    p.req('SSHPublicKeyBody');
    const k: Extra = { id: 'APKA' + randomString(UPPER_ALNUM, 16), created: new Date() };
    u.sshKeys.push(k);
    return { SSHPublicKey: { UserName: u.name, SSHPublicKeyId: k.id, Fingerprint: '00:00', SSHPublicKeyBody: 'ssh-rsa AAAA', Status: 'Active', UploadDate: k.created } };
  }

  private ListSSHPublicKeys(p: Params): XmlValue {
    const u = this.user(p.req('UserName'));
    const { page, IsTruncated, Marker } = paginate(byKey(u.sshKeys, (k) => k.id), (k) => k.id, p);
    return { SSHPublicKeys: page.map((k) => ({ UserName: u.name, SSHPublicKeyId: k.id, Status: 'Active', UploadDate: k.created })), IsTruncated, Marker };
  }

  private DeleteSSHPublicKey(p: Params): void {
    const u = this.user(p.req('UserName'));
    u.sshKeys.splice(this.extra(u.sshKeys, p.req('SSHPublicKeyId'), 'SSH public key'), 1);
  }

  private CreateServiceSpecificCredential(p: Params): XmlValue {
    const u = this.user(p.req('UserName'));
    const c: Extra = { id: 'ACCA' + randomString(UPPER_ALNUM, 17), created: new Date(), service: p.req('ServiceName') };
    u.serviceCredentials.push(c);
    return {
      ServiceSpecificCredential: {
        CreateDate: c.created, ServiceName: c.service, ServiceUserName: `${u.name}-at-${ACCOUNT}`,
        ServicePassword: randomString(SECRET_CHARS, 40), ServiceSpecificCredentialId: c.id, UserName: u.name, Status: 'Active',
      },
    };
  }

  /** Not paginated in IAM either. */
  private ListServiceSpecificCredentials(p: Params): XmlValue {
    const u = this.user(p.req('UserName'));
    return {
      ServiceSpecificCredentials: u.serviceCredentials.map((c) => ({
        UserName: u.name, Status: 'Active', ServiceUserName: `${u.name}-at-${ACCOUNT}`, CreateDate: c.created, ServiceSpecificCredentialId: c.id, ServiceName: c.service,
      })),
    };
  }

  private DeleteServiceSpecificCredential(p: Params): void {
    const u = this.user(p.req('UserName'));
    u.serviceCredentials.splice(this.extra(u.serviceCredentials, p.req('ServiceSpecificCredentialId'), 'service specific credential'), 1);
  }

  private UploadSigningCertificate(p: Params): XmlValue {
    const u = this.user(p.req('UserName'));
    p.req('CertificateBody');
    const c: Extra = { id: randomString(UPPER_ALNUM, 32), created: new Date() };
    u.certificates.push(c);
    return { Certificate: { UserName: u.name, CertificateId: c.id, CertificateBody: '-----BEGIN CERTIFICATE-----', Status: 'Active', UploadDate: c.created } };
  }

  private ListSigningCertificates(p: Params): XmlValue {
    const u = this.user(p.req('UserName'));
    const { page, IsTruncated, Marker } = paginate(byKey(u.certificates, (c) => c.id), (c) => c.id, p);
    return { Certificates: page.map((c) => ({ UserName: u.name, CertificateId: c.id, CertificateBody: '-----BEGIN CERTIFICATE-----', Status: 'Active', UploadDate: c.created })), IsTruncated, Marker };
  }

  private DeleteSigningCertificate(p: Params): void {
    const u = this.user(p.req('UserName'));
    u.certificates.splice(this.extra(u.certificates, p.req('CertificateId'), 'signing certificate'), 1);
  }

  /** Authentication codes are not checked. */
  private EnableMFADevice(p: Params): void {
    const u = this.user(p.req('UserName'));
    const serial = p.req('SerialNumber');
    if (u.mfaDevices.some((d) => d.id === serial)) throw new IamError('EntityAlreadyExists', 'MFA device already in use.');
    u.mfaDevices.push({ id: serial, created: new Date() });
  }

  private ListMFADevices(p: Params): XmlValue {
    const u = this.user(p.req('UserName'));
    const { page, IsTruncated, Marker } = paginate(byKey(u.mfaDevices, (d) => d.id), (d) => d.id, p);
    return { MFADevices: page.map((d) => ({ UserName: u.name, SerialNumber: d.id, EnableDate: d.created })), IsTruncated, Marker };
  }

  private DeactivateMFADevice(p: Params): void {
    const u = this.user(p.req('UserName'));
    u.mfaDevices.splice(this.extra(u.mfaDevices, p.req('SerialNumber'), 'MFA device'), 1);
  }
}

const IAM_ACTION_LIST_EXTRA = [
  'CreateLoginProfile', 'GetLoginProfile', 'DeleteLoginProfile',
  'UploadSSHPublicKey', 'ListSSHPublicKeys', 'DeleteSSHPublicKey',
  'CreateServiceSpecificCredential', 'ListServiceSpecificCredentials', 'DeleteServiceSpecificCredential',
  'UploadSigningCertificate', 'ListSigningCertificates', 'DeleteSigningCertificate',
  'EnableMFADevice', 'ListMFADevices', 'DeactivateMFADevice',
] as const;

const IAM_ACTION_LIST = [
  ...IAM_ACTION_LIST_EXTRA,
  'CreateUser', 'GetUser', 'ListUsers', 'DeleteUser', 'TagUser', 'ListUserTags',
  'CreateAccessKey', 'DeleteAccessKey', 'UpdateAccessKey', 'ListAccessKeys',
  'PutUserPolicy', 'GetUserPolicy', 'DeleteUserPolicy', 'ListUserPolicies',
  'AttachUserPolicy', 'DetachUserPolicy', 'ListAttachedUserPolicies',
  'CreateGroup', 'AddUserToGroup', 'RemoveUserFromGroup', 'ListGroupsForUser',
] as const;
type IamAction = (typeof IAM_ACTION_LIST)[number];
const IAM_ACTIONS: ReadonlySet<string> = new Set(IAM_ACTION_LIST);
const ROLE_ACTIONS: ReadonlySet<string> = new Set(['CreateRole', 'GetRole', 'ListRoles', 'DeleteRole', 'PutRolePolicy', 'GetRolePolicy', 'DeleteRolePolicy', 'ListRolePolicies']);
