-- Issue 11 (scale-out): on PostgreSQL a counted hit of a sliding window becomes one function call
-- (see the PostgreSQL migration). SQLite has no stored functions and its statements do not cross
-- a network: the hit stays three statements in one transaction here; the number keeps the two
-- lists alike.
SELECT 1;
