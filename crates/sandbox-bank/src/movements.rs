//! What a user's statement holds at a given bank-clock offset: deterministic movements plus the
//! ones injected through `POST /_sandbox/movements` (or `SandboxBank::add_movement`).
//!
//! The bank's clock starts at `start` (the real UTC time of `SandboxBank::new`, whole seconds).
//! Every username starts with [`INITIAL_MOVEMENTS`] movements dated before the start: number `i`
//! (`0 ≤ i < INITIAL_MOVEMENTS`) is dated `start - (INITIAL_MOVEMENTS - i) * step`, where `step`
//! is `movement_interval` ([`ZERO_INTERVAL_STEP`] when the interval is zero). After that, movement
//! number `INITIAL_MOVEMENTS - 1 + k` (k ≥ 1) exists iff `k * movement_interval <= offset` and is
//! dated `start + k * movement_interval`. Every field but the date is derived from a hash of the
//! full username (tag included, so `user_good+a` and `user_good` differ) and the index, so the
//! same movement always reads the same, with the stable id `<username>-<index>`.

use std::time::Duration;

use chrono::{DateTime, SecondsFormat, Utc};

/// Movements every user has from the start.
pub const INITIAL_MOVEMENTS: u64 = 5;

/// At most this many movements (the newest) are listed; older ones drop off the statement, as on
/// a real bank's first page.
pub const MAX_LISTED: usize = 200;

/// The currency of the deterministic movements (injected ones carry their own).
pub const CURRENCY: &str = "EUR";

/// How far apart the initial movements are when `movement_interval` is zero.
pub const ZERO_INTERVAL_STEP: Duration = Duration::from_secs(60);

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
    /// Stable id: `<username>-<index>` (deterministic) or `<username>-i<n>` (injected, n = 1, 2, …
    /// per username).
    pub id: String,
    /// Booking date (whole seconds).
    pub date: DateTime<Utc>,
    /// Signed amount as the bank prints it, an exact decimal text (negative = money out):
    /// `-12.34` for the deterministic movements, exactly as given for injected ones.
    pub amount: String,
    /// [`CURRENCY`] for the deterministic movements; as given for injected ones.
    pub currency: String,
    /// Counterparty; some movements have none.
    pub name: Option<String>,
    /// Free text.
    pub description: String,
}

impl Movement {
    /// The amount as the bank prints it (the [`Movement::amount`] text).
    pub fn amount(&self) -> &str {
        &self.amount
    }

    /// The date as the bank prints it: RFC 3339, UTC, whole seconds (`2025-01-01T08:00:00Z`).
    pub fn date_rfc3339(&self) -> String {
        self.date.to_rfc3339_opts(SecondsFormat::Secs, true)
    }
}

/// Cents as the bank prints them: a decimal string with two decimals, e.g. `-12.34`.
pub fn format_cents(cents: i64) -> String {
    let sign = if cents < 0 { "-" } else { "" };
    let abs = cents.unsigned_abs();
    format!("{sign}{}.{:02}", abs / 100, abs % 100)
}

/// Whether `amount` is an exact decimal the bank accepts: an optional leading `-`, digits, and
/// optionally `.` followed by 1–4 digits.
pub fn is_decimal(amount: &str) -> bool {
    let unsigned = amount.strip_prefix('-').unwrap_or(amount);
    let (int, frac) = match unsigned.split_once('.') {
        Some((int, frac)) => (int, Some(frac)),
        None => (unsigned, None),
    };
    let digits = |s: &str| !s.is_empty() && s.bytes().all(|b| b.is_ascii_digit());
    digits(int) && frac.is_none_or(|f| f.len() <= 4 && digits(f))
}

/// Whether `currency` is three upper-case ASCII letters.
pub fn is_currency(currency: &str) -> bool {
    currency.len() == 3 && currency.bytes().all(|b| b.is_ascii_uppercase())
}

/// How many deterministic movements a user has once the bank's clock is `offset` past its start.
/// A zero `interval` means no new movements ever appear.
pub fn movement_count(offset: Duration, interval: Duration) -> u64 {
    if interval.is_zero() {
        return INITIAL_MOVEMENTS;
    }
    let added = offset.as_nanos() / interval.as_nanos();
    INITIAL_MOVEMENTS.saturating_add(u64::try_from(added).unwrap_or(u64::MAX))
}

