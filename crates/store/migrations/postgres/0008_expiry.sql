-- The expiry sweep (docs/reconciliation.md §5.8) looks, across all accounts, for open requests
-- past their expiry: a partial index keeps that a look at the few overdue rows, whatever the
-- number of closed ones. The predicate is written as the sweep's query writes it.
-- `expires_at IS NOT NULL` (always true) keeps the index to queries that bound `expires_at`:
-- without it, SQLite would drive the match pass's batched `UPDATE … FROM (VALUES …) WHERE id = …
-- AND status IN (open)` by scanning this index (every open request, per statement).
CREATE INDEX conciliation_requests_open_expiry ON conciliation_requests (expires_at)
    WHERE status IN ('pending', 'not_found', 'ambiguous', 'failed') AND expires_at IS NOT NULL;
