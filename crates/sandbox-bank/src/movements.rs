//! Deterministic movements: what a user's statement holds at a given bank-clock offset.
//!
//! Every user starts with [`INITIAL_MOVEMENTS`] movements, one a day, the newest dated at
//! [`base_time`]. After that, movement number `INITIAL_MOVEMENTS - 1 + k` (k ≥ 1) exists iff
//! `k * movement_interval <= offset` and is dated `base_time + k * movement_interval`. Every field
//! is derived from a hash of the username and the index, so the same movement always reads the
//! same, with the stable id `<username>-<index>`.

use std::time::Duration;

use chrono::{DateTime, SecondsFormat, TimeZone, Utc};

/// Movements every user has from the start.
pub const INITIAL_MOVEMENTS: u64 = 5;

/// At most this many movements (the newest) are listed; older ones drop off the statement, as on
/// a real bank's first page.
pub const MAX_LISTED: usize = 200;

/// The only currency the sandbox bank keeps.
pub const CURRENCY: &str = "EUR";

const COUNTERPARTIES: &[&str] = &[
    "ACME Groceries",
    "City Power Co",
    "Jane Doe",
    "Northwind Traders",
    "Café Lumière",
    "O'Brien & Sons",
    "<Metro> Transit",
];
const DEBIT_LABELS: &[&str] = &[
    "Card payment",
    "Direct debit",
    "Transfer out",
    "ATM withdrawal",
    "Online purchase",
];
const CREDIT_LABELS: &[&str] = &["Salary", "Transfer in", "Refund", "Interest"];

/// One movement of a user's statement.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Movement {
    /// Stable id: `<username>-<index>`.
    pub id: String,
    /// Booking date.
    pub date: DateTime<Utc>,
    /// Signed amount in cents (negative = money out).
    pub amount_cents: i64,
    /// Always [`CURRENCY`].
    pub currency: &'static str,
    /// Counterparty; some movements have none.
    pub name: Option<String>,
    /// Free text.
    pub description: String,
}

impl Movement {
    /// The amount as the bank prints it: a decimal string with two decimals, e.g. `-12.34`.
    pub fn amount(&self) -> String {
        let sign = if self.amount_cents < 0 { "-" } else { "" };
        let abs = self.amount_cents.unsigned_abs();
        format!("{sign}{}.{:02}", abs / 100, abs % 100)
    }

    /// The date as the bank prints it: RFC 3339, UTC, whole seconds (`2025-01-01T08:00:00Z`).
    pub fn date_rfc3339(&self) -> String {
        self.date.to_rfc3339_opts(SecondsFormat::Secs, true)
    }
}

/// The fixed instant the bank's clock starts at.
pub fn base_time() -> DateTime<Utc> {
    // 2025-01-01T08:00:00Z is a valid, unambiguous UTC instant; the fallback is never taken.
    Utc.with_ymd_and_hms(2025, 1, 1, 8, 0, 0)
        .single()
        .unwrap_or(DateTime::<Utc>::UNIX_EPOCH)
}

/// How many movements a user has once the bank's clock is `offset` past [`base_time`].
/// A zero `interval` means no new movements ever appear.
pub fn movement_count(offset: Duration, interval: Duration) -> u64 {
    if interval.is_zero() {
        return INITIAL_MOVEMENTS;
    }
    let added = offset.as_nanos() / interval.as_nanos();
    INITIAL_MOVEMENTS.saturating_add(u64::try_from(added).unwrap_or(u64::MAX))
}

/// Movement number `index` of `username` (which exists only if `index < movement_count(..)`).
pub fn movement(username: &str, index: u64, interval: Duration) -> Movement {
    let date = if index < INITIAL_MOVEMENTS {
        let days_before = i64::try_from(INITIAL_MOVEMENTS - 1 - index).unwrap_or(0);
        base_time() - chrono::Duration::days(days_before)
    } else {
        let k = index - INITIAL_MOVEMENTS + 1;
        let step = chrono::Duration::from_std(interval).unwrap_or(chrono::Duration::zero());
        base_time() + step * i32::try_from(k).unwrap_or(i32::MAX)
    };

    let mut rng = Mix::new(username, index);
    let debit = rng.below(100) < 70;
    let (amount_cents, labels) = if debit {
        (-(1 + rng.below(25_000) as i64), DEBIT_LABELS)
    } else {
        (1_000 + rng.below(300_000) as i64, CREDIT_LABELS)
    };
    let name = if rng.below(4) == 0 {
        None
    } else {
        Some(pick(COUNTERPARTIES, rng.next()).to_owned())
    };
    let description = format!("{} REF{:06}", pick(labels, rng.next()), rng.below(1_000_000));

    Movement {
        id: format!("{username}-{index}"),
        date,
        amount_cents,
        currency: CURRENCY,
        name,
        description,
    }
}

