-- Issue 11 (scale-out): one counted hit of a sliding window in one round trip. The OTP submission
-- path paid five (BEGIN with `synchronous_commit = off`, the bucket's upsert, the count, the
-- hit's insert, COMMIT): the same three statements now run here, in this order and with the same
-- locking — the upsert takes the bucket row's lock first, and each statement of a PL/pgSQL
-- function takes a fresh snapshot, so the count sees every hit committed by whoever held the
-- lock before. `synchronous_commit` is switched off for the calling transaction only (a hit
-- lives minutes; a database crash may forget the last fraction of a second of them).
CREATE FUNCTION rate_window_hit(p_bucket TEXT, p_now BIGINT, p_expires_at BIGINT, p_limit BIGINT, p_id UUID)
RETURNS TABLE (allowed BOOLEAN, used BIGINT, oldest BIGINT)
LANGUAGE plpgsql VOLATILE AS $$
BEGIN
    PERFORM set_config('synchronous_commit', 'off', true);
    INSERT INTO rate_buckets (bucket, touched_at) VALUES (p_bucket, p_now)
        ON CONFLICT (bucket) DO UPDATE SET touched_at = excluded.touched_at;
    SELECT COUNT(*), MIN(h.expires_at) INTO used, oldest
        FROM rate_hits h WHERE h.bucket = p_bucket AND h.expires_at > p_now;
    allowed := used < p_limit;
    IF allowed THEN
        INSERT INTO rate_hits (id, bucket, at, expires_at) VALUES (p_id, p_bucket, p_now, p_expires_at);
        used := used + 1;
        oldest := LEAST(COALESCE(oldest, p_expires_at), p_expires_at);
    END IF;
    RETURN NEXT;
END
$$;
