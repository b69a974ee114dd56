-- Reconciliation performance: a movement matched or released is marked unseen (match_key NULL)
-- only if it is not unseen already. The triggers of 0007 rewrote the row either way: a first
-- pass's matches are of new movements, all unseen, so each match paid a row and index write
-- that changed nothing. (PostgreSQL does the same once per statement; see its migration.)
DROP TRIGGER conciliation_matches_taken;
DROP TRIGGER conciliation_matches_released;
CREATE TRIGGER conciliation_matches_taken AFTER INSERT ON conciliation_matches
BEGIN
    UPDATE movements SET match_key = NULL WHERE id = NEW.movement_id AND match_key IS NOT NULL;
END;
CREATE TRIGGER conciliation_matches_released AFTER DELETE ON conciliation_matches
BEGIN
    UPDATE movements SET match_key = NULL WHERE id = OLD.movement_id AND match_key IS NOT NULL;
END;
