/**
 * The AWS IAM plugin: IAM users and access keys for iam_user roles (the full strip of a user on revoke
 * is in aws-iam-user.ts), STS sessions for the other credential types (aws-sts.ts).
 */
import {
  AddUserToGroupCommand,
  AttachUserPolicyCommand,
  CreateAccessKeyCommand,
  CreateUserCommand,
  DeleteAccessKeyCommand,
  GetUserCommand,
  IAMClient,
  ListUsersCommand,
  PutUserPolicyCommand,
  paginateListAccessKeys,
} from '@aws-sdk/client-iam';
import { GetCallerIdentityCommand, STSClient } from '@aws-sdk/client-sts';
import {
  AccountNotFoundError,
  CreateUserRequest,
  CreateUserResponse,
  CredentialPlugin,
  PluginError,
  PingResponse,
  PluginCapabilities,
  PluginFactory,
  RenewUserRequest,
  RenewUserResponse,
  RetireStaticSecretRequest,
  RetireStaticSecretResponse,
  LeaseTerms,
  DEFAULT_LEASE_TERMS,
  RevokeSessionsRequest,
  RevokeSessionsResponse,
  RevokeUserRequest,
  RevokeUserResponse,
  SetStaticSecretRequest,
  StaticSecretResult,
  VerifyRequest,
  VerifyResponse,
} from '../contract';
import { AwsIamConnectionConfig, AwsIamRoleSettings, awsIamConnectionSchema, awsIamRoleSchema } from './aws-iam.config';
import { StsCredentials, awsErrorCode, stsLeaseTerms } from './aws-sts';
import { isMissing, stripUser } from './aws-iam-user';

const INLINE_POLICY_NAME = 'tessera';
const RETRYABLE_CODES = new Set(['Throttling', 'ThrottlingException', 'RequestLimitExceeded', 'ServiceFailure', 'ServiceUnavailable', 'TimeoutError', 'DeleteConflict', 'ConcurrentModification']);
const LOGIN_REFUSED = new Set(['InvalidClientTokenId', 'SignatureDoesNotMatch', 'AccessDenied', 'ExpiredToken']);

const codeOf = awsErrorCode;


/**
 * An IAM user per lease, with an access key. The user's path and tag mark it as Tessera's; its policy is
 * built as an object and serialised. Every step of issue is undone if a later one fails, and revoke
 * strips keys, policies, groups and every other credential (console password, SSH keys, service
 * credentials, signing certificates, MFA devices) before it deletes the user, each step tolerating
 * "already gone".
 * IAM generates the secret key itself: the broker's password is not used.
 */
export class AwsIamPlugin implements CredentialPlugin {
  readonly maxUsernameLength = 64;
  /** Static secrets are access keys (two may coexist); keys have no expiry and no sessions to end. */
  readonly capabilities: PluginCapabilities = { staticStrategies: ['single'], targetExpiry: false, keyOverlap: true, sessions: false, batchRevoke: false };
  private readonly iam: IAMClient;
  /** STS for assumed_role and federation_token roles, at the same endpoint as IAM (moto, LocalStack). */
  private readonly sts: STSClient;
  private readonly stsCredentials: StsCredentials;

  constructor(
    private readonly name: string,
    private readonly config: AwsIamConnectionConfig,
  ) {
    this.iam = new IAMClient(this.clientConfig());
    this.sts = new STSClient(this.clientConfig());
    this.stsCredentials = new StsCredentials(this.sts, this.iam);
  }

  private clientConfig(credentials?: { accessKeyId: string; secretAccessKey: string; sessionToken?: string }) {
    const fromConfig =
      this.config.access_key_id && this.config.secret_access_key
        ? { accessKeyId: this.config.access_key_id, secretAccessKey: this.config.secret_access_key }
        : undefined;
    return {
      region: this.config.region,
      endpoint: this.config.endpoint,
      maxAttempts: this.config.max_attempts,
      credentials: credentials ?? fromConfig,
    };
  }

