-- Issue 12, finding 9: who claimed a delivery. A restarted instance (its id is kept in the data
-- directory) takes its own claims back at boot instead of waiting out the claim lease; the
-- column is cleared when an attempt's outcome is written.
ALTER TABLE deliveries ADD COLUMN claimed_by TEXT;
