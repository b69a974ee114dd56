-- Push (SQLite): the bounded event log behind the /v1 and realtime streams (seq = the SSE id),
-- and the durable outbox of notification webhook deliveries, both written in the same
-- transaction as the state change that caused them.
CREATE TABLE events (
    seq          INTEGER PRIMARY KEY AUTOINCREMENT,
    id           BLOB NOT NULL,
    user_id      BLOB NOT NULL,
    account_id   BLOB NOT NULL,
    kind         TEXT NOT NULL,
    data         TEXT NOT NULL,
    occurred_at  INTEGER NOT NULL,
    CONSTRAINT events_id_key UNIQUE (id)
);
CREATE INDEX events_user_seq ON events (user_id, seq);
CREATE INDEX events_occurred ON events (occurred_at);

CREATE TABLE deliveries (
    id               BLOB PRIMARY KEY,
    account_id       BLOB NOT NULL REFERENCES accounts (id) ON DELETE CASCADE,
    event_id         BLOB NOT NULL,
    event_type       TEXT NOT NULL,
    payload          TEXT NOT NULL,
    request_id       BLOB,
    status           TEXT NOT NULL,
    attempts         INTEGER NOT NULL DEFAULT 0,
    next_attempt_at  INTEGER,
    last_attempt_at  INTEGER,
    last_status      INTEGER,
    last_error       TEXT,
    created_at       INTEGER NOT NULL,
    delivered_at     INTEGER
);
CREATE INDEX deliveries_due ON deliveries (status, next_attempt_at);
CREATE INDEX deliveries_account ON deliveries (account_id, created_at);
