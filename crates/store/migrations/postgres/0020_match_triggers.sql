-- Reconciliation performance: a movement matched or released is marked unseen (match_key NULL)
-- once per statement, not once per row. The row trigger of 0007 ran a PL/pgSQL UPDATE for each
-- match (59 µs a row: 300 ms for the 5,000 matches of a 50,000-order poll's first pass) and
-- rewrote movements that were unseen already — a new row version, every index of movements
-- updated, and the foreign key checked again by the pass's own later update of the same rows.
-- Now one UPDATE per statement through its transition table, skipping the rows already unseen.
DROP TRIGGER conciliation_matches_changed ON conciliation_matches;
DROP FUNCTION conciliation_match_changed();

CREATE FUNCTION conciliation_matches_taken() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    UPDATE movements m SET match_key = NULL FROM taken t
    WHERE m.id = t.movement_id AND m.match_key IS NOT NULL;
    RETURN NULL;
END
$$;
CREATE TRIGGER conciliation_matches_taken AFTER INSERT ON conciliation_matches
REFERENCING NEW TABLE AS taken FOR EACH STATEMENT EXECUTE FUNCTION conciliation_matches_taken();

CREATE FUNCTION conciliation_matches_released() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    UPDATE movements m SET match_key = NULL FROM released r
    WHERE m.id = r.movement_id AND m.match_key IS NOT NULL;
    RETURN NULL;
END
$$;
CREATE TRIGGER conciliation_matches_released AFTER DELETE ON conciliation_matches
REFERENCING OLD TABLE AS released FOR EACH STATEMENT EXECUTE FUNCTION conciliation_matches_released();
