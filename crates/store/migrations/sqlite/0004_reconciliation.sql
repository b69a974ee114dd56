-- Reconciliation (SQLite): the orders a customer's system expects (one row per registration),
-- their matches to movements (one-to-one, enforced here), the attempts that explain each
-- decision, the poll log, rejected pairs, and one state row per account that serialises every
-- reconciliation change of that account.
CREATE TABLE conciliation_requests (
    id                  BLOB PRIMARY KEY,
    account_id          BLOB NOT NULL REFERENCES accounts (id) ON DELETE CASCADE,
    external_id         TEXT NOT NULL,
    generation          INTEGER NOT NULL,
    amount              TEXT NOT NULL,
    currency            TEXT NOT NULL,
    sender_name         TEXT NOT NULL,
    reference           TEXT,
    status              TEXT NOT NULL,
    reason              TEXT,
    registered_at       INTEGER NOT NULL,
    expires_at          INTEGER NOT NULL,
    last_seen_at        INTEGER NOT NULL,
    absent_since_close  INTEGER NOT NULL DEFAULT 0,
    eval_errors         INTEGER NOT NULL DEFAULT 0,
    attempt_count       INTEGER NOT NULL DEFAULT 0,
    last_candidates     TEXT,
    closed_at           INTEGER,
    updated_at          INTEGER NOT NULL,
    CONSTRAINT conciliation_requests_generation_key UNIQUE (account_id, external_id, generation)
);
-- At most one live (or matched) request per order id; cancelled and expired rows are history.
CREATE UNIQUE INDEX conciliation_requests_live_key ON conciliation_requests (account_id, external_id)
    WHERE status NOT IN ('cancelled', 'expired');
CREATE INDEX conciliation_requests_account_status ON conciliation_requests (account_id, status);
CREATE INDEX conciliation_requests_account_created ON conciliation_requests (account_id, registered_at);

CREATE TABLE conciliation_matches (
    id               BLOB PRIMARY KEY,
    account_id       BLOB NOT NULL REFERENCES accounts (id) ON DELETE CASCADE,
    request_id       BLOB NOT NULL REFERENCES conciliation_requests (id) ON DELETE CASCADE,
    movement_id      BLOB NOT NULL REFERENCES movements (id) ON DELETE CASCADE,
    matched_by       TEXT NOT NULL,
    matched_by_user  BLOB,
    score            INTEGER NOT NULL,
    explanation      TEXT NOT NULL,
    matched_at       INTEGER NOT NULL,
    CONSTRAINT conciliation_matches_request_key UNIQUE (request_id),
    CONSTRAINT conciliation_matches_movement_key UNIQUE (movement_id)
);

CREATE TABLE conciliation_attempts (
    id              BLOB PRIMARY KEY,
    request_id      BLOB NOT NULL REFERENCES conciliation_requests (id) ON DELETE CASCADE,
    attempt_number  INTEGER NOT NULL,
    result          TEXT NOT NULL,
    reason          TEXT,
    trigger         TEXT NOT NULL,
    user_id         BLOB,
    candidates      TEXT NOT NULL,
    created_at      INTEGER NOT NULL,
    CONSTRAINT conciliation_attempts_number_key UNIQUE (request_id, attempt_number)
);

CREATE TABLE conciliation_rejections (
    request_id   BLOB NOT NULL REFERENCES conciliation_requests (id) ON DELETE CASCADE,
    movement_id  BLOB NOT NULL REFERENCES movements (id) ON DELETE CASCADE,
    user_id      BLOB NOT NULL,
    created_at   INTEGER NOT NULL,
    PRIMARY KEY (request_id, movement_id)
);

CREATE TABLE conciliation_polls (
    id           BLOB PRIMARY KEY,
    account_id   BLOB NOT NULL REFERENCES accounts (id) ON DELETE CASCADE,
    seq          INTEGER NOT NULL,
    started_at   INTEGER NOT NULL,
    finished_at  INTEGER NOT NULL,
    outcome      TEXT NOT NULL,
    error        TEXT,
    http_status  INTEGER,
    bytes        INTEGER NOT NULL DEFAULT 0,
    pages        INTEGER NOT NULL DEFAULT 0,
    counts       TEXT NOT NULL,
    issues       TEXT NOT NULL
);
CREATE INDEX conciliation_polls_account_seq ON conciliation_polls (account_id, seq);

CREATE TABLE reconcile_state (
    account_id        BLOB PRIMARY KEY REFERENCES accounts (id) ON DELETE CASCADE,
    version           INTEGER NOT NULL DEFAULT 0,
    dirty_seq         INTEGER NOT NULL DEFAULT 0,
    done_seq          INTEGER NOT NULL DEFAULT 0,
    next_poll_at      INTEGER,
    poll_seq_issued   INTEGER NOT NULL DEFAULT 0,
    poll_seq_applied  INTEGER NOT NULL DEFAULT 0,
    poll_failures     INTEGER NOT NULL DEFAULT 0,
    poll_lease_owner  TEXT,
    poll_lease_until  INTEGER
);

-- Movements: the parsed instant (null when the bank's date does not parse) and the ignore mark.
ALTER TABLE movements ADD COLUMN received_at_ms INTEGER;
ALTER TABLE movements ADD COLUMN ignored_at INTEGER;
ALTER TABLE movements ADD COLUMN ignored_by BLOB;
CREATE INDEX movements_account_received_ms ON movements (account_id, received_at_ms);

-- Deliveries: which webhook (the notification one, or the reconciliation result one) and the
-- subject whose deliveries go out in order (a request or a movement).
ALTER TABLE deliveries ADD COLUMN channel TEXT NOT NULL DEFAULT 'notification';
ALTER TABLE deliveries ADD COLUMN subject_id BLOB;
CREATE INDEX deliveries_subject ON deliveries (subject_id, created_at);
