-- Issue 11 (scale-out): a code submitted to one instance for a login another instance holds.
-- The row carries the code sealed under the master key (never in a NOTIFY payload); the holder
-- marks it `taken` (or `refused` when it holds the login but is checking another code) and
-- clears the sealed code; the submitting instance deletes the row once answered or after its
-- bounded wait.
CREATE TABLE code_offers (
    id          UUID PRIMARY KEY,
    request_id  UUID NOT NULL REFERENCES assistance_requests (id) ON DELETE CASCADE,
    sealed      BYTEA,
    state       TEXT NOT NULL CHECK (state IN ('offered', 'taken', 'refused')),
    created_at  BIGINT NOT NULL
);
CREATE INDEX code_offers_request ON code_offers (request_id, created_at);
CREATE INDEX code_offers_created ON code_offers (created_at);
