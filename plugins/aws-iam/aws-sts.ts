/**
 * STS credentials for aws-iam roles with `credential_type: assumed_role` or `federation_token`:
 * temporary keys with a session token, which AWS cannot withdraw one by one. The workload is named in
 * AWS (role session name, SourceIdentity, session tags) so CloudTrail shows who used a credential.
 */
import { createHash } from 'node:crypto';
import { IAMClient, PutRolePolicyCommand } from '@aws-sdk/client-iam';
import { AssumeRoleCommand, Credentials, GetFederationTokenCommand, STSClient } from '@aws-sdk/client-sts';
import { CreateUserRequest, LeaseTerms, PluginError } from '../contract';
import { AssumedRoleSettings, STS_FEDERATION_MAX_SECONDS, STS_MIN_SECONDS, StsRoleSettings } from './aws-iam.config';

/** The policy name the AWS console's "revoke active sessions" uses; a later revocation replaces it. */
export const REVOKE_POLICY_NAME = 'AWSRevokeOlderSessions';
export const SUBJECT_TAG = 'tessera-subject';
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

/**
 * The workload's subject as a SourceIdentity (2-64 characters of `[\w+=,.@-]`): characters AWS does not
 * allow become `_`; a longer subject keeps its end (the most specific part of a SPIFFE ID or a CI
 * subject) behind 8 hex characters of its SHA-256, so two long subjects that end alike still differ.
 * The full subject is in the audit event and the `tessera-subject` session tag.
 */
export function sourceIdentity(subject: string): string {
  const clean = awsName(subject);
  if (clean.length < 2) return clean.padEnd(2, '_');
  if (clean.length <= 64) return clean;
  return `${sha256Hex(subject).slice(0, 8)}-${clean.slice(-55)}`;
}

/** A session tag value: at most 256 characters of letters, digits, spaces and `_.:/=+-@`. */
export function tagValue(text: string): string {
  return text.replace(/[^\p{L}\p{N}\p{Z}_.:/=+\-@]/gu, '_').slice(0, 256);
}

function sha256Hex(text: string): string {
  return createHash('sha256').update(text).digest('hex');
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
    const Tags = [
      { Key: SUBJECT_TAG, Value: tagValue(subject) },
      { Key: LEASE_TAG, Value: tagValue(leaseId) },
    ];
    if (role.credential_type === 'assumed_role') {
      const out = await this.sts.send(
        new AssumeRoleCommand({
          RoleArn: role.role_arns[0],
          RoleSessionName: roleSessionName(leaseId),
          DurationSeconds,
          SourceIdentity: sourceIdentity(subject),
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
   * active sessions" does: an inline policy denying everything to tokens issued earlier. Returns the
   * ARNs of the roles changed.
   */
  async revokeSessions(role: AssumedRoleSettings, before: Date): Promise<string[]> {
    const PolicyDocument = revokeOlderSessionsPolicy(before);
    for (const arn of role.role_arns) {
      await this.iam.send(new PutRolePolicyCommand({ RoleName: roleNameOf(arn), PolicyName: REVOKE_POLICY_NAME, PolicyDocument }));
    }
    return [...role.role_arns];
  }
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
