/**
 * STS credentials for aws-iam roles with `credential_type: assumed_role` or `federation_token`:
 * temporary keys with a session token, which AWS cannot withdraw one by one. The workload is named in
 * AWS (role session name, SourceIdentity, session tags) so CloudTrail shows who used a credential.
 */
import { createHash } from 'node:crypto';
import { GetRoleCommand, IAMClient, PutRolePolicyCommand } from '@aws-sdk/client-iam';
import { AssumeRoleCommand, Credentials, GetFederationTokenCommand, STSClient } from '@aws-sdk/client-sts';
import { CreateUserRequest, LeaseTerms, PluginError } from '../contract';
import { AssumedRoleSettings, STS_FEDERATION_MAX_SECONDS, STS_MIN_SECONDS, StsRoleSettings } from './aws-iam.config';

/** The policy name the AWS console's "revoke active sessions" uses; a later revocation replaces it. */
export const REVOKE_POLICY_NAME = 'AWSRevokeOlderSessions';
export const SUBJECT_TAG = 'tessera-subject';
export const ISSUER_TAG = 'tessera-issuer';
export const LEASE_TAG = 'tessera-lease';

export function stsLeaseTerms(role: StsRoleSettings): LeaseTerms {
  const maxTtl = role.credential_type === 'assumed_role' ? role.max_session_duration : STS_FEDERATION_MAX_SECONDS;
  return { renewable: false, revocable: false, minTtl: STS_MIN_SECONDS, maxTtl };
}

/** Every character outside AWS's `[\w+=,.@-]` becomes `_`. */
const awsName = (text: string) => text.replace(/[^\w+=,.@-]/g, '_');

/** The role session name: `tessera-<lease id>`, cut to the 64 characters AssumeRole allows. */
export function roleSessionName(leaseId: string): string {
  return awsName(`tessera-${leaseId}`).slice(0, 64);
}

/** GetFederationToken's `Name` is 2-32 characters: `tessera-<lease id>` cut to 32. */
export function federatedUserName(leaseId: string): string {
  return awsName(`tessera-${leaseId}`).slice(0, 32);
}

/** The most of the subject a SourceIdentity shows: 64, less `.` and the 16 hex characters of the hash. */
const SOURCE_IDENTITY_TAIL = 47;
const TAG_VALUE_MAX = 256;

/**
 * The workload as a SourceIdentity (2-64 characters of `[\w+=,.@-]`, not starting with `aws:`):
 * `<tail>.<hash>`, where `<hash>` is 16 hex characters of SHA-256 over the issuer, a NUL and the subject,
 * and `<tail>` is the end of the subject (its most specific part: a SPIFFE ID's workload, a CI ref) in
 * AWS's characters, at most 47 of them. The tail is for people reading CloudTrail and may be ambiguous
 * (`a:b` and `a_b` share it); the hash is not: it is always present and covers the exact issuer and
 * subject, so two identities share a SourceIdentity only through a SHA-256 collision on 64 bits, and a
 * subject cannot be shaped to look like another's value. The full subject and issuer are in the audit
 * event and in the `tessera-subject` and `tessera-issuer` session tags.
 */
export function sourceIdentity(issuer: string, subject: string): string {
  const tail = awsName(subject).slice(-SOURCE_IDENTITY_TAIL);
  return `${tail}.${identityHash(issuer, subject)}`;
}

/** 16 hex characters of SHA-256(issuer NUL subject): what tells two workloads apart in AWS. */
export function identityHash(issuer: string, subject: string): string {
  return createHash('sha256').update(issuer).update('\0').update(subject).digest('hex').slice(0, 16);
}

/**
 * A session tag value: letters, digits, spaces and `_.:/=+-@`, cut to 256 whole code points: a
 * character outside the Basic Multilingual Plane is kept whole or left out, never halved into a lone
 * surrogate. The cut also keeps the value within 256 UTF-16 units, whichever way the limit is counted.
 */
export function tagValue(text: string): string {
  let out = '';
  for (const ch of text.replace(/[^\p{L}\p{N}\p{Z}_.:/=+\-@]/gu, '_')) {
    if (out.length + ch.length > TAG_VALUE_MAX) break;
    out += ch;
  }
  return out;
}

/** The inline deny policy that ends every session of a role issued before `before`. */
export function revokeOlderSessionsPolicy(before: Date): string {
  return JSON.stringify({
    Version: '2012-10-17',
    Statement: [{ Effect: 'Deny', Action: ['*'], Resource: ['*'], Condition: { DateLessThan: { 'aws:TokenIssueTime': before.toISOString() } } }],
  });
}

/** The role name of a role ARN (its path left out, as IAM's role APIs want it). */
export function roleNameOf(arn: string): string {
  return arn.slice(arn.lastIndexOf('/') + 1);
}

export class StsCredentials {
  constructor(
    private readonly sts: STSClient,
    private readonly iam: IAMClient,
  ) {}