  async createUser(req: CreateUserRequest): Promise<CreateUserResponse> {
    const role = req.role as AwsIamRoleSettings;
    if (role.credential_type !== 'iam_user') {
      try {
        return { credentials: await this.stsCredentials.issue(req, role) };
      } catch (err) {
        throw this.translate('create', err);
      }
    }
    const UserName = req.username;
    try {
      await this.iam.send(
        new CreateUserCommand({
          UserName,
          Path: this.config.path,
          PermissionsBoundary: role.permissions_boundary,
          Tags: [
            { Key: 'tessera:managed', Value: 'true' },
            { Key: 'tessera:connection', Value: this.name },
          ],
        }),
      );
      if (role.inline_policy) {
        await this.iam.send(new PutUserPolicyCommand({ UserName, PolicyName: INLINE_POLICY_NAME, PolicyDocument: JSON.stringify(role.inline_policy) }));
      }
      for (const PolicyArn of role.policy_arns) await this.iam.send(new AttachUserPolicyCommand({ UserName, PolicyArn }));
      for (const GroupName of role.groups) await this.iam.send(new AddUserToGroupCommand({ UserName, GroupName }));
      const { AccessKey } = await this.iam.send(new CreateAccessKeyCommand({ UserName }));
      if (!AccessKey?.AccessKeyId || !AccessKey.SecretAccessKey) throw new PluginError(`aws-iam ${this.name}: CreateAccessKey returned no key`, true);
      if (this.config.wait_for_key) await this.waitUntilUsable(UserName, AccessKey.AccessKeyId, AccessKey.SecretAccessKey);
      return { credentials: { access_key_id: AccessKey.AccessKeyId, secret_access_key: AccessKey.SecretAccessKey, iam_user: UserName } };
    } catch (err) {
      // Undo whatever was done: a failed issue leaves no user, key or policy behind.
      await stripUser(this.iam, UserName).catch(() => undefined);
      throw this.translate('create', err);
    }
  }

  /** IAM keys have no expiry to move; renew checks the user is still there. */
  async renewUser(req: RenewUserRequest): Promise<RenewUserResponse> {
    if ((req.role as AwsIamRoleSettings).credential_type !== 'iam_user') {
      throw new PluginError(`aws-iam ${this.name}: STS credentials cannot be renewed`, false, 'not_renewable');
    }
    try {
      await this.iam.send(new GetUserCommand({ UserName: req.username }));
      return {};
    } catch (err) {
      if (isMissing(err)) throw new AccountNotFoundError(req.username);
      throw this.translate('renew', err);
    }
  }

  /**
   * Deletes the lease's IAM user, whatever the role's credential_type is now: a lease issued as an IAM
   * user before its role was switched to STS still has a user and key to delete. STS leases do not come
   * here (their lease rows are not revocable, so the broker ends them without the plugin); should one
   * come anyway, there is no user of its name, and that is success. A missing user is only "not
   * visible yet" for an iam_user role, whose users IAM may not show at once.
   */
  async revokeUser(req: RevokeUserRequest): Promise<RevokeUserResponse> {
    const issuesUsers = (req.role as AwsIamRoleSettings).credential_type === 'iam_user';
    try {
      const existed = await stripUser(this.iam, req.username);
      if (!existed && issuesUsers && req.issuedAt && Date.now() - req.issuedAt.getTime() < this.config.consistency_window * 1000) {
        // Created moments ago but not visible: IAM is eventually consistent. Try again later.
        throw new PluginError(`aws-iam ${this.name}: user ${req.username} is not visible yet; will retry`, true, 'not_visible_yet');
      }
      return {};
    } catch (err) {
      throw this.translate('revoke', err);
    }
  }

  /**
   * A new access key for an existing user, overlapping with the current one. IAM allows two keys per
   * user; when both places are taken, the keys not to keep (the previous version's) are deleted first.
   * So the previous key is gone at the next rotation at the latest.
   */
  async setStaticSecret(req: SetStaticSecretRequest): Promise<StaticSecretResult> {
    if (req.apply === false) throw new PluginError(`aws-iam ${this.name}: importing an existing key is not supported; Tessera makes the first key`, false);
    const UserName = req.account;
    try {
      const keys = await this.keyIds(UserName);
      if (keys.length >= 2) {
        for (const AccessKeyId of keys.filter((k) => !(req.keep ?? []).includes(k))) {
          await this.iam.send(new DeleteAccessKeyCommand({ UserName, AccessKeyId })).catch((err) => {
            if (!isMissing(err)) throw err;
          });
        }
      }
      const { AccessKey } = await this.iam.send(new CreateAccessKeyCommand({ UserName }));
      if (!AccessKey?.AccessKeyId || !AccessKey.SecretAccessKey) throw new PluginError(`aws-iam ${this.name}: CreateAccessKey returned no key`, true);
      const verify = { username: UserName, keyId: AccessKey.AccessKeyId, password: AccessKey.SecretAccessKey };
      return { credentials: { access_key_id: AccessKey.AccessKeyId, secret_access_key: AccessKey.SecretAccessKey }, verify, handle: AccessKey.AccessKeyId };
    } catch (err) {
      if (isMissing(err)) throw new AccountNotFoundError(UserName);
      throw this.translate('rotate', err);
    }
  }

  /** Deletes one key (`handle`), or every key but `keep`. */
  async retireStaticSecret(req: RetireStaticSecretRequest): Promise<RetireStaticSecretResponse> {
    const UserName = req.account;
    try {
      const doomed = req.handle !== undefined ? [req.handle] : req.keep !== undefined ? (await this.keyIds(UserName)).filter((k) => !req.keep!.includes(k)) : [];
      for (const AccessKeyId of doomed) {
        await this.iam.send(new DeleteAccessKeyCommand({ UserName, AccessKeyId })).catch((err) => {
          if (!isMissing(err)) throw err;
        });
      }
    } catch (err) {
      if (!isMissing(err)) throw this.translate('retire', err);
    }
    return {};
  }

