import { randomUUID } from 'node:crypto';
import { XmlValue } from './iam-xml';
import { IamError, Params, camel, checkName, checkPath, randomString, validation } from './iam-query';

/**
 * The STS half of the IAM test server, with the IAM roles it assumes: AssumeRole, GetFederationToken,
 * GetCallerIdentity for session credentials, CreateRole/GetRole/ListRoles/DeleteRole and inline role
 * policies (Put/Get/Delete/ListRolePolicies).
 *
 * What it models: STS's validation errors (DurationSeconds, RoleSessionName, SourceIdentity, ExternalId,
 * Name, tags, packed policy size), the role's MaxSessionDuration, an `sts:ExternalId` StringEquals
 * condition in the role's trust policy, AccessDenied for an unknown role, token issue times with
 * whole-second precision as AWS records them, expiry (ExpiredToken), and explicit denies in a role's
 * inline policies for calls signed with its sessions: statements with `Effect: Deny`, an Action
 * matching the call (`*` and `?` wildcards, e.g. `*` or `iam:List*`), `Resource: "*"`, and conditions
 * on `aws:TokenIssueTime` or `aws:CurrentTime` with DateLessThan(Equals)/DateGreaterThan(Equals).
 * As in AWS, GetCallerIdentity is answered whatever a policy denies.
 *
 * What it does not: Allow statements are not evaluated (a session may do anything nothing denies),
 * session policies and federation policies are recorded, not enforced, and secrets and signatures
 * are not checked (only the key id and the session token).
 */

const ACCOUNT = '123456789012';
const UPPER_ALNUM = 'ABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789';
const SECRET_CHARS = 'ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/';
const STS_NAME = /^[\w+=,.@-]*$/;
const MAX_ROLE_POLICY_CHARS = 10240;
const MAX_PACKED_POLICY_CHARS = 2048;

interface Role {
  name: string; path: string; id: string; arn: string; created: Date; trust: string; maxSession: number; inline: Map<string, string>;
}

export interface StsSession {
  keyId: string; secret: string; token: string; issued: Date; expires: Date;
  kind: 'assumed-role' | 'federated-user'; arn: string; userId: string; sessionName: string;
  roleArn?: string; sourceIdentity?: string; externalId?: string; tags: Record<string, string>; policy?: string; durationSeconds: number;
}

/** Who signed a request: an admin or unknown key (never checked), or a live STS session. */
export type Caller = { kind: 'key'; keyId?: string } | { kind: 'session'; session: StsSession };

type Statement = { Effect?: string; Action?: string | string[]; Resource?: string | string[]; Condition?: Record<string, Record<string, string | string[]>> };

export class StsModel {
  readonly roles = new Map<string, Role>(); // by lower-cased name
  readonly sessions = new Map<string, StsSession>(); // by access key id
  /** Added to the real clock: tests move time forward instead of waiting. */
  clockOffsetMs = 0;

  now(): Date {
    return new Date(Date.now() + this.clockOffsetMs);
  }

  reset(): void {
    this.roles.clear();
    this.sessions.clear();
    this.clockOffsetMs = 0;
  }

  /**
   * The caller of a signed request. A session key must come with its token and be unexpired; a
   * session whose role denies `action` (e.g. `iam:ListRoles`) is refused, except for GetCallerIdentity.
   */
  caller(authorization: string | undefined, token: string | undefined, action: string): Caller {
    const keyId = /Credential=([^/,\s]+)\//.exec(authorization ?? '')?.[1];
    if (!keyId?.startsWith('ASIA')) return { kind: 'key', keyId };
    const session = this.sessions.get(keyId);
    if (!session || session.token !== token) throw new IamError('InvalidClientTokenId', 'The security token included in the request is invalid.');
    if (session.expires.getTime() <= this.now().getTime()) throw new IamError('ExpiredToken', 'The security token included in the request is expired');
    if (action !== 'sts:GetCallerIdentity' && this.denied(session, action)) {
      throw new IamError('AccessDenied', `User: ${session.arn} is not authorized to perform: ${action} with an explicit deny in an identity-based policy`);
    }
    return { kind: 'session', session };
  }

  private denied(session: StsSession, action: string): boolean {
    if (session.kind !== 'assumed-role' || !session.roleArn) return false;
    const role = this.roles.get(roleNameOf(session.roleArn).toLowerCase());
    if (!role) return false;
    for (const doc of role.inline.values()) {
      const statements = ([] as Statement[]).concat((JSON.parse(doc) as { Statement: Statement | Statement[] }).Statement);
      if (statements.some((st) => st.Effect === 'Deny' && matchesAny(st.Action, action) && [st.Resource ?? []].flat().includes('*') && this.conditionsHold(st, session))) return true;
    }
    return false;
  }

