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
];
