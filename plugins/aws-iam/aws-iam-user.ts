/** The full strip of an IAM user on revoke: everything attached to it, then the user. */
import {
  DeactivateMFADeviceCommand,
  DeleteAccessKeyCommand,
  DeleteLoginProfileCommand,
  DeleteSSHPublicKeyCommand,
  DeleteServiceSpecificCredentialCommand,
  DeleteSigningCertificateCommand,
  DeleteUserCommand,
  DeleteUserPolicyCommand,
  DetachUserPolicyCommand,
  IAMClient,
  ListServiceSpecificCredentialsCommand,
  RemoveUserFromGroupCommand,
  paginateListAccessKeys,
  paginateListAttachedUserPolicies,
  paginateListGroupsForUser,
  paginateListMFADevices,
  paginateListSSHPublicKeys,
  paginateListSigningCertificates,
  paginateListUserPolicies,
} from '@aws-sdk/client-iam';
import { awsErrorCode } from './aws-sts';

/** IAM's answer for a user, key or policy that is not there. */
export const isMissing = (err: unknown) => awsErrorCode(err) === 'NoSuchEntity';

/**
 * Removes the user and everything attached to it. Returns false when the user did not exist.
 * Each step tolerates "already gone", so a half-finished earlier attempt is simply continued.
 */
export async function stripUser(iam: IAMClient, UserName: string): Promise<boolean> {
  const ignoreMissing = (err: unknown) => {
    if (!isMissing(err)) throw err;
  };
  try {
    for await (const page of paginateListAccessKeys({ client: iam }, { UserName })) {
      for (const key of page.AccessKeyMetadata ?? []) {
        await iam.send(new DeleteAccessKeyCommand({ UserName, AccessKeyId: key.AccessKeyId })).catch(ignoreMissing);
      }
    }
  } catch (err) {
    if (isMissing(err)) return false;
    throw err;
  }
  for await (const page of paginateListUserPolicies({ client: iam }, { UserName })) {
    for (const PolicyName of page.PolicyNames ?? []) await iam.send(new DeleteUserPolicyCommand({ UserName, PolicyName })).catch(ignoreMissing);
  }
  for await (const page of paginateListAttachedUserPolicies({ client: iam }, { UserName })) {
    for (const p of page.AttachedPolicies ?? []) await iam.send(new DetachUserPolicyCommand({ UserName, PolicyArn: p.PolicyArn })).catch(ignoreMissing);
  }
  for await (const page of paginateListGroupsForUser({ client: iam }, { UserName })) {
    for (const g of page.Groups ?? []) await iam.send(new RemoveUserFromGroupCommand({ UserName, GroupName: g.GroupName })).catch(ignoreMissing);
  }
  // Every other way in that someone may have added to the user: a console password, SSH keys
  // (CodeCommit), service-specific credentials, signing certificates and MFA devices. Each also
  // blocks DeleteUser with DeleteConflict.
  await iam.send(new DeleteLoginProfileCommand({ UserName })).catch(ignoreMissing);
  for await (const page of paginateListSSHPublicKeys({ client: iam }, { UserName })) {
    for (const k of page.SSHPublicKeys ?? []) await iam.send(new DeleteSSHPublicKeyCommand({ UserName, SSHPublicKeyId: k.SSHPublicKeyId })).catch(ignoreMissing);
  }
  const { ServiceSpecificCredentials = [] } = await iam.send(new ListServiceSpecificCredentialsCommand({ UserName }));
  for (const c of ServiceSpecificCredentials) {
    await iam.send(new DeleteServiceSpecificCredentialCommand({ UserName, ServiceSpecificCredentialId: c.ServiceSpecificCredentialId })).catch(ignoreMissing);
  }
  for await (const page of paginateListSigningCertificates({ client: iam }, { UserName })) {
    for (const c of page.Certificates ?? []) await iam.send(new DeleteSigningCertificateCommand({ UserName, CertificateId: c.CertificateId })).catch(ignoreMissing);
  }
  for await (const page of paginateListMFADevices({ client: iam }, { UserName })) {
    for (const d of page.MFADevices ?? []) await iam.send(new DeactivateMFADeviceCommand({ UserName, SerialNumber: d.SerialNumber })).catch(ignoreMissing);
  }
  await iam.send(new DeleteUserCommand({ UserName })).catch(ignoreMissing);
  return true;
}
