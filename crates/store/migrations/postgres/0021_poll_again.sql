-- "Poll now" while a poll of the account runs (RECONCILIATION §3.1: one poll runs, another is
-- queued at most): the request is remembered here, and the running poll's finish keeps the
-- account due instead of scheduling it an interval later. 1 = asked while a poll held the lease.
ALTER TABLE reconcile_state ADD COLUMN poll_again BIGINT NOT NULL DEFAULT 0;
