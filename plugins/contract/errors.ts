/**
 * Errors a plugin throws. `retryable` tells the broker whether trying again later can help (the target
 * is down, a lock timed out) or not (the role's grants name a database object that does not exist).
 * Messages must never contain a password: plugins build them from codes and names only.
 */
export class PluginError extends Error {
  constructor(
    message: string,
    readonly retryable: boolean,
    readonly code: string = retryable ? 'target_unavailable' : 'target_rejected',
  ) {
    super(message);
    this.name = 'PluginError';
  }
}

export class AccountNotFoundError extends PluginError {
  constructor(username: string) {
    super(`account ${username} does not exist on the target`, false, 'account_not_found');
  }
}
