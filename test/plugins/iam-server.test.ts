import {
  AddUserToGroupCommand,
  AttachUserPolicyCommand,
  CreateAccessKeyCommand,
  CreateUserCommand,
  DeleteAccessKeyCommand,
  DeleteUserCommand,
  DeleteUserPolicyCommand,
  DetachUserPolicyCommand,
  GetUserCommand,
  GetUserPolicyCommand,
  IAMClient,
  ListAccessKeysCommand,
  ListAttachedUserPoliciesCommand,
  ListGroupsForUserCommand,
  ListUserPoliciesCommand,
  ListUsersCommand,
  PutUserPolicyCommand,
  RemoveUserFromGroupCommand,
  UpdateAccessKeyCommand,
  paginateListUsers,
} from '@aws-sdk/client-iam';
import { GetCallerIdentityCommand, STSClient } from '@aws-sdk/client-sts';
import { IamTestServer } from '../support/iam-server';

/** Drives test/support/iam-server.ts with the real AWS SDK v3 clients, to prove the fake speaks IAM's wire format. */

const ADMIN = { accessKeyId: 'AKIDTESSERAADMIN0000', secretAccessKey: 'x' };
const READONLY_ARN = 'arn:aws:iam::aws:policy/ReadOnlyAccess';

let server: IamTestServer;
let endpoint: string;
let iam: IAMClient;

beforeAll(async () => {
  server = new IamTestServer();
  endpoint = await server.start();
  iam = new IAMClient({ region: 'us-east-1', endpoint, credentials: ADMIN });
});

afterAll(async () => {
  iam.destroy();
  await server.stop();
});

beforeEach(() => server.reset());

const sts = (credentials: { accessKeyId: string; secretAccessKey: string }): STSClient =>
  new STSClient({ region: 'us-east-1', endpoint, credentials, maxAttempts: 1 });

/** Posts a raw Query-protocol request, for checking the bytes the SDK would otherwise hide. */
async function raw(params: Record<string, string>): Promise<{ status: number; body: string }> {
  const res = await fetch(endpoint + '/', {
    method: 'POST',
    headers: { 'content-type': 'application/x-www-form-urlencoded' },
    body: new URLSearchParams(params).toString(),
  });
  return { status: res.status, body: await res.text() };
}

