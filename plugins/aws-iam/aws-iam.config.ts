import { z } from 'zod';
import { durationSeconds } from '../contract';

const arn = z.string().regex(/^arn:aws[a-z-]*:iam::(aws|\d{12}):policy\/[\w+=,.@/-]{1,512}$/, 'must be an IAM policy ARN');

export const awsIamConnectionSchema = z
  .object({
    region: z.string().regex(/^[a-z]{2}(-[a-z]+)+-\d$/, 'must be an AWS region such as us-east-1'),
    /** IAM (and STS) endpoint for LocalStack, moto or a test server; AWS itself when absent. */
    endpoint: z.string().url().optional(),
    /** Any non-empty id: AWS's own are 16-128 characters, but emulators (moto, LocalStack) take `test` or `testing`. */
    access_key_id: z.string().min(1).max(128).optional(),
    secret_access_key: z.string().min(1).optional(),
    /** IAM path of the users Tessera creates: marks them as Tessera's. */
    path: z.string().regex(/^\/([\w+=,.@-]+\/)*$/, 'must be an IAM path such as /tessera/').default('/tessera/'),
    /** Wait after issuing until the new key is usable (IAM keys take seconds to propagate). */
    wait_for_key: z.boolean().default(false),
    key_wait_timeout: durationSeconds.default(30),
    /** A user missing this soon after it was created is "not visible yet", not "gone". */
    consistency_window: durationSeconds.default(300),
    max_attempts: z.number().int().min(1).max(10).default(3),
  })
  .strict()
  .refine((c) => Boolean(c.access_key_id) === Boolean(c.secret_access_key), {
    message: 'give both access_key_id and secret_access_key, or neither (then the default AWS credential chain is used)',
  });
export type AwsIamConnectionConfig = z.infer<typeof awsIamConnectionSchema>;

/** An IAM policy document: built as an object in the config and serialised, never spliced as text. */
const policyDocument = z
  .object({
    Version: z.enum(['2012-10-17', '2008-10-17']),
    Statement: z.union([z.array(z.record(z.string(), z.unknown())).min(1), z.record(z.string(), z.unknown())]),
  })
  .passthrough()
  .refine((doc) => JSON.stringify(doc).length <= 2048, 'an inline user policy must serialise to at most 2048 characters');

const roleArn = z
  .string()
  .regex(/^arn:aws[a-z-]*:iam::\d{12}:role\/([\x21-\x7e]*\/)?[\w+=,.@-]{1,64}$/, 'must be an IAM role ARN such as arn:aws:iam::123456789012:role/deploy');

/** STS's limits, in seconds: AssumeRole lasts 900 s up to the role's MaxSessionDuration; GetFederationToken up to 36 h. */
export const STS_MIN_SECONDS = 900;
export const STS_FEDERATION_MAX_SECONDS = 36 * 3600;

/** `iam_user` (the default): an IAM user with an access key per lease. */
const iamUserRole = z
  .object({
    credential_type: z.literal('iam_user'),
    inline_policy: policyDocument.optional(),
    policy_arns: z.array(arn).default([]),
    groups: z.array(z.string().regex(/^[\w+=,.@-]{1,128}$/, 'must be an IAM group name')).default([]),
    permissions_boundary: arn.optional(),
  })
  .strict();

/** `assumed_role`: temporary credentials from sts:AssumeRole on the first of `role_arns`. */
const assumedRole = z
  .object({
    credential_type: z.literal('assumed_role'),
    role_arns: z.array(roleArn).min(1, 'an assumed_role role needs at least one role ARN'),
    /** Narrows the role's permissions for the session (an inline session policy). */
    session_policy: policyDocument.optional(),
    external_id: z.string().regex(/^[\w+=,.@:/-]{2,1224}$/, 'must be 2-1224 characters of [A-Za-z0-9+=,.@:/_-]').optional(),
    /** The IAM role's MaxSessionDuration (1h-12h): the longest TTL its leases can have. */
    max_session_duration: durationSeconds.pipe(z.number().int().min(3600, 'must be at least 1h').max(43200, 'must be at most 12h')).default(3600),
  })
  .strict();

/** `federation_token`: temporary credentials from sts:GetFederationToken, limited to `policy`. */
const federationRole = z
  .object({
    credential_type: z.literal('federation_token'),
    policy: policyDocument,
  })
  .strict();

const roleUnion = z.discriminatedUnion('credential_type', [iamUserRole, assumedRole, federationRole]);

export const awsIamRoleSchema = z.preprocess(
  (v) => (v && typeof v === 'object' && !Array.isArray(v) && !('credential_type' in v) ? { ...v, credential_type: 'iam_user' } : v),
  roleUnion,
);
export type AwsIamRoleSettings = z.infer<typeof roleUnion>;
export type IamUserRoleSettings = z.infer<typeof iamUserRole>;
export type AssumedRoleSettings = z.infer<typeof assumedRole>;
export type FederationRoleSettings = z.infer<typeof federationRole>;
export type StsRoleSettings = AssumedRoleSettings | FederationRoleSettings;
