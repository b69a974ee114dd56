-- Issue 11 (scale-out): realtime tickets live in the database, so a ticket issued by one
-- instance is redeemed once, on any instance. A ticket is kept by its SHA-256 only.
CREATE TABLE realtime_tickets (
    hash        BYTEA PRIMARY KEY,
    user_id     UUID NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    jti         UUID NOT NULL,
    token_exp   BIGINT NOT NULL,
    expires_at  BIGINT NOT NULL
);
CREATE INDEX realtime_tickets_user ON realtime_tickets (user_id, expires_at);
CREATE INDEX realtime_tickets_expiry ON realtime_tickets (expires_at);