  private conditionsHold(st: Statement, session: StsSession): boolean {
    const context: Record<string, Date> = { 'aws:tokenissuetime': session.issued, 'aws:currenttime': this.now() };
    for (const [operator, clauses] of Object.entries(st.Condition ?? {})) {
      const compare = DATE_OPERATORS[operator];
      if (!compare) return false;
      for (const [key, values] of Object.entries(clauses)) {
        const actual = context[key.toLowerCase()];
        if (!actual || ![values].flat().some((v) => compare(actual.getTime(), Date.parse(v)))) return false;
      }
    }
    return true;
  }

  handle(action: string, p: Params, caller: Caller): XmlValue | void {
    switch (action) {
      case 'AssumeRole': return this.assumeRole(p, caller);
      case 'GetFederationToken': return this.getFederationToken(p, caller);
      case 'CreateRole': return this.createRole(p);
      case 'GetRole': return { Role: this.roleXml(this.role(p.req('RoleName'))) };
      case 'ListRoles': return { Roles: [...this.roles.values()].map((r) => this.roleXml(r)), IsTruncated: false };
      case 'DeleteRole': return this.deleteRole(p);
      case 'PutRolePolicy': return this.putRolePolicy(p);
      case 'GetRolePolicy': {
        const { role, name, doc } = this.rolePolicy(p);
        return { RoleName: role.name, PolicyName: name, PolicyDocument: encodeURIComponent(doc) };
      }
      case 'DeleteRolePolicy': {
        const { role, name } = this.rolePolicy(p);
        role.inline.delete(name);
        return;
      }
      case 'ListRolePolicies': return { PolicyNames: [...this.role(p.req('RoleName')).inline.keys()].sort(), IsTruncated: false };
      default: throw new IamError('InvalidAction', `Could not find operation ${action}`);
    }
  }

  callerIdentity(session: StsSession): XmlValue {
    return { UserId: session.userId, Account: ACCOUNT, Arn: session.arn };
  }

  // ---- IAM roles ----

  private role(name: string): Role {
    const role = this.roles.get(name.toLowerCase());
    if (!role) throw new IamError('NoSuchEntity', `The role with name ${name} cannot be found.`);
    return role;
  }

  private roleXml(r: Role): XmlValue {
    return { Path: r.path, RoleName: r.name, RoleId: r.id, Arn: r.arn, CreateDate: r.created, AssumeRolePolicyDocument: encodeURIComponent(r.trust), MaxSessionDuration: r.maxSession };
  }

  private createRole(p: Params): XmlValue {
    const name = checkName(p.req('RoleName'), 'roleName', 64);
    const path = checkPath(p);
    const trust = policyText(p.req('AssumeRolePolicyDocument'));
    const maxSession = intParam(p, 'MaxSessionDuration', 3600, 43200) ?? 3600;
    if (this.roles.has(name.toLowerCase())) throw new IamError('EntityAlreadyExists', `Role with name ${name} already exists.`);
    const role: Role = { name, path, id: 'AROA' + randomString(UPPER_ALNUM, 17), arn: `arn:aws:iam::${ACCOUNT}:role${path}${name}`, created: new Date(), trust, maxSession, inline: new Map() };
    this.roles.set(name.toLowerCase(), role);
    return { Role: this.roleXml(role) };
  }

  private deleteRole(p: Params): void {
    const role = this.role(p.req('RoleName'));
    if (role.inline.size) throw new IamError('DeleteConflict', 'Cannot delete entity, must delete policies first.');
    this.roles.delete(role.name.toLowerCase());
  }

  private putRolePolicy(p: Params): void {
    const role = this.role(p.req('RoleName'));
    const name = checkName(p.req('PolicyName'), 'policyName', 128);
    const doc = policyText(p.req('PolicyDocument'));
    const inline = new Map(role.inline).set(name, doc);
    const size = [...inline.values()].reduce((n, d) => n + d.replace(/\s/g, '').length, 0);
    if (size > MAX_ROLE_POLICY_CHARS) throw new IamError('LimitExceeded', `Maximum policy size of ${MAX_ROLE_POLICY_CHARS} bytes exceeded for role ${role.name}`);
    role.inline = inline;
  }

  private rolePolicy(p: Params): { role: Role; name: string; doc: string } {
    const role = this.role(p.req('RoleName'));
    const name = p.req('PolicyName');
    const doc = role.inline.get(name);
    if (doc === undefined) throw new IamError('NoSuchEntity', `The role policy with name ${name} cannot be found.`);
    return { role, name, doc };
  }

  // ---- STS ----

