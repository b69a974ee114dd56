-- Issue 9 (real banks): failure evidence of a browser login or read (CONNECTORS §6): what the
-- bank's page looked like when a step failed — screenshot, DOM with every input blanked, URL,
-- title and step trail — sealed with the master key (AES-256-GCM, the row id as associated data).
-- At most 3 per run, readable by the account's owner, gone after 7 days (the upkeep loop) or with
-- the run (and so with the account).
CREATE TABLE run_evidence (
    id          UUID PRIMARY KEY,
    run_id      UUID NOT NULL REFERENCES session_runs (id) ON DELETE CASCADE,
    step        TEXT NOT NULL,
    sealed      BYTEA NOT NULL,
    taken_at    BIGINT NOT NULL,
    expires_at  BIGINT NOT NULL
);
CREATE INDEX run_evidence_run ON run_evidence (run_id, taken_at);
CREATE INDEX run_evidence_expiry ON run_evidence (expires_at);
