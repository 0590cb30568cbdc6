/**
 * Schema migrations of the state database, applied in order, each once, under an advisory lock so
 * several replicas starting together do not race. Append only: never edit a released migration.
 */
export interface Migration {
  version: number;
  name: string;
  sql: string;
}

export const MIGRATIONS: readonly Migration[] = [
  {
    version: 1,
    name: 'leases and audit',
    sql: `
      CREATE TABLE leases (
        id              text PRIMARY KEY,
        role            text NOT NULL,
        connection      text NOT NULL,
        plugin          text NOT NULL,
        account         text NOT NULL,
        owner           text NOT NULL,
        owner_issuer    text NOT NULL,
        run_id          text,
        state           text NOT NULL CHECK (state IN ('pending','active','revoking','revoked','failed','revoke_failed')),
        -- Millisecond precision, so a list cursor (which carries it) round-trips exactly.
        created_at      timestamptz NOT NULL DEFAULT date_trunc('milliseconds', now()),
        updated_at      timestamptz NOT NULL DEFAULT now(),
        expires_at      timestamptz NOT NULL,
        max_expires_at  timestamptz NOT NULL,
        -- Set when the credential became live; a lease revoked without it ends as 'failed', not 'revoked'.
        activated_at    timestamptz,
        revoked_at      timestamptz,
        last_error      text
      );
      -- The reconciler's sweeps touch only leases that still need work.
      CREATE INDEX leases_open_by_expiry ON leases (expires_at) WHERE state IN ('active','revoking','revoke_failed');
      CREATE INDEX leases_pending ON leases (created_at) WHERE state = 'pending';
      CREATE INDEX leases_by_owner ON leases (owner, owner_issuer, created_at DESC, id DESC);
      CREATE INDEX leases_by_created ON leases (created_at DESC, id DESC);
      CREATE INDEX leases_by_role_state ON leases (role, state);
      CREATE INDEX leases_by_run ON leases (run_id) WHERE run_id IS NOT NULL;

      -- Each event's hash covers the previous event's hash and the event's canonical text, so an edited
      -- or deleted event breaks the chain. audit_head serialises appends and holds the newest hash.
      CREATE TABLE audit_events (
        id         bigserial PRIMARY KEY,
        at         timestamptz NOT NULL,
        type       text NOT NULL,
        actor      text,
        lease_id   text,
        body       text NOT NULL,
        prev_hash  bytea NOT NULL,
        hash       bytea NOT NULL
      );
      CREATE INDEX audit_events_at ON audit_events (at);
      CREATE TABLE audit_head (
        id    int PRIMARY KEY CHECK (id = 1),
        hash  bytea NOT NULL
      );
      INSERT INTO audit_head VALUES (1, '\\x0000000000000000000000000000000000000000000000000000000000000000');
    `,
  },
  {
    version: 2,
    name: 'broker keys and bootstrap secrets',
    sql: `
      -- The broker's own signing keys (for tokens it hands legacy apps), sealed with the master key.
      CREATE TABLE broker_keys (
        kid         text PRIMARY KEY,
        key_id      text NOT NULL,
        sealed      bytea NOT NULL,
        public_jwk  jsonb NOT NULL,
        created_at  timestamptz NOT NULL DEFAULT now()
      );
      -- Bootstrap secrets are stored only as a SHA-256 hash.
      CREATE TABLE bootstrap_secrets (
        id          text PRIMARY KEY,
        hash        bytea NOT NULL,
        subject     text NOT NULL,
        created_by  text NOT NULL,
        created_at  timestamptz NOT NULL DEFAULT now(),
        expires_at  timestamptz NOT NULL,
        uses_left   int NOT NULL CHECK (uses_left >= 0)
      );
    `,
  },
  {
    version: 3,
    name: 'static secrets and rotations',
    sql: `
      CREATE TABLE static_secrets (
        name              text PRIMARY KEY,
        connection        text NOT NULL,
        status            text NOT NULL DEFAULT 'unowned' CHECK (status IN ('unowned','active','rotation_failed')),
        current_version   int,
        rotated_at        timestamptz,
        next_rotation_at  timestamptz,
        last_error        text,
        updated_at        timestamptz NOT NULL DEFAULT now()
      );
      -- One row per version. The credentials are sealed (AES-256-GCM, key id beside them), bound to
      -- (name, version). A 'pending' version is the write-ahead intent of a rotation in progress.
      CREATE TABLE static_versions (
        name          text NOT NULL REFERENCES static_secrets(name),
        version       int NOT NULL,
        account       text NOT NULL,
        key_id        text NOT NULL,
        sealed        bytea NOT NULL,
        handle        text,
        state         text NOT NULL CHECK (state IN ('pending','current','previous','retired','abandoned')),
        created_at    timestamptz NOT NULL DEFAULT now(),
        promoted_at   timestamptz,
        retire_after  timestamptz,
        PRIMARY KEY (name, version)
      );
      -- At most one rotation of a secret in flight: the pending version is the lock.
      CREATE UNIQUE INDEX static_versions_one_pending ON static_versions (name) WHERE state = 'pending';
      CREATE UNIQUE INDEX static_versions_one_current ON static_versions (name) WHERE state = 'current';
      CREATE INDEX static_versions_to_retire ON static_versions (retire_after) WHERE state = 'previous';

      CREATE TABLE rotations (
        id              text PRIMARY KEY,
        name            text NOT NULL REFERENCES static_secrets(name),
        target_version  int NOT NULL,
        trigger         text NOT NULL,
        reason          text,
        requested_by    text,
        status          text NOT NULL CHECK (status IN ('queued','running','succeeded','failed')),
        steps           jsonb NOT NULL DEFAULT '[]',
        error           text,
        created_at      timestamptz NOT NULL DEFAULT now(),
        finished_at     timestamptz
      );
      CREATE INDEX rotations_by_target ON rotations (name, target_version);
    `,
  },
  {
    version: 4,
    name: 'exposure and webhook replays',
    sql: `
      -- Set when a secret is reported exposed (emergency or secret.exposed); cleared only once every
      -- credential that existed before it is destroyed and its sessions ended.
      ALTER TABLE static_secrets ADD COLUMN exposed_at timestamptz;
      -- Webhook signatures already accepted, kept past the timestamp window so a replay is refused.
      CREATE TABLE event_signatures (
        digest      bytea PRIMARY KEY,
        expires_at  timestamptz NOT NULL
      );
      CREATE INDEX event_signatures_expiry ON event_signatures (expires_at);
    `,
  },
  {
    version: 5,
    name: 'keyed audit chain, issuer locks, per-owner cap, lease error codes',
    sql: `
      -- Each event's hash becomes an HMAC-SHA256 keyed from the master key; key_id names that key.
      -- Events written before keep key_id NULL and their plain SHA-256 links (a prefix verify accepts).
      ALTER TABLE audit_events ADD COLUMN key_id text;
      -- The head's seal is an HMAC of the newest hash, so events cannot be cut off the end unnoticed.
      ALTER TABLE audit_head ADD COLUMN key_id text, ADD COLUMN seal bytea;
      -- A pending lease names the session advisory lock its issuing process holds: when nobody holds
      -- it, the process is gone and the lease was abandoned, whatever its age.
      ALTER TABLE leases ADD COLUMN issuer_lock integer;
      -- last_error's stable code: the owner sees the code, operators also the target's text.
      ALTER TABLE leases ADD COLUMN last_error_code text;
      -- limits.max_active_leases_per_owner counts only an owner's live leases.
      CREATE INDEX leases_live_by_owner ON leases (owner, owner_issuer) WHERE state IN ('pending','active');
    `,
  },
  {
    version: 6,
    name: 'audit heartbeats',
    sql: `
      -- Every heartbeat tick looks up the newest audit.heartbeat event.
      CREATE INDEX audit_events_heartbeats ON audit_events (id) WHERE type = 'audit.heartbeat';
    `,
  },
  {
    version: 7,
    name: 'lease revoke reason',
    sql: `
      -- Why a lease is being revoked, recorded by the move to revoking, so whoever finishes the
      -- revocation (the API, a job, the reconciler after Redis lost the job) audits it as what it is.
      ALTER TABLE leases ADD COLUMN revoke_reason text
        CHECK (revoke_reason IN ('expired','revoked','bulk','owner','abandoned','issue_failed'));
      -- Revocations in flight get the reason the broker used to infer from their timestamps.
      UPDATE leases SET revoke_reason = CASE WHEN activated_at IS NULL THEN 'abandoned'
                                             WHEN expires_at <= updated_at THEN 'expired' ELSE 'revoked' END
       WHERE state IN ('revoking','revoke_failed');
    `,
  },
  {
    version: 8,
    name: 'sharded audit chain',
    sql: `
      -- The audit trail becomes several independent keyed chains (shards), each with its own head row
      -- (audit_head.id is the shard), so appends lock one head of many. Existing events and the
      -- existing head are shard 1; the broker creates heads 2..audit.shards at start-up.
      ALTER TABLE audit_head DROP CONSTRAINT IF EXISTS audit_head_id_check;
      ALTER TABLE audit_head ADD CONSTRAINT audit_head_shard CHECK (id >= 1);
      ALTER TABLE audit_events ADD COLUMN shard integer NOT NULL DEFAULT 1;
      -- Every writer names its shard.
      ALTER TABLE audit_events ALTER COLUMN shard DROP DEFAULT;
      -- Verify walks each shard in id order; heartbeat ticks look up each shard's newest heartbeat.
      CREATE INDEX audit_events_by_shard ON audit_events (shard, id);
      DROP INDEX IF EXISTS audit_events_heartbeats;
      CREATE INDEX audit_events_heartbeats_by_shard ON audit_events (shard, id) WHERE type = 'audit.heartbeat';
    `,
  },
  {
    version: 9,
    name: 'vault client tokens',
    sql: `
      -- Client tokens of the Vault-compatible API (DESIGN §11): only a keyed hash of the secret part is
      -- stored. They carry who logged in (subject, issuer, the JWT's claims for claim-matching policy
      -- rules), never a decision: policy is evaluated at each request.
      CREATE TABLE vault_tokens (
        id text PRIMARY KEY,
        hash bytea NOT NULL,
        subject text NOT NULL,
        issuer text NOT NULL,
        claims jsonb NOT NULL,
        created_at timestamptz NOT NULL DEFAULT now(),
        renewed_at timestamptz,
        expires_at timestamptz NOT NULL,
        max_expires_at timestamptz NOT NULL,
        revoked_at timestamptz
      );
      CREATE INDEX vault_tokens_expiry ON vault_tokens (expires_at);
      -- Only with vault.revoke_leases_with_token: the leases a token issued, revoked with it.
      CREATE TABLE vault_token_leases (
        token_id text NOT NULL REFERENCES vault_tokens (id) ON DELETE CASCADE,
        lease_id text NOT NULL,
        PRIMARY KEY (token_id, lease_id)
      );
    `,
  },
  {
    version: 11,
    name: 'leases say whether revoking removes the credential',
    sql: `
      -- False for credentials the target cannot withdraw one by one (STS sessions): revoking such a lease
      -- ends its record and never calls the target, even after its role left the config.
      ALTER TABLE leases ADD COLUMN revocable boolean NOT NULL DEFAULT true;
    `,
  },
  {
    version: 10,
    name: 'operator console sessions',
    sql: `
      -- (Version 10 was taken by this migration before 11 was merged: versions are ids, not an order.)
      -- The operator console's sign-ins (DESIGN §12). A sign-in under way is keyed by a hash of the
      -- random value in the browser's short-lived login cookie, which binds the OIDC callback to the
      -- browser that started it; it holds the state, nonce and PKCE verifier, and is used once.
      CREATE TABLE console_logins (
        id_hash bytea PRIMARY KEY,
        state text NOT NULL,
        nonce text NOT NULL,
        code_verifier text NOT NULL,
        created_at timestamptz NOT NULL DEFAULT now(),
        expires_at timestamptz NOT NULL
      );
      -- Signed-in operators: only a hash of the session id (the cookie's value) is stored.
      CREATE TABLE console_sessions (
        id_hash bytea PRIMARY KEY,
        subject text NOT NULL,
        issuer text NOT NULL,
        display_name text,
        csrf_token text NOT NULL,
        created_at timestamptz NOT NULL DEFAULT now(),
        expires_at timestamptz NOT NULL
      );
      CREATE INDEX console_sessions_expiry ON console_sessions (expires_at);
      CREATE INDEX console_logins_expiry ON console_logins (expires_at);
    `,
  },
  {
    version: 12,
    name: 'active leases by connection and expiry',
    sql: `
      -- An expiry claim takes a connection's earliest due active leases (CLAIM_EXPIRED). Without an
      -- index in that order the planner sorted every due lease on each claim, so a mass expiry of n
      -- leases cost O(n) per batch of 200; with it a claim reads the 200 it takes.
      CREATE INDEX leases_active_by_connection ON leases (connection, expires_at) WHERE state = 'active';
    `,
  },
  {
    version: 13,
    name: 'late login sweeps',
    sql: `
      -- Sessions a replaced password can still open (a login begun before the change finishing after
      -- the sessions were ended: see LateLogins in the plugin contract), ended from due_at on and
      -- again at every sweep until until_at. Written right after the target ended the sessions;
      -- before is the target's clock then.
      CREATE TABLE late_login_sweeps (
        id          bigserial PRIMARY KEY,
        name        text NOT NULL,
        connection  text NOT NULL,
        account     text NOT NULL,
        before      text NOT NULL,
        due_at      timestamptz NOT NULL,
        until_at    timestamptz NOT NULL
      );
      CREATE INDEX late_login_sweeps_due ON late_login_sweeps (due_at);
    `,
  },
];
