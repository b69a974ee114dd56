-- Passthrough (SQLite): when an account was first read. The movements stored by that first
-- successful read are the bank's history (the baseline) and are not forwarded; the column is
-- set in the same transaction as that read's movements (docs/reconciliation.md §7).
ALTER TABLE accounts ADD COLUMN first_read_at INTEGER;
-- Accounts read before this migration: their first read is the oldest read of their movements.
UPDATE accounts SET first_read_at = (SELECT MIN(m.read_at) FROM movements m WHERE m.account_id = accounts.id);