/// `start` moved by `steps` times `step` (negative = back), saturating at the ends of time.
fn shifted(start: DateTime<Utc>, step: Duration, steps: i64) -> DateTime<Utc> {
    let step = chrono::Duration::from_std(step).unwrap_or(chrono::Duration::MAX);
    let by = i32::try_from(steps)
        .ok()
        .and_then(|n| step.checked_mul(n))
        .unwrap_or(if steps < 0 {
            chrono::Duration::MIN
        } else {
            chrono::Duration::MAX
        });
    start.checked_add_signed(by).unwrap_or(if steps < 0 {
        DateTime::<Utc>::MIN_UTC
    } else {
        DateTime::<Utc>::MAX_UTC
    })
}

/// Deterministic movement number `index` of `username` on a bank whose clock started at `start`
/// (it exists only if `index < movement_count(..)`).
pub fn movement(username: &str, index: u64, start: DateTime<Utc>, interval: Duration) -> Movement {
    let date = if index < INITIAL_MOVEMENTS {
        let step = if interval.is_zero() {
            ZERO_INTERVAL_STEP
        } else {
            interval
        };
        let before = i64::try_from(INITIAL_MOVEMENTS - index).unwrap_or(0);
        shifted(start, step, -before)
    } else {
        let k = index - INITIAL_MOVEMENTS + 1;
        shifted(start, interval, i64::try_from(k).unwrap_or(i64::MAX))
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
        amount: format_cents(amount_cents),
        currency: CURRENCY.to_owned(),
        name,
        description,
    }
}

/// The statement of `username` at bank-clock `offset` past `start`: its deterministic movements
/// and `injected` (in the order they were added), newest first by date, at most [`MAX_LISTED`].
/// Equal dates: injected before deterministic, the later-added injected first, the higher index
/// first.
pub fn statement(
    username: &str,
    start: DateTime<Utc>,
    offset: Duration,
    interval: Duration,
    injected: &[Movement],
) -> Vec<Movement> {
    let count = movement_count(offset, interval);
    let mut all: Vec<Movement> = injected.iter().rev().cloned().collect();
    all.extend(
        (0..count)
            .rev()
            .take(MAX_LISTED)
            .map(|i| movement(username, i, start, interval)),
    );
    // Stable: ties keep the order above.
    all.sort_by_key(|m| std::cmp::Reverse(m.date));
    all.truncate(MAX_LISTED);
    all
}

