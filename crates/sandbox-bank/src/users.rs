//! The scripted users of docs/product.md §10: who exists, their password, and how the bank treats them.
//!
//! The table is public so tests and demos can name the users and codes instead of repeating
//! string literals.

/// What a one-time code looks like, as announced on the OTP page (`data-type`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CodeKind {
    /// Digits only.
    Numeric,
    /// Upper-case letters and digits.
    Alphanumeric,
}

impl CodeKind {
    /// The value of the OTP form's `data-type` attribute.
    pub fn as_str(self) -> &'static str {
        match self {
            CodeKind::Numeric => "numeric",
            CodeKind::Alphanumeric => "alphanumeric",
        }
    }
}

/// The second factor a user's login asks for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct OtpChallenge {
    /// Kind of code (`data-type`).
    pub kind: CodeKind,
    /// Number of characters (`data-length`).
    pub length: usize,
    /// The one right code. Compared exactly, after trimming surrounding whitespace.
    pub code: &'static str,
}

/// How the bank treats a scripted user once the password is right.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Behaviour {
    /// Logs in without a second factor.
    Plain,
    /// Logs in after a one-time code.
    Otp(OtpChallenge),
    /// The bank reports the account locked; the login never succeeds.
    Locked,
    /// Logs in without a second factor but some requests fail with 5xx (see the crate docs).
    Flaky,
    /// Logs in without a second factor; every request waits `BankConfig::slow_delay`.
    Slow,
}

/// One scripted user.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ScriptedUser {
    /// Login name.
    pub username: &'static str,
    /// The one right password.
    pub password: &'static str,
    /// What happens after the password is accepted.
    pub behaviour: Behaviour,
}

/// Username of the user that logs in without a second factor.
pub const USER_GOOD: &str = "user_good";
/// Username of the user asking for a 6-digit numeric code.
pub const USER_OTP: &str = "user_otp";
/// Username of the user asking for an 8-character alphanumeric code.
pub const USER_ALNUM: &str = "user_alnum";
/// Username of the user whose account the bank reports locked.
pub const USER_LOCKED: &str = "user_locked";
/// Username of the user whose requests sometimes fail with 5xx.
pub const USER_FLAKY: &str = "user_flaky";
/// Username of the user whose requests answer slowly.
pub const USER_SLOW: &str = "user_slow";

/// The right code for [`USER_OTP`].
pub const NUMERIC_CODE: &str = "123456";
/// The right code for [`USER_ALNUM`].
pub const ALNUM_CODE: &str = "AB12CD34";

/// Every user the bank knows. Anyone else gets `bad_credentials`.
pub const SCRIPTED_USERS: &[ScriptedUser] = &[
    ScriptedUser {
        username: USER_GOOD,
        password: "pass_good",
        behaviour: Behaviour::Plain,
    },
    ScriptedUser {
        username: USER_OTP,
        password: "pass_otp",
        behaviour: Behaviour::Otp(OtpChallenge {
            kind: CodeKind::Numeric,
            length: 6,
            code: NUMERIC_CODE,
        }),
    },
    ScriptedUser {
        username: USER_ALNUM,
        password: "pass_alnum",
        behaviour: Behaviour::Otp(OtpChallenge {
            kind: CodeKind::Alphanumeric,
            length: 8,
            code: ALNUM_CODE,
        }),
    },
    ScriptedUser {
        username: USER_LOCKED,
        password: "pass_locked",
        behaviour: Behaviour::Locked,
    },
    ScriptedUser {
        username: USER_FLAKY,
        password: "pass_flaky",
        behaviour: Behaviour::Flaky,
    },
    ScriptedUser {
        username: USER_SLOW,
        password: "pass_slow",
        behaviour: Behaviour::Slow,
    },
];

/// Longest tag of a `<user>+<tag>` username.
pub const MAX_TAG_LEN: usize = 32;

/// The scripted user with exactly this username (no tag), if any.
pub fn find(username: &str) -> Option<&'static ScriptedUser> {
    SCRIPTED_USERS.iter().find(|u| u.username == username)
}

/// The scripted user a login name stands for: a scripted username itself, or
/// `<scripted username>+<tag>` with a tag of 1–[`MAX_TAG_LEN`] characters from `[A-Za-z0-9_-]`
/// (`user_good+shop1` behaves as `user_good`). Anything else is unknown.
pub fn resolve(username: &str) -> Option<&'static ScriptedUser> {
    match username.split_once('+') {
        None => find(username),
        Some((base, tag)) if is_tag(tag) => find(base),
        Some(_) => None,
    }
}

fn is_tag(tag: &str) -> bool {
    (1..=MAX_TAG_LEN).contains(&tag.len()) && tag.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-')
}

/// The scripted user behind `username` (see [`resolve`]) if the password is right.
pub fn authenticate(username: &str, password: &str) -> Option<&'static ScriptedUser> {
    resolve(username).filter(|u| u.password == password)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tagged_usernames_resolve_to_their_scripted_user() {
        assert_eq!(resolve("user_good").map(|u| u.username), Some(USER_GOOD));
        assert_eq!(resolve("user_good+shop1").map(|u| u.username), Some(USER_GOOD));
        assert_eq!(resolve("user_otp+a-B_9").map(|u| u.username), Some(USER_OTP));
        let longest = format!("user_good+{}", "x".repeat(MAX_TAG_LEN));
        assert!(resolve(&longest).is_some());
        let too_long = format!("user_good+{}", "x".repeat(MAX_TAG_LEN + 1));
        for unknown in [
            "user_good+",
            "user_good+a+b",
            "user_good+a b",
            "user_good+é",
            "user_good+a.b",
            "nobody+a",
            "+a",
            "user_good +a",
            too_long.as_str(),
        ] {
            assert!(resolve(unknown).is_none(), "{unknown}");
        }
        assert!(authenticate("user_good+x", "pass_good").is_some());
        assert!(authenticate("user_good+x", "pass_otp").is_none());
    }
}
