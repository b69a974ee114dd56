-- Issue 11 (scale-out): sliding-window rate limits shared by every instance (OTP submissions per
-- account, failed logins and API-key authentications per address, two-factor failures per
-- user). One row per counted event; each carries its own expiry (the end of its window).
-- A bucket row serialises the hits of one bucket (its upsert takes the row's lock).
CREATE TABLE rate_buckets (
    bucket      TEXT PRIMARY KEY,
    touched_at  INTEGER NOT NULL
);
CREATE TABLE rate_hits (
    id          BLOB PRIMARY KEY,
    bucket      TEXT NOT NULL,
    at          INTEGER NOT NULL,
    expires_at  INTEGER NOT NULL
);
CREATE INDEX rate_hits_bucket ON rate_hits (bucket, expires_at);
CREATE INDEX rate_hits_expiry ON rate_hits (expires_at);