describe('IamTestServer via @aws-sdk/client-iam', () => {
  it('creates, gets and deletes a user', async () => {
    const created = await iam.send(
      new CreateUserCommand({
        UserName: 'alice',
        Path: '/tessera/',
        PermissionsBoundary: 'arn:aws:iam::123456789012:policy/boundary',
        Tags: [{ Key: 'owner', Value: `<a & "b" 'c'>` }, { Key: 'lease', Value: 'l-1' }],
      }),
    );
    const user = created.User!;
    expect(user.UserName).toBe('alice');
    expect(user.Path).toBe('/tessera/');
    expect(user.Arn).toBe('arn:aws:iam::123456789012:user/tessera/alice');
    expect(user.UserId).toMatch(/^AIDA[A-Z0-9]{17}$/);
    expect(user.CreateDate).toBeInstanceOf(Date);
    expect(Math.abs(user.CreateDate!.getTime() - Date.now())).toBeLessThan(5000);
    expect(user.PermissionsBoundary).toEqual({
      PermissionsBoundaryType: 'PermissionsBoundaryPolicy',
      PermissionsBoundaryArn: 'arn:aws:iam::123456789012:policy/boundary',
    });
    expect(user.Tags).toEqual([
      { Key: 'owner', Value: `<a & "b" 'c'>` },
      { Key: 'lease', Value: 'l-1' },
    ]);
    expect(created.$metadata.httpStatusCode).toBe(200);
    expect(created.$metadata.requestId).toMatch(/^[0-9a-f-]{36}$/);
    expect(server.hasUser('alice')).toBe(true);

    const got = await iam.send(new GetUserCommand({ UserName: 'alice' }));
    expect(got.User).toEqual(user);

    const deleted = await iam.send(new DeleteUserCommand({ UserName: 'alice' }));
    expect(deleted.$metadata.httpStatusCode).toBe(200);
    expect(server.hasUser('alice')).toBe(false);
    expect(server.calls).toEqual(['CreateUser', 'GetUser', 'DeleteUser']);
  });

  it('defaults Path to "/" and rejects invalid user names with ValidationError', async () => {
    const { User } = await iam.send(new CreateUserCommand({ UserName: 'bob+ops@example.com' }));
    expect(User!.Path).toBe('/');
    expect(User!.Arn).toBe('arn:aws:iam::123456789012:user/bob+ops@example.com');
    expect(User!.Tags).toBeUndefined();

    await expect(iam.send(new CreateUserCommand({ UserName: 'has space' }))).rejects.toMatchObject({
      name: 'ValidationError',
      $metadata: { httpStatusCode: 400 },
    });
    await expect(iam.send(new CreateUserCommand({ UserName: 'x'.repeat(65) }))).rejects.toMatchObject({
      name: 'ValidationError',
    });
    expect(server.hasUser('has space')).toBe(false);
  });

  it('refuses a duplicate user (names are case-insensitive) with EntityAlreadyExists', async () => {
    await iam.send(new CreateUserCommand({ UserName: 'carol' }));
    for (const name of ['carol', 'CAROL']) {
      await expect(iam.send(new CreateUserCommand({ UserName: name }))).rejects.toMatchObject({
        name: 'EntityAlreadyExistsException',
        Error: { Code: 'EntityAlreadyExists', Type: 'Sender' },
        $fault: 'client',
        $metadata: { httpStatusCode: 409 },
      });
    }
  });

  it('reports a missing user with NoSuchEntity', async () => {
    const err = await iam.send(new GetUserCommand({ UserName: 'ghost' })).catch((e: unknown) => e);
    expect(err).toMatchObject({
      name: 'NoSuchEntityException',
      message: 'The user with name ghost cannot be found.',
      Error: { Code: 'NoSuchEntity' },
      $metadata: { httpStatusCode: 404 },
    });
    expect((err as { $metadata: { requestId?: string } }).$metadata.requestId).toMatch(/^[0-9a-f-]{36}$/);
    await expect(iam.send(new DeleteUserCommand({ UserName: 'ghost' }))).rejects.toMatchObject({ name: 'NoSuchEntityException' });
    await expect(iam.send(new CreateAccessKeyCommand({ UserName: 'ghost' }))).rejects.toMatchObject({ name: 'NoSuchEntityException' });
  });

  it('allows two access keys per user and refuses a third with LimitExceeded', async () => {
    await iam.send(new CreateUserCommand({ UserName: 'dave' }));
    const first = (await iam.send(new CreateAccessKeyCommand({ UserName: 'dave' }))).AccessKey!;
    const second = (await iam.send(new CreateAccessKeyCommand({ UserName: 'dave' }))).AccessKey!;
    for (const key of [first, second]) {
      expect(key.UserName).toBe('dave');
      expect(key.AccessKeyId).toMatch(/^AKIA[A-Z0-9]{16}$/);
      expect(key.SecretAccessKey).toHaveLength(40);
      expect(key.Status).toBe('Active');
      expect(key.CreateDate).toBeInstanceOf(Date);
    }
    expect(first.AccessKeyId).not.toBe(second.AccessKeyId);

    // The SDK classes LimitExceededException as a throttling error, so it retries it (3 attempts by default).
    await expect(iam.send(new CreateAccessKeyCommand({ UserName: 'dave' }))).rejects.toMatchObject({
      name: 'LimitExceededException',
      message: 'Cannot exceed quota for AccessKeysPerUser: 2',
      Error: { Code: 'LimitExceeded' },
      $metadata: { httpStatusCode: 409, attempts: 3 },
    });
    expect(server.calls.filter((c) => c === 'CreateAccessKey')).toHaveLength(2 + 3);
    expect(server.accessKeys('dave')).toHaveLength(2);

    await iam.send(new UpdateAccessKeyCommand({ UserName: 'dave', AccessKeyId: first.AccessKeyId!, Status: 'Inactive' }));
    expect(server.accessKeys('dave')).toContainEqual({ id: first.AccessKeyId, status: 'Inactive' });
    await iam.send(new DeleteAccessKeyCommand({ UserName: 'dave', AccessKeyId: first.AccessKeyId! }));
    await expect(
      iam.send(new DeleteAccessKeyCommand({ UserName: 'dave', AccessKeyId: first.AccessKeyId! })),
    ).rejects.toMatchObject({ name: 'NoSuchEntityException' });
    const third = await iam.send(new CreateAccessKeyCommand({ UserName: 'dave' }));
    expect(server.accessKeys('dave').map((k) => k.id).sort()).toEqual([second.AccessKeyId, third.AccessKey!.AccessKeyId].sort());
  });

  it('refuses DeleteUser with DeleteConflict while a key, policy, attachment or group membership remains', async () => {
    await iam.send(new CreateUserCommand({ UserName: 'erin' }));
    server.createGroup('readers');
    const { AccessKey } = await iam.send(new CreateAccessKeyCommand({ UserName: 'erin' }));
    await iam.send(new PutUserPolicyCommand({ UserName: 'erin', PolicyName: 'inline', PolicyDocument: '{"Version":"2012-10-17","Statement":[]}' }));
    await iam.send(new AttachUserPolicyCommand({ UserName: 'erin', PolicyArn: READONLY_ARN }));
    await iam.send(new AddUserToGroupCommand({ UserName: 'erin', GroupName: 'readers' }));

    const expectConflict = async (what: string): Promise<void> => {
      await expect(iam.send(new DeleteUserCommand({ UserName: 'erin' }))).rejects.toMatchObject({
        name: 'DeleteConflictException',
        message: `Cannot delete entity, must ${what} first.`,
        Error: { Code: 'DeleteConflict' },
        $metadata: { httpStatusCode: 409 },
      });
      expect(server.hasUser('erin')).toBe(true);
    };

    await expectConflict('delete access keys');
    await iam.send(new DeleteAccessKeyCommand({ UserName: 'erin', AccessKeyId: AccessKey!.AccessKeyId! }));
    await expectConflict('delete policies');
    await iam.send(new DeleteUserPolicyCommand({ UserName: 'erin', PolicyName: 'inline' }));
    await expectConflict('detach all policies');
    await iam.send(new DetachUserPolicyCommand({ UserName: 'erin', PolicyArn: READONLY_ARN }));
    await expectConflict('remove users from group');
    await iam.send(new RemoveUserFromGroupCommand({ UserName: 'erin', GroupName: 'readers' }));

    await iam.send(new DeleteUserCommand({ UserName: 'erin' }));
    expect(server.hasUser('erin')).toBe(false);
  });

  it('paginates ListUsers with paginateListUsers and ListAccessKeys with Marker', async () => {
    const empty = await iam.send(new ListUsersCommand({}));
    expect(empty.Users).toEqual([]);
    expect(empty.IsTruncated).toBe(false);

    const names = ['u1', 'u2', 'u3', 'u4', 'u5'];
    for (const UserName of names) await iam.send(new CreateUserCommand({ UserName }));
    const pages: string[][] = [];
    for await (const page of paginateListUsers({ client: iam, pageSize: 2 }, {})) {
      pages.push(page.Users!.map((u) => u.UserName!));
    }
    expect(pages.map((p) => p.length)).toEqual([2, 2, 1]);
    const seen = pages.flat();
    expect(new Set(seen).size).toBe(5);
    expect(seen.sort()).toEqual(names);
    expect(server.calls.filter((c) => c === 'ListUsers')).toHaveLength(4);

    const keyIds: string[] = [];
    for (let i = 0; i < 2; i++) keyIds.push((await iam.send(new CreateAccessKeyCommand({ UserName: 'u1' }))).AccessKey!.AccessKeyId!);
    const p1 = await iam.send(new ListAccessKeysCommand({ UserName: 'u1', MaxItems: 1 }));
    expect(p1.AccessKeyMetadata).toHaveLength(1);
    expect(p1.IsTruncated).toBe(true);
    expect(typeof p1.Marker).toBe('string');
    expect(p1.Marker!.length).toBeGreaterThan(0);
    const p2 = await iam.send(new ListAccessKeysCommand({ UserName: 'u1', MaxItems: 1, Marker: p1.Marker }));
    expect(p2.AccessKeyMetadata).toHaveLength(1);
    expect(p2.IsTruncated).toBe(false);
    expect(p2.Marker).toBeUndefined();
    const listed = [...p1.AccessKeyMetadata!, ...p2.AccessKeyMetadata!];
    expect(listed.map((k) => k.AccessKeyId).sort()).toEqual(keyIds.sort());
    expect(listed.every((k) => k.UserName === 'u1' && k.Status === 'Active' && k.CreateDate instanceof Date)).toBe(true);
  });

  it('round-trips an inline policy document with quotes and unicode through GetUserPolicy', async () => {
    await iam.send(new CreateUserCommand({ UserName: 'frank' }));
    const doc = JSON.stringify(
      {
        Version: '2012-10-17',
        Statement: [{ Sid: 'Quote"d', Effect: 'Allow', Action: 's3:GetObject', Resource: 'arn:aws:s3:::b/ü 日本 🚀 & <x> +%20', Condition: { StringEquals: { 'aws:PrincipalTag/k': "it's" } } }],
      },
      null,
      2,
    );
    await iam.send(new PutUserPolicyCommand({ UserName: 'frank', PolicyName: 'p1', PolicyDocument: doc }));

    const got = await iam.send(new GetUserPolicyCommand({ UserName: 'frank', PolicyName: 'p1' }));
    expect(got.UserName).toBe('frank');
    expect(got.PolicyName).toBe('p1');
    expect(got.PolicyDocument).not.toBe(doc); // IAM returns it URL-encoded
    expect(got.PolicyDocument).not.toMatch(/[" ü]/);
    expect(decodeURIComponent(got.PolicyDocument!)).toBe(doc);
    expect(server.policyDocument('frank', 'p1')).toEqual(JSON.parse(doc));

    const listed = await iam.send(new ListUserPoliciesCommand({ UserName: 'frank' }));
    expect(listed.PolicyNames).toEqual(['p1']);
    expect(server.userPolicies('frank')).toEqual(['p1']);

    await expect(
      iam.send(new PutUserPolicyCommand({ UserName: 'frank', PolicyName: 'bad', PolicyDocument: '{not json' })),
    ).rejects.toMatchObject({ name: 'MalformedPolicyDocumentException', $metadata: { httpStatusCode: 400 } });
    await expect(iam.send(new GetUserPolicyCommand({ UserName: 'frank', PolicyName: 'nope' }))).rejects.toMatchObject({
      name: 'NoSuchEntityException',
    });
  });

  it('validates managed policy ARNs and lists attachments and groups', async () => {
    await iam.send(new CreateUserCommand({ UserName: 'gina' }));
    await expect(iam.send(new AttachUserPolicyCommand({ UserName: 'gina', PolicyArn: 'ReadOnlyAccess' }))).rejects.toMatchObject({
      name: 'InvalidInputException',
      $metadata: { httpStatusCode: 400 },
    });
    await expect(iam.send(new DetachUserPolicyCommand({ UserName: 'gina', PolicyArn: READONLY_ARN }))).rejects.toMatchObject({
      name: 'NoSuchEntityException',
    });
    await iam.send(new AttachUserPolicyCommand({ UserName: 'gina', PolicyArn: READONLY_ARN }));
    const attached = await iam.send(new ListAttachedUserPoliciesCommand({ UserName: 'gina' }));
    expect(attached.AttachedPolicies).toEqual([{ PolicyName: 'ReadOnlyAccess', PolicyArn: READONLY_ARN }]);
    expect(server.attachedPolicies('gina')).toEqual([READONLY_ARN]);

    await expect(iam.send(new AddUserToGroupCommand({ UserName: 'gina', GroupName: 'nogroup' }))).rejects.toMatchObject({
      name: 'NoSuchEntityException',
    });
    server.createGroup('g1');
    server.createGroup('g2');
    await iam.send(new AddUserToGroupCommand({ UserName: 'gina', GroupName: 'g1' }));
    await iam.send(new AddUserToGroupCommand({ UserName: 'gina', GroupName: 'g2' }));
    const page = await iam.send(new ListGroupsForUserCommand({ UserName: 'gina', MaxItems: 1 }));
    expect(page.Groups).toHaveLength(1);
    expect(page.Groups![0]).toMatchObject({ GroupName: 'g1', Path: '/', Arn: 'arn:aws:iam::123456789012:group/g1' });
    expect(page.IsTruncated).toBe(true);
    expect(server.groupsOf('gina')).toEqual(['g1', 'g2']);
  });
});

describe('IamTestServer via @aws-sdk/client-sts', () => {
  it('identifies a user by a fresh access key and rejects a deleted one with InvalidClientTokenId', async () => {
    const { User } = await iam.send(new CreateUserCommand({ UserName: 'henry' }));
    const { AccessKey } = await iam.send(new CreateAccessKeyCommand({ UserName: 'henry' }));
    const creds = { accessKeyId: AccessKey!.AccessKeyId!, secretAccessKey: AccessKey!.SecretAccessKey! };

    const userSts = sts(creds);
    const who = await userSts.send(new GetCallerIdentityCommand({}));
    expect(who).toMatchObject({ UserId: User!.UserId, Account: '123456789012', Arn: User!.Arn });

    const admin = await sts(ADMIN).send(new GetCallerIdentityCommand({}));
    expect(admin.Account).toBe('123456789012');
    expect(admin.Arn).toBe('arn:aws:iam::123456789012:user/tessera-admin');

    await iam.send(new DeleteAccessKeyCommand({ UserName: 'henry', AccessKeyId: creds.accessKeyId }));
    await expect(userSts.send(new GetCallerIdentityCommand({}))).rejects.toMatchObject({
      name: 'InvalidClientTokenId',
      message: 'The security token included in the request is invalid.',
      $fault: 'client',
      $metadata: { httpStatusCode: 403 },
    });
    await expect(sts({ accessKeyId: 'AKIANEVERISSUED00000', secretAccessKey: 'y' }).send(new GetCallerIdentityCommand({}))).rejects.toMatchObject({
      name: 'InvalidClientTokenId',
    });
  });

  it('rejects an inactive key', async () => {
    await iam.send(new CreateUserCommand({ UserName: 'ivy' }));
    const { AccessKey } = await iam.send(new CreateAccessKeyCommand({ UserName: 'ivy' }));
    await iam.send(new UpdateAccessKeyCommand({ UserName: 'ivy', AccessKeyId: AccessKey!.AccessKeyId!, Status: 'Inactive' }));
    const client = sts({ accessKeyId: AccessKey!.AccessKeyId!, secretAccessKey: AccessKey!.SecretAccessKey! });
    await expect(client.send(new GetCallerIdentityCommand({}))).rejects.toMatchObject({ name: 'InvalidClientTokenId' });
  });
});

describe('IamTestServer failure injection and wire format', () => {
  it('failNext fails exactly one call of the action', async () => {
    await iam.send(new CreateUserCommand({ UserName: 'jack' }));
    server.failNext('GetUser', 'NoSuchEntity', 'injected');
    await expect(iam.send(new GetUserCommand({ UserName: 'jack' }))).rejects.toMatchObject({
      name: 'NoSuchEntityException',
      message: 'injected',
      $metadata: { httpStatusCode: 404 },
    });
    const again = await iam.send(new GetUserCommand({ UserName: 'jack' }));
    expect(again.User!.UserName).toBe('jack');
    expect(server.calls).toEqual(['CreateUser', 'GetUser', 'GetUser']);
  });

  it('a transient failNext is retried by the SDK; failAlways persists until cleared', async () => {
    server.failNext('CreateUser', 'ServiceUnavailable');
    const { User } = await iam.send(new CreateUserCommand({ UserName: 'kate' }));
    expect(User!.UserName).toBe('kate');
    expect(server.calls).toEqual(['CreateUser', 'CreateUser']);

    const once = new IAMClient({ region: 'us-east-1', endpoint, credentials: ADMIN, maxAttempts: 1 });
    try {
      server.failAlways('GetUser', 'ServiceUnavailable');
      for (let i = 0; i < 2; i++) {
        await expect(once.send(new GetUserCommand({ UserName: 'kate' }))).rejects.toMatchObject({
          name: 'ServiceUnavailable',
          $fault: 'server',
          $metadata: { httpStatusCode: 503 },
        });
      }
      server.failAlways('GetUser', null);
      expect((await once.send(new GetUserCommand({ UserName: 'kate' }))).User!.UserName).toBe('kate');
    } finally {
      once.destroy();
    }
  });

  it('answers in IAM XML, omits Result for result-less actions, and rejects unknown actions', async () => {
    const created = await raw({ Action: 'CreateUser', Version: '2010-05-08', UserName: 'liam' });
    expect(created.status).toBe(200);
    expect(created.body).toMatch(
      /^<CreateUserResponse xmlns="https:\/\/iam\.amazonaws\.com\/doc\/2010-05-08\/"><CreateUserResult><User><Path>\/<\/Path><UserName>liam<\/UserName>.*<\/User><\/CreateUserResult><ResponseMetadata><RequestId>[0-9a-f-]{36}<\/RequestId><\/ResponseMetadata><\/CreateUserResponse>$/,
    );
    const deleted = await raw({ Action: 'DeleteUser', Version: '2010-05-08', UserName: 'liam' });
    expect(deleted.body).toMatch(/^<DeleteUserResponse xmlns="[^"]+"><ResponseMetadata><RequestId>[0-9a-f-]{36}<\/RequestId><\/ResponseMetadata><\/DeleteUserResponse>$/);

    const unknown = await raw({ Action: 'CreateInstanceProfile', Version: '2010-05-08', InstanceProfileName: 'p' });
    expect(unknown.status).toBe(400);
    expect(unknown.body).toMatch(
      /^<ErrorResponse xmlns="https:\/\/iam\.amazonaws\.com\/doc\/2010-05-08\/"><Error><Type>Sender<\/Type><Code>InvalidAction<\/Code><Message>[^<]+<\/Message><\/Error><RequestId>[0-9a-f-]{36}<\/RequestId><\/ErrorResponse>$/,
    );
    const stsError = await raw({ Action: 'GetCallerIdentity', Version: '2011-06-15' });
    expect(stsError.status).toBe(403);
    expect(stsError.body).toContain('<ErrorResponse xmlns="https://sts.amazonaws.com/doc/2011-06-15/">');
    expect(stsError.body).toContain('<Code>InvalidClientTokenId</Code>');
  });
});
