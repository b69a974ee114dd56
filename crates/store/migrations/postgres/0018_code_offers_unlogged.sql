-- Issue 11 (scale-out): a code offer lives for the seconds of one hand-over between instances,
-- so it needs neither WAL nor a foreign key. Unlogged, its writes commit without waiting for a
-- WAL flush (the hand-over paid two); without the foreign key, an insert no longer locks the
-- assistance request's row (a WAL record, so a flush again). After a database crash the table
-- is empty, which loses nothing: every sender settles by its bounded wait. An offer whose request
-- is deleted is never taken (the holder looks offers up by request) and is forgotten by the
-- next offer after a minute.
ALTER TABLE code_offers DROP CONSTRAINT code_offers_request_id_fkey;
ALTER TABLE code_offers SET UNLOGGED;