  private assumeRole(p: Params, caller: Caller): XmlValue {
    const roleArn = p.req('RoleArn');
    if (roleArn.length < 20 || roleArn.length > 2048) throw lengthError(roleArn, 'roleArn', 20, 2048);
    const sessionName = stsName(p.req('RoleSessionName'), 'roleSessionName', 64);
    const duration = intParam(p, 'DurationSeconds', 900, 43200) ?? 3600;
    const sourceIdentity = p.opt('SourceIdentity');
    if (sourceIdentity !== undefined) {
      stsName(sourceIdentity, 'sourceIdentity', 64);
      if (sourceIdentity.toLowerCase().startsWith('aws:')) throw validation(`Value '${sourceIdentity}' at 'sourceIdentity' failed to satisfy constraint: Member must not begin with aws:`);
    }
    const externalId = p.opt('ExternalId');
    if (externalId !== undefined && (externalId.length < 2 || externalId.length > 1224 || !/^[\w+=,.@:/-]*$/.test(externalId))) throw lengthError(externalId, 'externalId', 2, 1224);
    const policy = packedPolicy(p.opt('Policy'));
    const tags = sessionTags(p);
    const role = this.roles.get(roleNameOf(roleArn).toLowerCase());
    const who = caller.kind === 'session' ? caller.session.arn : `arn:aws:iam::${ACCOUNT}:user/tessera-admin`;
    const denied = () => new IamError('AccessDenied', `User: ${who} is not authorized to perform: sts:AssumeRole on resource: ${roleArn}`);
    if (!role || role.arn !== roleArn) throw denied();
    const wanted = requiredExternalId(role.trust);
    if (wanted !== undefined && wanted !== externalId) throw denied();
    if (duration > role.maxSession) throw new IamError('ValidationError', 'The requested DurationSeconds exceeds the MaxSessionDuration set for this role.');
    const session = this.newSession({
      kind: 'assumed-role', arn: `arn:aws:sts::${ACCOUNT}:assumed-role/${role.name}/${sessionName}`, userId: `${role.id}:${sessionName}`,
      sessionName, roleArn, sourceIdentity, externalId, tags, policy, durationSeconds: duration,
    });
    return {
      Credentials: this.credentialsXml(session),
      AssumedRoleUser: { AssumedRoleId: session.userId, Arn: session.arn },
      PackedPolicySize: policy === undefined ? undefined : Math.ceil((policy.length * 100) / MAX_PACKED_POLICY_CHARS),
      SourceIdentity: sourceIdentity,
    };
  }

  private getFederationToken(p: Params, caller: Caller): XmlValue {
    if (caller.kind === 'session') throw new IamError('AccessDenied', 'Cannot call GetFederationToken with session credentials');
    const name = stsName(p.req('Name'), 'name', 32);
    const duration = intParam(p, 'DurationSeconds', 900, 129600) ?? 43200;
    const policy = packedPolicy(p.opt('Policy'));
    const tags = sessionTags(p);
    const session = this.newSession({
      kind: 'federated-user', arn: `arn:aws:sts::${ACCOUNT}:federated-user/${name}`, userId: `${ACCOUNT}:${name}`, sessionName: name, tags, policy, durationSeconds: duration,
    });
    return { Credentials: this.credentialsXml(session), FederatedUser: { FederatedUserId: session.userId, Arn: session.arn }, PackedPolicySize: policy === undefined ? undefined : 1 };
  }

  private newSession(fields: Omit<StsSession, 'keyId' | 'secret' | 'token' | 'issued' | 'expires'>): StsSession {
    const now = this.now();
    // AWS records a token's issue time to the second.
    const issued = new Date(Math.floor(now.getTime() / 1000) * 1000);
    const session: StsSession = {
      ...fields,
      keyId: 'ASIA' + randomString(UPPER_ALNUM, 16),
      secret: randomString(SECRET_CHARS, 40),
      token: Buffer.from(randomUUID() + randomUUID()).toString('base64'),
      issued,
      expires: new Date(issued.getTime() + fields.durationSeconds * 1000),
    };
    this.sessions.set(session.keyId, session);
    return session;
  }

  private credentialsXml(s: StsSession): XmlValue {
    return { AccessKeyId: s.keyId, SecretAccessKey: s.secret, SessionToken: s.token, Expiration: s.expires };
  }
}

const DATE_OPERATORS: Record<string, (actual: number, limit: number) => boolean> = {
  DateLessThan: (a, l) => a < l,
  DateLessThanEquals: (a, l) => a <= l,
  DateGreaterThan: (a, l) => a > l,
  DateGreaterThanEquals: (a, l) => a >= l,
};

function matchesAny(patterns: string | string[] | undefined, action: string): boolean {
  return [patterns ?? []].flat().some((pattern) => {
    const re = new RegExp(`^${pattern.replace(/[.+^${}()|[\]\\]/g, '\\$&').replace(/\*/g, '.*').replace(/\?/g, '.')}$`, 'i');
    return re.test(action);
  });
}

