-- Reconciliation review: the trigger a human asked the next evaluation of a request to record
-- (`run`): the match pass records an attempt with it whatever it decides, then clears it.
ALTER TABLE conciliation_requests ADD COLUMN pending_trigger TEXT;
