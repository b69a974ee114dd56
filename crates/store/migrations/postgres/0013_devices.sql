-- Issue 9 (real banks): remember-device (CONNECTORS §4). What a browser login kept for the next
-- one (the bank's trusted-device cookies), sealed with the master key (AES-256-GCM; the account
-- id and the bank username as associated data, so it opens only for the same login). One row per
-- account, replaced after each login that kept something, gone with the account.
CREATE TABLE account_devices (
    account_id  UUID PRIMARY KEY REFERENCES accounts (id) ON DELETE CASCADE,
    sealed      BYTEA NOT NULL,
    saved_at    BIGINT NOT NULL
);
