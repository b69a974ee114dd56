-- Issue 11 (scale-out): the /v1 request budget of each API key, shared by every instance (GCRA).
-- One row per key: its theoretical arrival time in nanoseconds since the epoch. An instance takes
-- a slice of several requests at once (one write per slice, not per request) and spends it in
-- memory (the server's support::ratelimit_slices).
CREATE TABLE rate_tats (
    bucket  TEXT PRIMARY KEY,
    tat_ns  BIGINT NOT NULL
);
