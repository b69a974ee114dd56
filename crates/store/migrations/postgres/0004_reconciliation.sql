-- Reconciliation (PostgreSQL): the orders a customer's system expects (one row per registration),
-- their matches to movements (one-to-one, enforced here), the attempts that explain each
-- decision, the poll log, rejected pairs, and one state row per account that serialises every
-- reconciliation change of that account.
CREATE TABLE conciliation_requests (
    id                  UUID PRIMARY KEY,
    account_id          UUID NOT NULL REFERENCES accounts (id) ON DELETE CASCADE,
    external_id         TEXT NOT NULL,
    generation          BIGINT NOT NULL,
    amount              TEXT NOT NULL,
    currency            TEXT NOT NULL,
    sender_name         TEXT NOT NULL,
    reference           TEXT,
    status              TEXT NOT NULL,
    reason              TEXT,
    registered_at       BIGINT NOT NULL,
    expires_at          BIGINT NOT NULL,
    last_seen_at        BIGINT NOT NULL,
    absent_since_close  BOOLEAN NOT NULL DEFAULT FALSE,
    eval_errors         BIGINT NOT NULL DEFAULT 0,
    attempt_count       BIGINT NOT NULL DEFAULT 0,
    last_candidates     TEXT,
    closed_at           BIGINT,
    updated_at          BIGINT NOT NULL,
    CONSTRAINT conciliation_requests_generation_key UNIQUE (account_id, external_id, generation)
);
-- At most one live (or matched) request per order id; cancelled and expired rows are history.
CREATE UNIQUE INDEX conciliation_requests_live_key ON conciliation_requests (account_id, external_id)
    WHERE status NOT IN ('cancelled', 'expired');
CREATE INDEX conciliation_requests_account_status ON conciliation_requests (account_id, status);
CREATE INDEX conciliation_requests_account_created ON conciliation_requests (account_id, registered_at);

CREATE TABLE conciliation_matches (
    id               UUID PRIMARY KEY,
    account_id       UUID NOT NULL REFERENCES accounts (id) ON DELETE CASCADE,
    request_id       UUID NOT NULL REFERENCES conciliation_requests (id) ON DELETE CASCADE,
    movement_id      UUID NOT NULL REFERENCES movements (id) ON DELETE CASCADE,
    matched_by       TEXT NOT NULL,
    matched_by_user  UUID,
    score            BIGINT NOT NULL,
    explanation      TEXT NOT NULL,
    matched_at       BIGINT NOT NULL,
    CONSTRAINT conciliation_matches_request_key UNIQUE (request_id),
    CONSTRAINT conciliation_matches_movement_key UNIQUE (movement_id)
);

CREATE TABLE conciliation_attempts (
    id              UUID PRIMARY KEY,
    request_id      UUID NOT NULL REFERENCES conciliation_requests (id) ON DELETE CASCADE,
    attempt_number  BIGINT NOT NULL,
    result          TEXT NOT NULL,
    reason          TEXT,
    trigger         TEXT NOT NULL,
    user_id         UUID,
    candidates      TEXT NOT NULL,
    created_at      BIGINT NOT NULL,
    CONSTRAINT conciliation_attempts_number_key UNIQUE (request_id, attempt_number)
);

CREATE TABLE conciliation_rejections (
    request_id   UUID NOT NULL REFERENCES conciliation_requests (id) ON DELETE CASCADE,
    movement_id  UUID NOT NULL REFERENCES movements (id) ON DELETE CASCADE,
    user_id      UUID NOT NULL,
    created_at   BIGINT NOT NULL,
    PRIMARY KEY (request_id, movement_id)
);

CREATE TABLE conciliation_polls (
    id           UUID PRIMARY KEY,
    account_id   UUID NOT NULL REFERENCES accounts (id) ON DELETE CASCADE,
    seq          BIGINT NOT NULL,
    started_at   BIGINT NOT NULL,
    finished_at  BIGINT NOT NULL,
    outcome      TEXT NOT NULL,
    error        TEXT,
    http_status  BIGINT,
    bytes        BIGINT NOT NULL DEFAULT 0,
    pages        BIGINT NOT NULL DEFAULT 0,
    counts       TEXT NOT NULL,
    issues       TEXT NOT NULL
);
CREATE INDEX conciliation_polls_account_seq ON conciliation_polls (account_id, seq);

CREATE TABLE reconcile_state (
    account_id        UUID PRIMARY KEY REFERENCES accounts (id) ON DELETE CASCADE,
    version           BIGINT NOT NULL DEFAULT 0,
    dirty_seq         BIGINT NOT NULL DEFAULT 0,
    done_seq          BIGINT NOT NULL DEFAULT 0,
    next_poll_at      BIGINT,
    poll_seq_issued   BIGINT NOT NULL DEFAULT 0,
    poll_seq_applied  BIGINT NOT NULL DEFAULT 0,
    poll_failures     BIGINT NOT NULL DEFAULT 0,
    poll_lease_owner  TEXT,
    poll_lease_until  BIGINT
);

-- Movements: the parsed instant (null when the bank's date does not parse) and the ignore mark.
ALTER TABLE movements ADD COLUMN received_at_ms BIGINT;
ALTER TABLE movements ADD COLUMN ignored_at BIGINT;
ALTER TABLE movements ADD COLUMN ignored_by UUID;
CREATE INDEX movements_account_received_ms ON movements (account_id, received_at_ms);

-- Deliveries: which webhook (the notification one, or the reconciliation result one) and the
-- subject whose deliveries go out in order (a request or a movement).
ALTER TABLE deliveries ADD COLUMN channel TEXT NOT NULL DEFAULT 'notification';
ALTER TABLE deliveries ADD COLUMN subject_id UUID;
CREATE INDEX deliveries_subject ON deliveries (subject_id, created_at);
