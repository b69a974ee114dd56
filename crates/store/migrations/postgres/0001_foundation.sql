-- Foundation schema (PostgreSQL). Timestamps are BIGINT milliseconds since the Unix epoch (UTC);
-- ids are native UUIDs; lists and documents are JSON text.
CREATE TABLE users (
    id              UUID PRIMARY KEY,
    email           TEXT NOT NULL,
    name            TEXT,
    password_hash   TEXT NOT NULL,
    is_admin        BOOLEAN NOT NULL DEFAULT FALSE,
    operation_mode  TEXT,
    created_at      BIGINT NOT NULL,
    CONSTRAINT users_email_key UNIQUE (email)
);

CREATE TABLE revoked_tokens (
    jti         UUID PRIMARY KEY,
    user_id     UUID NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    expires_at  BIGINT NOT NULL
);
CREATE INDEX revoked_tokens_expires_at ON revoked_tokens (expires_at);

CREATE TABLE banks (
    id          UUID PRIMARY KEY,
    code        TEXT NOT NULL,
    name        TEXT NOT NULL,
    login_url   TEXT,
    status      TEXT NOT NULL DEFAULT 'active',
    created_at  BIGINT NOT NULL,
    CONSTRAINT banks_code_key UNIQUE (code)
);

CREATE TABLE accounts (
    id                      UUID PRIMARY KEY,
    user_id                 UUID NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    bank_id                 UUID NOT NULL REFERENCES banks (id),
    name                    TEXT NOT NULL,
    status                  TEXT NOT NULL DEFAULT 'active',
    scrape_blocked_at       BIGINT,
    scrape_blocked_reason   TEXT,
    created_at              BIGINT NOT NULL
);
CREATE INDEX accounts_user_id ON accounts (user_id, created_at);

CREATE TABLE account_configs (
    account_id  UUID PRIMARY KEY REFERENCES accounts (id) ON DELETE CASCADE,
    settings    TEXT NOT NULL,
    secrets     BYTEA,
    updated_at  BIGINT NOT NULL
);

CREATE TABLE api_keys (
    id              UUID PRIMARY KEY,
    user_id         UUID NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    name            TEXT NOT NULL,
    prefix          TEXT NOT NULL,
    secret_hash     BYTEA NOT NULL,
    scopes          TEXT NOT NULL,
    account_ids     TEXT,
    created_at      BIGINT NOT NULL,
    last_used_at    BIGINT,
    expires_at      BIGINT,
    revoked_at      BIGINT,
    CONSTRAINT api_keys_prefix_key UNIQUE (prefix)
);
CREATE INDEX api_keys_user_id ON api_keys (user_id, created_at);

CREATE TABLE assistance_requests (
    id          UUID PRIMARY KEY,
    account_id  UUID NOT NULL REFERENCES accounts (id) ON DELETE CASCADE,
    kind        TEXT NOT NULL,
    descriptor  TEXT NOT NULL,
    attempts    INTEGER NOT NULL DEFAULT 0,
    status      TEXT NOT NULL,
    reason      TEXT,
    created_at  BIGINT NOT NULL,
    updated_at  BIGINT NOT NULL,
    expires_at  BIGINT NOT NULL,
    closed_at   BIGINT
);
-- At most one pending request per account, enforced by the database.
CREATE UNIQUE INDEX assistance_one_pending_per_account
    ON assistance_requests (account_id) WHERE status = 'pending';
CREATE INDEX assistance_requests_account ON assistance_requests (account_id, created_at);
