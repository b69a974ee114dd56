-- Bank sessions (PostgreSQL): movements read from the bank (stored once), one row per session run,
-- and session leases (one owner per account, renewed while alive).
CREATE TABLE movements (
    id           UUID PRIMARY KEY,
    account_id   UUID NOT NULL REFERENCES accounts (id) ON DELETE CASCADE,
    external_id  TEXT NOT NULL,
    amount       TEXT NOT NULL,
    currency     TEXT NOT NULL,
    name         TEXT,
    description  TEXT NOT NULL,
    received_at  TEXT NOT NULL,
    read_at      BIGINT NOT NULL,
    CONSTRAINT movements_account_external_key UNIQUE (account_id, external_id)
);
CREATE INDEX movements_account_received ON movements (account_id, received_at);

CREATE TABLE session_runs (
    id              UUID PRIMARY KEY,
    account_id      UUID NOT NULL REFERENCES accounts (id) ON DELETE CASCADE,
    kind            TEXT NOT NULL,
    started_at      BIGINT NOT NULL,
    ended_at        BIGINT,
    outcome         TEXT NOT NULL,
    failure_reason  TEXT,
    movements_read  INTEGER NOT NULL DEFAULT 0,
    new_movements   INTEGER NOT NULL DEFAULT 0
);
CREATE INDEX session_runs_account ON session_runs (account_id, started_at);

CREATE TABLE session_leases (
    account_id  UUID PRIMARY KEY REFERENCES accounts (id) ON DELETE CASCADE,
    owner       TEXT NOT NULL,
    expires_at  BIGINT NOT NULL
);