  /**
   * Temporary credentials for one lease. The duration is the lease's TTL within what STS allows (the
   * broker refuses TTLs outside it; the clamp only protects direct callers); `expiration` is STS's own.
   */
  async issue(req: CreateUserRequest, role: StsRoleSettings): Promise<Record<string, string>> {
    const terms = stsLeaseTerms(role);
    const seconds = Math.round((req.expiresAt.getTime() - Date.now()) / 1000);
    const DurationSeconds = Math.min(Math.max(seconds, terms.minTtl!), terms.maxTtl!);
    const leaseId = req.leaseId ?? req.username;
    const subject = req.subject ?? req.username;
    const issuer = req.issuer ?? '';
    const Tags = [
      { Key: SUBJECT_TAG, Value: tagValue(subject) },
      { Key: ISSUER_TAG, Value: tagValue(issuer) },
      { Key: LEASE_TAG, Value: tagValue(leaseId) },
    ];
    if (role.credential_type === 'assumed_role') {
      const out = await this.sts.send(
        new AssumeRoleCommand({
          RoleArn: role.role_arns[0],
          RoleSessionName: roleSessionName(leaseId),
          DurationSeconds,
          SourceIdentity: sourceIdentity(issuer, subject),
          Tags,
          ExternalId: role.external_id,
          Policy: role.session_policy ? JSON.stringify(role.session_policy) : undefined,
        }),
      );
      return credentialsOf(out.Credentials, out.AssumedRoleUser?.Arn);
    }
    const out = await this.sts.send(
      new GetFederationTokenCommand({ Name: federatedUserName(leaseId), DurationSeconds, Policy: JSON.stringify(role.policy), Tags }),
    );
    return credentialsOf(out.Credentials, out.FederatedUser?.Arn);
  }

  /**
   * Ends every session of the role's IAM roles issued before `before`, as the AWS console's "revoke
   * active sessions" does: an inline policy denying everything to tokens issued earlier.
   * First every ARN is checked to be a role of the account the connection's credentials belong to
   * (IAM's role calls take a name, not an ARN, so a role in another account would otherwise be
   * confused with a same-named role here); one that is not refuses the whole operation before anything
   * changes. Then the policy is put on each role in turn, and each role's outcome is returned: a
   * failure on one does not hide that others were changed.
   */
  async revokeSessions(role: AssumedRoleSettings, before: Date): Promise<{ targets: string[]; failed: { target: string; error: unknown }[] }> {
    for (const arn of role.role_arns) await this.checkInAccount(arn);
    const PolicyDocument = revokeOlderSessionsPolicy(before);
    const targets: string[] = [];
    const failed: { target: string; error: unknown }[] = [];
    for (const arn of role.role_arns) {
      try {
        await this.iam.send(new PutRolePolicyCommand({ RoleName: roleNameOf(arn), PolicyName: REVOKE_POLICY_NAME, PolicyDocument }));
        targets.push(arn);
      } catch (error) {
        failed.push({ target: arn, error });
      }
    }
    return { targets, failed };
  }

  /** GetRole by the ARN's name must answer with exactly that ARN: else it names another account's role (or none). */
  private async checkInAccount(arn: string): Promise<void> {
    const RoleName = roleNameOf(arn);
    let found: string | undefined;
    try {
      found = (await this.iam.send(new GetRoleCommand({ RoleName }))).Role?.Arn;
    } catch (err) {
      if (awsErrorCode(err) !== 'NoSuchEntity') throw err;
    }
    if (found === arn) return;
    const here = found === undefined ? `there is no role named ${RoleName} there` : `the role named ${RoleName} there is ${found}`;
    throw new PluginError(
      `role ${arn} is in another account than the connection's credentials (${here}); nothing was changed: revoke its sessions with credentials of its own account`,
      false,
      ROLE_NOT_IN_ACCOUNT,
    );
  }
}

/** The PluginError code of a role ARN outside the account of the connection's credentials. */
export const ROLE_NOT_IN_ACCOUNT = 'role_not_in_account';

/** The error code of an SDK error: "NoSuchEntity" whether the SDK names it NoSuchEntityException or not. */
export function awsErrorCode(err: unknown): string {
  const e = err as { name?: string; Code?: string; code?: string };
  return (e.Code ?? e.name ?? e.code ?? 'Error').replace(/Exception$/, '');
}

function credentialsOf(c: Credentials | undefined, arn: string | undefined): Record<string, string> {
  if (!c?.AccessKeyId || !c.SecretAccessKey || !c.SessionToken || !c.Expiration) throw new PluginError('aws-iam: STS returned no credentials', true);
  return {
    access_key_id: c.AccessKeyId,
    secret_access_key: c.SecretAccessKey,
    session_token: c.SessionToken,
    expiration: c.Expiration.toISOString(),
    ...(arn ? { arn } : {}),
  };
}
