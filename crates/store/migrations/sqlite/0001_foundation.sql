-- Foundation schema (SQLite). Timestamps are INTEGER milliseconds since the Unix epoch (UTC);
-- ids are UUIDs stored as 16-byte BLOBs; lists and documents are JSON text.
CREATE TABLE users (
    id              BLOB PRIMARY KEY,
    email           TEXT NOT NULL,
    name            TEXT,
    password_hash   TEXT NOT NULL,
    is_admin        INTEGER NOT NULL DEFAULT 0,
    operation_mode  TEXT,
    created_at      INTEGER NOT NULL,
    CONSTRAINT users_email_key UNIQUE (email)
);

CREATE TABLE revoked_tokens (
    jti         BLOB PRIMARY KEY,
    user_id     BLOB NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    expires_at  INTEGER NOT NULL
);
CREATE INDEX revoked_tokens_expires_at ON revoked_tokens (expires_at);

CREATE TABLE banks (
    id          BLOB PRIMARY KEY,
    code        TEXT NOT NULL,
    name        TEXT NOT NULL,
    login_url   TEXT,
    status      TEXT NOT NULL DEFAULT 'active',
    created_at  INTEGER NOT NULL,
    CONSTRAINT banks_code_key UNIQUE (code)
);

CREATE TABLE accounts (
    id                      BLOB PRIMARY KEY,
    user_id                 BLOB NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    bank_id                 BLOB NOT NULL REFERENCES banks (id),
    name                    TEXT NOT NULL,
    status                  TEXT NOT NULL DEFAULT 'active',
    scrape_blocked_at       INTEGER,
    scrape_blocked_reason   TEXT,
    created_at              INTEGER NOT NULL
);
CREATE INDEX accounts_user_id ON accounts (user_id, created_at);

CREATE TABLE account_configs (
    account_id  BLOB PRIMARY KEY REFERENCES accounts (id) ON DELETE CASCADE,
    settings    TEXT NOT NULL,
    secrets     BLOB,
    updated_at  INTEGER NOT NULL
);

CREATE TABLE api_keys (
    id              BLOB PRIMARY KEY,
    user_id         BLOB NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    name            TEXT NOT NULL,
    prefix          TEXT NOT NULL,
    secret_hash     BLOB NOT NULL,
    scopes          TEXT NOT NULL,
    account_ids     TEXT,
    created_at      INTEGER NOT NULL,
    last_used_at    INTEGER,
    expires_at      INTEGER,
    revoked_at      INTEGER,
    CONSTRAINT api_keys_prefix_key UNIQUE (prefix)
);
CREATE INDEX api_keys_user_id ON api_keys (user_id, created_at);

CREATE TABLE assistance_requests (
    id          BLOB PRIMARY KEY,
    account_id  BLOB NOT NULL REFERENCES accounts (id) ON DELETE CASCADE,
    kind        TEXT NOT NULL,
    descriptor  TEXT NOT NULL,
    attempts    INTEGER NOT NULL DEFAULT 0,
    status      TEXT NOT NULL,
    reason      TEXT,
    created_at  INTEGER NOT NULL,
    updated_at  INTEGER NOT NULL,
    expires_at  INTEGER NOT NULL,
    closed_at   INTEGER
);
-- At most one pending request per account, enforced by the database.
CREATE UNIQUE INDEX assistance_one_pending_per_account
    ON assistance_requests (account_id) WHERE status = 'pending';
CREATE INDEX assistance_requests_account ON assistance_requests (account_id, created_at);