  private async keyIds(UserName: string): Promise<string[]> {
    const keys: string[] = [];
    for await (const page of paginateListAccessKeys({ client: this.iam }, { UserName })) {
      for (const key of page.AccessKeyMetadata ?? []) if (key.AccessKeyId) keys.push(key.AccessKeyId);
    }
    return keys;
  }

  /**
   * Signs a call with the key itself (STS GetCallerIdentity needs no permission) and checks whose it is:
   * the IAM user `username`, or for temporary credentials (`token`) the session whose ARN is `username`.
   * AWS answers GetCallerIdentity even under a deny policy, so a session cut off by revokeSessions
   * still verifies here until it expires; the calls it is meant for are refused.
   */
  async verifyLogin(req: VerifyRequest): Promise<VerifyResponse> {
    if (!req.keyId) return { ok: false };
    const credentials = { accessKeyId: req.keyId, secretAccessKey: req.password, sessionToken: req.token };
    const sts = new STSClient({ ...this.clientConfig(credentials), maxAttempts: 1 });
    try {
      const { Arn } = await sts.send(new GetCallerIdentityCommand({}));
      if (req.token) return { ok: Arn === req.username };
      return { ok: typeof Arn === 'string' && Arn.includes(':user/') && Arn.endsWith(`/${req.username}`) };
    } catch (err) {
      if (LOGIN_REFUSED.has(codeOf(err))) return { ok: false };
      throw this.translate('verify', err);
    } finally {
      sts.destroy();
    }
  }

  /** assumed_role roles: every session of their IAM roles issued before `before` stops working. */
  async revokeSessions(req: RevokeSessionsRequest): Promise<RevokeSessionsResponse> {
    const role = req.role as AwsIamRoleSettings;
    if (role.credential_type !== 'assumed_role') {
      throw new PluginError(`aws-iam ${this.name}: only assumed_role roles have sessions that can be revoked`, false, 'not_supported');
    }
    try {
      const { targets, failed } = await this.stsCredentials.revokeSessions(role, req.before);
      return {
        targets,
        failed: failed.map(({ target, error }) => {
          const e = this.translate(`revoke sessions of ${target}`, error);
          return { target, code: codeOf(error), retryable: e.retryable, message: e.message };
        }),
      };
    } catch (err) {
      throw this.translate('revoke sessions', err);
    }
  }

  async ping(): Promise<PingResponse> {
    try {
      await this.iam.send(new ListUsersCommand({ MaxItems: 1, PathPrefix: this.config.path }));
      return {};
    } catch (err) {
      throw this.translate('ping', err);
    }
  }

  async close(): Promise<void> {
    this.iam.destroy();
    this.sts.destroy();
  }

  private async waitUntilUsable(user: string, keyId: string, secret: string): Promise<void> {
    const deadline = Date.now() + this.config.key_wait_timeout * 1000;
    for (let delay = 250; ; delay = Math.min(delay * 2, 2000)) {
      if ((await this.verifyLogin({ username: user, keyId, password: secret }).catch(() => ({ ok: false }))).ok) return;
      if (Date.now() + delay > deadline) throw new PluginError(`aws-iam ${this.name}: new key not usable after ${this.config.key_wait_timeout}s`, true);
      await new Promise((r) => setTimeout(r, delay));
    }
  }

  /** Code and AWS's message only; AWS messages never echo a secret key. */
  private translate(step: string, err: unknown): PluginError {
    if (err instanceof PluginError) return err;
    const code = codeOf(err);
    const status = (err as { $metadata?: { httpStatusCode?: number } }).$metadata?.httpStatusCode;
    const retryable = RETRYABLE_CODES.has(code) || status === undefined || status >= 500;
    const message = (err as Error)?.message ?? '';
    const detail = status === undefined ? `cannot reach IAM (${code})` : `${code}: ${message}`;
    return new PluginError(`aws-iam ${this.name}: ${step} failed: ${detail}`, retryable, isMissing(err) ? 'account_not_found' : undefined);
  }
}

export const awsIamPlugin: PluginFactory<AwsIamConnectionConfig, AwsIamRoleSettings> = {
  name: 'aws-iam',
  connectionSchema: awsIamConnectionSchema,
  roleSchema: awsIamRoleSchema,
  create: (connectionName, config) => new AwsIamPlugin(connectionName, config),
  leaseTerms: (role): LeaseTerms => (role.credential_type === 'iam_user' ? DEFAULT_LEASE_TERMS : stsLeaseTerms(role)),
};
