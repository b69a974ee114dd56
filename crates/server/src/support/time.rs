//! Time on the wire and time arithmetic: one format (RFC 3339, UTC, milliseconds, `Z`), one
//! way to move a timestamp by a `std` duration, and one way to wait until a wall-clock time.

use std::time::Duration;

use reconbanker_store::Timestamp;

/// RFC 3339, UTC, milliseconds, `Z` (`2026-11-25T10:00:00.000Z`), the only timestamp format
/// either surface writes.
pub(crate) fn ts(t: Timestamp) -> String {
    t.to_rfc3339_opts(chrono::SecondsFormat::Millis, true)
}

/// `t + d`. Durations come from the validated `Config` or from code constants, so they are far
/// inside chrono's range; should one not be, the result saturates instead of wrapping or
/// silently becoming `t`.
pub(crate) fn after(t: Timestamp, d: Duration) -> Timestamp {
    chrono::Duration::from_std(d)
        .ok()
        .and_then(|d| t.checked_add_signed(d))
        .unwrap_or(chrono::DateTime::<chrono::Utc>::MAX_UTC)
}

/// The timer instant of a wall-clock time (ms since the epoch, as a key's or a token's expiry is
/// kept): now when it has passed.
pub(crate) fn instant_at_ms(at_ms: i64) -> tokio::time::Instant {
    let left = at_ms.saturating_sub(chrono::Utc::now().timestamp_millis()).max(0);
    tokio::time::Instant::now() + Duration::from_millis(u64::try_from(left).unwrap_or(0))
}

/// `t - d`, saturating like [`after`].
pub(crate) fn before(t: Timestamp, d: Duration) -> Timestamp {
    chrono::Duration::from_std(d)
        .ok()
        .and_then(|d| t.checked_sub_signed(d))
        .unwrap_or(chrono::DateTime::<chrono::Utc>::MIN_UTC)
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::TimeZone;

    #[test]
    fn formats_with_millis_and_z() {
        let t = chrono::Utc.with_ymd_and_hms(2026, 11, 25, 10, 0, 0).unwrap();
        assert_eq!(ts(t), "2026-11-25T10:00:00.000Z");
    }

    #[test]
    fn moves_and_saturates() {
        let t = chrono::Utc.with_ymd_and_hms(2026, 11, 25, 10, 0, 0).unwrap();
        assert_eq!(ts(after(t, Duration::from_millis(1500))), "2026-11-25T10:00:01.500Z");
        assert_eq!(ts(before(t, Duration::from_secs(60))), "2026-11-25T09:59:00.000Z");
        assert_eq!(after(t, Duration::MAX), chrono::DateTime::<chrono::Utc>::MAX_UTC);
        assert_eq!(before(t, Duration::MAX), chrono::DateTime::<chrono::Utc>::MIN_UTC);
    }
}