/// The statement of `username` at bank-clock `offset`: newest first, at most [`MAX_LISTED`].
pub fn statement(username: &str, offset: Duration, interval: Duration) -> Vec<Movement> {
    let count = movement_count(offset, interval);
    (0..count)
        .rev()
        .take(MAX_LISTED)
        .map(|i| movement(username, i, interval))
        .collect()
}

fn pick<'a>(items: &[&'a str], r: u64) -> &'a str {
    let len = u64::try_from(items.len()).unwrap_or(1).max(1);
    let i = usize::try_from(r % len).unwrap_or(0);
    items.get(i).copied().unwrap_or("")
}

/// A tiny deterministic generator (FNV-1a seed, splitmix64 steps): stable across Rust versions,
/// unlike `DefaultHasher`, so movements never change under a toolchain upgrade.
struct Mix(u64);

impl Mix {
    fn new(username: &str, index: u64) -> Self {
        let mut h: u64 = 0xcbf2_9ce4_8422_2325;
        for b in username.bytes().chain([0xff]).chain(index.to_le_bytes()) {
            h ^= u64::from(b);
            h = h.wrapping_mul(0x0000_0100_0000_01b3);
        }
        Mix(h)
    }

    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }

    fn below(&mut self, n: u64) -> u64 {
        self.next() % n.max(1)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn amounts_print_with_two_decimals() {
        let mut m = movement("u", 0, Duration::from_secs(60));
        m.amount_cents = -1234;
        assert_eq!(m.amount(), "-12.34");
        m.amount_cents = 5;
        assert_eq!(m.amount(), "0.05");
        m.amount_cents = -7;
        assert_eq!(m.amount(), "-0.07");
        m.amount_cents = 100_000;
        assert_eq!(m.amount(), "1000.00");
    }

    #[test]
    fn movements_are_deterministic_and_grow_with_the_clock() {
        let interval = Duration::from_secs(300);
        assert_eq!(movement_count(Duration::ZERO, interval), INITIAL_MOVEMENTS);
        assert_eq!(movement_count(Duration::from_secs(299), interval), INITIAL_MOVEMENTS);
        assert_eq!(
            movement_count(Duration::from_secs(300), interval),
            INITIAL_MOVEMENTS + 1
        );
        assert_eq!(
            movement_count(Duration::from_secs(3600), Duration::ZERO),
            INITIAL_MOVEMENTS
        );
        assert_eq!(movement("user_good", 3, interval), movement("user_good", 3, interval));
        assert_ne!(movement("user_good", 3, interval), movement("user_otp", 3, interval));

        let s = statement("user_good", Duration::from_secs(600), interval);
        assert_eq!(s.len(), 7);
        assert_eq!(s[0].id, "user_good-6");
        assert_eq!(s[0].date_rfc3339(), "2025-01-01T08:10:00Z");
        assert_eq!(s[2].date_rfc3339(), "2025-01-01T08:00:00Z");
        assert_eq!(s[6].date_rfc3339(), "2024-12-28T08:00:00Z");
        assert!(s.windows(2).all(|w| w[0].date > w[1].date), "newest first");
    }

    #[test]
    fn statements_mix_debits_credits_and_missing_names() {
        let s = statement("user_good", Duration::from_secs(300 * 100), Duration::from_secs(300));
        assert!(s.iter().any(|m| m.amount_cents < 0));
        assert!(s.iter().any(|m| m.amount_cents > 0));
        assert!(s.iter().any(|m| m.name.is_none()));
        assert!(s.iter().all(|m| m.amount_cents != 0));
    }

    #[test]
    fn listing_is_capped() {
        let s = statement("u", Duration::from_secs(1_000_000), Duration::from_secs(1));
        assert_eq!(s.len(), MAX_LISTED);
        assert_eq!(s[0].id, format!("u-{}", INITIAL_MOVEMENTS + 1_000_000 - 1));
    }
}
