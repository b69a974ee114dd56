-- Issue 11: master-key rotation. Keys derived from the master key whose outputs outlive a
-- process (the API-key checksum inside every issued key, the keyed hash of recovery codes): a
-- rotation carries them over, sealed with the new master key (AES-256-GCM, the label as
-- associated data), so issued API keys and recovery codes keep working. Absent until the first
-- rotation (the keys are then derived from the master key itself).
CREATE TABLE carried_keys (
    label       TEXT PRIMARY KEY,
    sealed      BYTEA NOT NULL,
    created_at  BIGINT NOT NULL
);
