-- Reconciliation performance (docs/reconciliation.md, "Performance").
--
-- movements.match_key: the movement's amount as the match pass groups it (the canonical
-- decimal text requests store), written by a committed pass once it has evaluated the
-- movement's group. NULL = not seen yet: a new movement, or one whose eligibility changed since
-- (ignored, un-ignored, matched, unmatched; the triggers below), so the next pass evaluates its
-- group again. Every movement starts unseen, so the first pass after this migration is a full one.
ALTER TABLE movements ADD COLUMN match_key TEXT;
CREATE INDEX movements_unseen ON movements (account_id) WHERE match_key IS NULL;
CREATE INDEX movements_account_match_key ON movements (account_id, match_key);

-- The pass reads the open requests of the changed amounts, and those due to expire.
CREATE INDEX conciliation_requests_account_amount ON conciliation_requests (account_id, amount);
CREATE INDEX conciliation_requests_account_expires ON conciliation_requests (account_id, expires_at);

-- Ignoring or un-ignoring a movement changes what the account's pass sees: the movement's group
-- is evaluated again, and a pass computed before the change cannot commit (the version moves).
CREATE FUNCTION movements_eligibility_changed() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    NEW.match_key := NULL;
    UPDATE reconcile_state SET version = version + 1 WHERE account_id = NEW.account_id;
    RETURN NEW;
END
$$;
CREATE TRIGGER movements_eligibility_changed BEFORE UPDATE OF ignored_at ON movements
FOR EACH ROW WHEN ((OLD.ignored_at IS NULL) IS DISTINCT FROM (NEW.ignored_at IS NULL))
EXECUTE FUNCTION movements_eligibility_changed();

-- A movement matched (by a pass or by hand) or released leaves or rejoins its group.
CREATE FUNCTION conciliation_match_changed() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    IF TG_OP = 'DELETE' THEN
        UPDATE movements SET match_key = NULL WHERE id = OLD.movement_id;
        RETURN OLD;
    END IF;
    UPDATE movements SET match_key = NULL WHERE id = NEW.movement_id;
    RETURN NEW;
END
$$;
CREATE TRIGGER conciliation_matches_changed AFTER INSERT OR DELETE ON conciliation_matches
FOR EACH ROW EXECUTE FUNCTION conciliation_match_changed();
