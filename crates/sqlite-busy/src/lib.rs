//! How a SQLite connection waits for a database another connection is writing to.
//!
//! SQLite runs one writer at a time; a connection that finds the write lock taken calls its busy
//! handler, which sleeps and asks to retry. The stock handler (`sqlite3_busy_timeout`) sleeps 1,
//! 2, 5, 10, 15, 20, 25… ms between tries: a writer that waits for a transaction of 0.2 ms
//! sleeps at least 1 ms, and one that misses two turns sleeps 8 ms. The store's writers hold the
//! lock for well under a millisecond each, so that schedule set the latency of every contended
//! write (a result webhook's p99, an OTP submission racing a poll).
//!
//! [`install`] replaces it with a handler that retries after 50 µs for the first millisecond,
//! then every 250 µs up to 20 ms, then every millisecond, and gives up (`SQLITE_BUSY`, which
//! the store reports as an error) after `timeout`.

use std::ffi::{c_int, c_void};
use std::time::Duration;

/// The pause before retry number `count` (0-based), or `None` once `timeout` is spent.
pub fn pause(count: u32, timeout: Duration) -> Option<Duration> {
    // Time slept before retry `count`: 20 × 50 µs, then 76 × 250 µs, then 1 ms each.
    let slept_us: u64 = match count {
        0..20 => u64::from(count) * 50,
        20..96 => 1_000 + u64::from(count - 20) * 250,
        _ => 20_000 + u64::from(count - 96) * 1_000,
    };
    if Duration::from_micros(slept_us) >= timeout {
        return None;
    }
    Some(Duration::from_micros(match count {
        0..20 => 50,
        20..96 => 250,
        _ => 1_000,
    }))
}

/// The timeout, in milliseconds, smuggled through the handler's context pointer (no allocation
/// to free when the connection closes).
extern "C" fn busy(context: *mut c_void, count: c_int) -> c_int {
    let timeout = Duration::from_millis(context as usize as u64);
    match pause(u32::try_from(count).unwrap_or(u32::MAX), timeout) {
        Some(d) => {
            std::thread::sleep(d);
            1
        }
        None => 0,
    }
}

/// Installs the handler on a connection sqlx holds locked for us (no other thread uses it
/// meanwhile), replacing the busy timeout set when it opened. Returns SQLite's result code
/// (`SQLITE_OK` = 0).
pub fn install(handle: &mut sqlx::sqlite::LockedSqliteHandle<'_>, timeout: Duration) -> c_int {
    let ms = usize::try_from(timeout.as_millis()).unwrap_or(usize::MAX);
    let db = handle.as_raw_handle();
    // SAFETY: `db` is the open connection of `handle`, which guarantees exclusive use for the
    // call; the handler is a plain function and its context is an integer, not a pointer to
    // memory, so nothing dangles when the connection outlives this call.
    unsafe { libsqlite3_sys::sqlite3_busy_handler(db.as_ptr(), Some(busy), ms as *mut c_void) }
}

#[cfg(test)]
mod tests {
    use super::pause;
    use std::time::Duration;

    #[test]
    fn the_schedule_is_fine_first_then_coarse_and_ends_at_the_timeout() {
        let t = Duration::from_secs(5);
        assert_eq!(pause(0, t), Some(Duration::from_micros(50)));
        assert_eq!(pause(19, t), Some(Duration::from_micros(50)));
        assert_eq!(pause(20, t), Some(Duration::from_micros(250)));
        assert_eq!(pause(95, t), Some(Duration::from_micros(250)));
        assert_eq!(pause(96, t), Some(Duration::from_millis(1)));
        // 20 ms after 96 tries, then 1 ms a try: 5 s is spent at try 96 + 4,980.
        assert_eq!(pause(96 + 4_979, t), Some(Duration::from_millis(1)));
        assert_eq!(pause(96 + 4_980, t), None);
        assert_eq!(pause(u32::MAX, t), None);
        assert_eq!(pause(0, Duration::ZERO), None);
    }
}
