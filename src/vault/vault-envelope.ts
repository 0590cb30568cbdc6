/** Vault's response envelope (DESIGN §11); every success carries every field. */
export interface VaultEnvelope {
  request_id: string;
  lease_id: string;
  renewable: boolean;
  lease_duration: number;
  data: Record<string, unknown> | null;
  wrap_info: null;
  warnings: string[] | null;
  auth: Record<string, unknown> | null;
  mount_type?: string;
}

export function envelope(requestId: string, fields: Partial<Omit<VaultEnvelope, 'request_id' | 'wrap_info'>> = {}): VaultEnvelope {
  return {
    request_id: requestId,
    lease_id: fields.lease_id ?? '',
    renewable: fields.renewable ?? false,
    lease_duration: fields.lease_duration ?? 0,
    data: fields.data ?? null,
    wrap_info: null,
    warnings: fields.warnings ?? null,
    auth: fields.auth ?? null,
    ...(fields.mount_type !== undefined ? { mount_type: fields.mount_type } : {}),
  };
}

/** Whole seconds from `now` until `at`, never negative. */
export function secondsUntil(at: Date | string, now: Date): number {
  return Math.max(0, Math.round((new Date(at).getTime() - now.getTime()) / 1000));
}

/** Vault's duration strings in warnings: "3600s". */
export const vaultSeconds = (s: number) => `${s}s`;
