-- Issue 10: two-factor sign-in (TOTP, RFC 6238) for dashboard users. The secret is sealed with
-- the master key (AES-256-GCM, bound to the user id); `confirmed_at` is NULL while set-up waits
-- for its first code; `last_step` is the newest time step accepted, so a used code is refused.
CREATE TABLE user_totp (
    user_id       UUID PRIMARY KEY REFERENCES users (id) ON DELETE CASCADE,
    secret        BYTEA NOT NULL,
    confirmed_at  BIGINT,
    last_step     BIGINT,
    created_at    BIGINT NOT NULL
);
-- Single-use recovery codes, kept by a keyed hash only.
CREATE TABLE user_recovery_codes (
    user_id    UUID NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    code_hash  BYTEA NOT NULL,
    used_at    BIGINT,
    PRIMARY KEY (user_id, code_hash)
);