export function roleNameOf(arn: string): string {
  return arn.slice(arn.lastIndexOf('/') + 1);
}

function lengthError(value: string, field: string, min: number, max: number): IamError {
  return validation(`Value '${value}' at '${field}' failed to satisfy constraint: Member must have length between ${min} and ${max}`);
}

/** STS's names (session names, source identities, federated users): min 2, `[\w+=,.@-]*`. */
function stsName(value: string, field: string, max: number): string {
  if (value.length < 2) throw validation(`Value '${value}' at '${field}' failed to satisfy constraint: Member must have length greater than or equal to 2`);
  if (value.length > max) throw validation(`Value '${value}' at '${field}' failed to satisfy constraint: Member must have length less than or equal to ${max}`);
  if (!STS_NAME.test(value)) throw validation(`Value '${value}' at '${field}' failed to satisfy constraint: Member must satisfy regular expression pattern: [\\w+=,.@-]*`);
  return value;
}

function intParam(p: Params, name: string, min: number, max: number): number | undefined {
  const raw = p.opt(name);
  if (raw === undefined) return undefined;
  const n = Number(raw);
  const field = camel(name);
  if (!/^\d+$/.test(raw)) throw validation(`Value '${raw}' at '${field}' failed to satisfy constraint: Member must be an integer`);
  if (n < min) throw validation(`Value '${raw}' at '${field}' failed to satisfy constraint: Member must have value greater than or equal to ${min}`);
  if (n > max) throw validation(`Value '${raw}' at '${field}' failed to satisfy constraint: Member must have value less than or equal to ${max}`);
  return n;
}

function policyText(doc: string): string {
  let parsed: unknown;
  try {
    parsed = JSON.parse(doc);
  } catch {
    throw new IamError('MalformedPolicyDocument', 'Syntax errors in policy.');
  }
  if (typeof parsed !== 'object' || parsed === null || Array.isArray(parsed) || !('Statement' in parsed)) throw new IamError('MalformedPolicyDocument', 'Syntax errors in policy.');
  const statements = ([] as Statement[]).concat((parsed as { Statement: Statement | Statement[] }).Statement);
  if (statements.some((st) => typeof st !== 'object' || st === null || (st.Effect !== 'Allow' && st.Effect !== 'Deny'))) {
    throw new IamError('MalformedPolicyDocument', 'Policy statement must contain a valid Effect: Allow or Deny.');
  }
  return doc;
}

/** A session policy: valid JSON, and within the packed size AWS allows. */
function packedPolicy(doc: string | undefined): string | undefined {
  if (doc === undefined) return undefined;
  policyText(doc);
  if (doc.replace(/\s/g, '').length > MAX_PACKED_POLICY_CHARS) throw new IamError('PackedPolicyTooLarge', 'Packed policy consumes more than 100% of the allotted size.');
  return doc;
}

function sessionTags(p: Params): Record<string, string> {
  const tags = p.members('Tags', ['Key', 'Value']);
  if (tags.length > 50) throw validation(`Value at 'tags' failed to satisfy constraint: Member must have length less than or equal to 50`);
  const out: Record<string, string> = {};
  for (const t of tags) {
    const key = t.Key ?? '';
    const value = t.Value ?? '';
    if (key.length < 1 || key.length > 128 || !/^[\p{L}\p{Z}\p{N}_.:/=+\-@]+$/u.test(key)) throw validation(`Value '${key}' at 'tags.member.key' failed to satisfy constraint: Member must satisfy regular expression pattern: [\\p{L}\\p{Z}\\p{N}_.:/=+\\-@]+`);
    if (value.length > 256 || !/^[\p{L}\p{Z}\p{N}_.:/=+\-@]*$/u.test(value)) throw validation(`Value '${value}' at 'tags.member.value' failed to satisfy constraint: Member must have length less than or equal to 256 and satisfy regular expression pattern: [\\p{L}\\p{Z}\\p{N}_.:/=+\\-@]*`);
    if (Object.keys(out).some((k) => k.toLowerCase() === key.toLowerCase())) throw new IamError('InvalidParameterValue', 'Duplicate tag keys found. Please note that Tag keys are case insensitive.');
    out[key] = value;
  }
  return out;
}

/** The external id a role's trust policy requires (`Condition: {StringEquals: {"sts:ExternalId": ...}}`), if any. */
function requiredExternalId(trust: string): string | undefined {
  const statements = ([] as Statement[]).concat((JSON.parse(trust) as { Statement: Statement | Statement[] }).Statement);
  for (const st of statements) {
    const v = st.Condition?.StringEquals?.['sts:ExternalId'];
    if (v !== undefined) return [v].flat()[0];
  }
  return undefined;
}
