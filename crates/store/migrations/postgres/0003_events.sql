-- Push (PostgreSQL): the bounded event log behind the /v1 and realtime streams (seq = the SSE id),
-- and the durable outbox of notification webhook deliveries, both written in the same
-- transaction as the state change that caused them.
CREATE TABLE events (
    seq          BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    id           UUID NOT NULL,
    user_id      UUID NOT NULL,
    account_id   UUID NOT NULL,
    kind         TEXT NOT NULL,
    data         TEXT NOT NULL,
    occurred_at  BIGINT NOT NULL,
    CONSTRAINT events_id_key UNIQUE (id)
);
CREATE INDEX events_user_seq ON events (user_id, seq);
CREATE INDEX events_occurred ON events (occurred_at);

CREATE TABLE deliveries (
    id               UUID PRIMARY KEY,
    account_id       UUID NOT NULL REFERENCES accounts (id) ON DELETE CASCADE,
    event_id         UUID NOT NULL,
    event_type       TEXT NOT NULL,
    payload          TEXT NOT NULL,
    request_id       UUID,
    status           TEXT NOT NULL,
    attempts         INTEGER NOT NULL DEFAULT 0,
    next_attempt_at  BIGINT,
    last_attempt_at  BIGINT,
    last_status      INTEGER,
    last_error       TEXT,
    created_at       BIGINT NOT NULL,
    delivered_at     BIGINT
);
CREATE INDEX deliveries_due ON deliveries (status, next_attempt_at);
CREATE INDEX deliveries_account ON deliveries (account_id, created_at);