/// Keeps at most [`MAX_LISTED`] injected movements (in the order added), dropping the ones that
/// sort last in [`statement`]: they could never be listed again, whatever comes later.
pub(crate) fn trim_injected(injected: &mut Vec<Movement>) {
    while injected.len() > MAX_LISTED {
        let last = injected
            .iter()
            .enumerate()
            .min_by_key(|(i, m)| (m.date, *i))
            .map(|(i, _)| i);
        match last {
            Some(i) => {
                injected.remove(i);
            }
            None => break,
        }
    }
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
    use chrono::TimeZone;

    fn start() -> DateTime<Utc> {
        Utc.with_ymd_and_hms(2025, 1, 1, 8, 0, 0)
            .single()
            .expect("valid instant")
    }

    #[test]
    fn amounts_print_with_two_decimals() {
        assert_eq!(format_cents(-1234), "-12.34");
        assert_eq!(format_cents(5), "0.05");
        assert_eq!(format_cents(-7), "-0.07");
        assert_eq!(format_cents(100_000), "1000.00");
        let m = movement("u", 0, start(), Duration::from_secs(60));
        assert_eq!(m.amount(), m.amount);
    }

    #[test]
    fn decimals_and_currencies_are_checked_exactly() {
        for good in ["0", "1500", "1500.00", "-12.34", "0.0001", "007.5", "-0"] {
            assert!(is_decimal(good), "{good}");
        }
        for bad in [
            "", "-", ".5", "5.", "1.23456", "+5", "1e3", "1,500.00", " 5", "5 ", "--5", "1.2.3", "NaN", "١٢",
        ] {
            assert!(!is_decimal(bad), "{bad}");
        }
        assert!(is_currency("UYU") && is_currency("EUR"));
        for bad in ["", "uyu", "UY", "UYUU", "U1U", "ÜYU"] {
            assert!(!is_currency(bad), "{bad}");
        }
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
        let m = |user: &str, i| movement(user, i, start(), interval);
        assert_eq!(m("user_good", 3), m("user_good", 3));
        assert_ne!(m("user_good", 3), m("user_otp", 3));
        let (plain, tagged) = (m("user_good", 3), m("user_good+a", 3));
        assert_eq!(tagged.id, "user_good+a-3");
        assert_ne!(
            (&plain.amount, &plain.description),
            (&tagged.amount, &tagged.description)
        );

        let s = statement("user_good", start(), Duration::from_secs(600), interval, &[]);
        assert_eq!(s.len(), 7);
        assert_eq!(s[0].id, "user_good-6");
        assert_eq!(s[0].date_rfc3339(), "2025-01-01T08:10:00Z");
        assert_eq!(s[1].date_rfc3339(), "2025-01-01T08:05:00Z");
        assert_eq!(s[2].date_rfc3339(), "2025-01-01T07:55:00Z");
        assert_eq!(s[6].date_rfc3339(), "2025-01-01T07:35:00Z");
        assert!(s.windows(2).all(|w| w[0].date > w[1].date), "newest first");

        // A zero interval still spaces the initial movements.
        let s = statement("u", start(), Duration::from_secs(600), Duration::ZERO, &[]);
        assert_eq!(s.len(), 5);
        assert_eq!(s[0].date_rfc3339(), "2025-01-01T07:59:00Z");
        assert_eq!(s[4].date_rfc3339(), "2025-01-01T07:55:00Z");
    }

    #[test]
    fn injected_movements_sort_in_by_date() {
        let interval = Duration::from_secs(300);
        let at = |secs: i64| start() + chrono::Duration::seconds(secs);
        let inj = |n: u32, date| Movement {
            id: format!("u-i{n}"),
            date,
            amount: "1500.00".into(),
            currency: "UYU".into(),
            name: None,
            description: String::new(),
        };
        // Same second as u-4 (start - 300 s), the future, the far past, and a tie of two injected.
        let injected = [
            inj(1, at(-300)),
            inj(2, at(3600)),
            inj(3, at(-86_400)),
            inj(4, at(-60)),
            inj(5, at(-60)),
        ];
        let s = statement("u", start(), Duration::ZERO, interval, &injected);
        let ids: Vec<&str> = s.iter().map(|m| m.id.as_str()).collect();
        assert_eq!(
            ids,
            ["u-i2", "u-i5", "u-i4", "u-i1", "u-4", "u-3", "u-2", "u-1", "u-0", "u-i3"]
        );
    }

    #[test]
    fn statements_mix_debits_credits_and_missing_names() {
        let s = statement(
            "user_good",
            start(),
            Duration::from_secs(300 * 100),
            Duration::from_secs(300),
            &[],
        );
        assert!(s.iter().any(|m| m.amount.starts_with('-')));
        assert!(s.iter().any(|m| !m.amount.starts_with('-')));
        assert!(s.iter().any(|m| m.name.is_none()));
        assert!(s.iter().all(|m| m.amount != "0.00" && is_decimal(&m.amount)));
    }

    #[test]
    fn listing_is_capped() {
        let s = statement(
            "u",
            start(),
            Duration::from_secs(1_000_000),
            Duration::from_secs(1),
            &[],
        );
        assert_eq!(s.len(), MAX_LISTED);
        assert_eq!(s[0].id, format!("u-{}", INITIAL_MOVEMENTS + 1_000_000 - 1));
    }

    #[test]
    fn trimming_drops_only_what_could_never_be_listed() {
        let mut injected: Vec<Movement> = (0..MAX_LISTED + 3)
            .map(|i| Movement {
                id: format!("u-i{i}"),
                date: start() + chrono::Duration::seconds(i64::try_from(i % 7).unwrap_or(0)),
                amount: "1.00".into(),
                currency: "EUR".into(),
                name: None,
                description: String::new(),
            })
            .collect();
        let all = injected.clone();
        trim_injected(&mut injected);
        assert_eq!(injected.len(), MAX_LISTED);
        let listed = |inj: &[Movement]| statement("u", start(), Duration::ZERO, Duration::ZERO, inj);
        assert_eq!(listed(&injected), listed(&all));
    }
}
