//! Two-factor sign-in codes (issue 10): TOTP (RFC 6238) over HOTP (RFC 4226) with HMAC-SHA1,
//! 6 digits, 30-second steps — what every authenticator app speaks — and the single-use
//! recovery codes, kept by a keyed hash.

use hmac::{Hmac, Mac};
use rand::Rng;
use sha1::Sha1;
use sha2::Sha256;
use subtle::ConstantTimeEq;

/// Seconds per time step (RFC 6238's default, the only value authenticator apps honour).
pub const STEP_SECS: i64 = 30;
/// Digits of a code.
pub const DIGITS: u32 = 6;
/// Bytes of a new secret (160 bits, RFC 4226's recommendation for HMAC-SHA1).
pub const SECRET_BYTES: usize = 20;
/// How many recovery codes a confirmation hands out.
pub const RECOVERY_CODES: usize = 10;
/// Characters of a recovery code.
pub const RECOVERY_LEN: usize = 10;
/// Lowercase letters and digits without the look-alikes (0/o, 1/l/i): 31 symbols, so a code
/// carries about 49.5 bits.
const RECOVERY_ALPHABET: &[u8] = b"abcdefghjkmnpqrstuvwxyz23456789";

/// HOTP (RFC 4226 §5.3): HMAC-SHA1 over the big-endian counter, dynamic truncation, `digits`
/// decimal digits.
pub fn hotp(secret: &[u8], counter: u64, digits: u32) -> u32 {
    // HMAC takes a key of any length, so this cannot fail.
    let Ok(mut mac) = <Hmac<Sha1> as Mac>::new_from_slice(secret) else {
        return 0;
    };
    mac.update(&counter.to_be_bytes());
    let h = mac.finalize().into_bytes();
    let offset = usize::from(h[19] & 0x0f);
    let bin = (u32::from(h[offset]) & 0x7f) << 24
        | u32::from(h[offset + 1]) << 16
        | u32::from(h[offset + 2]) << 8
        | u32::from(h[offset + 3]);
    bin % 10u32.pow(digits)
}

/// The time step of a Unix time in seconds (T0 = 0).
pub fn step_at(unix_secs: i64) -> i64 {
    unix_secs.div_euclid(STEP_SECS)
}

/// The 6-digit code of a step, zero-padded.
pub fn code_at(secret: &[u8], step: i64) -> String {
    format!(
        "{:0width$}",
        hotp(secret, step.max(0) as u64, DIGITS),
        width = DIGITS as usize
    )
}

/// Whether `text` has the shape of a code (6 ASCII digits once spaces are removed).
pub fn looks_like_code(text: &str) -> Option<String> {
    let code: String = text.chars().filter(|c| !c.is_whitespace()).collect();
    (code.len() == DIGITS as usize && code.bytes().all(|b| b.is_ascii_digit())).then_some(code)
}

/// The step, among the current one and one either side (clock drift), whose code is `code`;
/// compared in constant time.
pub fn matching_step(secret: &[u8], code: &str, unix_secs: i64) -> Option<i64> {
    let now = step_at(unix_secs);
    let mut found = None;
    for step in [now - 1, now, now + 1] {
        if bool::from(code_at(secret, step).as_bytes().ct_eq(code.as_bytes())) {
            found = Some(step);
        }
    }
    found
}

pub fn new_secret() -> [u8; SECRET_BYTES] {
    rand::thread_rng().gen()
}

/// RFC 4648 base32 without padding (what `otpauth://` URIs carry).
pub fn base32(bytes: &[u8]) -> String {
    const ALPHABET: &[u8; 32] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZ234567";
    let mut out = String::with_capacity(bytes.len().div_ceil(5) * 8);
    let (mut buffer, mut bits) = (0u32, 0u32);
    for &b in bytes {
        buffer = (buffer << 8) | u32::from(b);
        bits += 8;
        while bits >= 5 {
            bits -= 5;
            out.push(char::from(ALPHABET[((buffer >> bits) & 31) as usize]));
        }
    }
    if bits > 0 {
        out.push(char::from(ALPHABET[((buffer << (5 - bits)) & 31) as usize]));
    }
    out
}

/// The key URI authenticator apps read (Google Authenticator's "Key Uri Format"):
/// `otpauth://totp/<issuer>:<account>?secret=…&issuer=…&algorithm=SHA1&digits=6&period=30`.
pub fn otpauth_uri(issuer: &str, account: &str, secret: &[u8]) -> String {
    let enc = |s: &str| {
        url::form_urlencoded::byte_serialize(s.as_bytes())
            .collect::<String>()
            .replace('+', "%20")
    };
    format!(
        "otpauth://totp/{}:{}?secret={}&issuer={}&algorithm=SHA1&digits={DIGITS}&period={STEP_SECS}",
        enc(issuer),
        enc(account),
        base32(secret),
        enc(issuer)
    )
}

/// Ten fresh recovery codes (shown once; only their keyed hashes are stored).
pub fn new_recovery_codes() -> Vec<String> {
    let mut rng = rand::thread_rng();
    (0..RECOVERY_CODES)
        .map(|_| {
            (0..RECOVERY_LEN)
                .map(|_| char::from(RECOVERY_ALPHABET[rng.gen_range(0..RECOVERY_ALPHABET.len())]))
                .collect()
        })
        .collect()
}

/// A recovery code as typed (any case, spaces or dashes between groups) in its stored form, or
/// `None` when it cannot be one.
pub fn normalize_recovery(text: &str) -> Option<String> {
    let code: String = text
        .chars()
        .filter(|c| !c.is_whitespace() && *c != '-')
        .map(|c| c.to_ascii_lowercase())
        .collect();
    (code.len() == RECOVERY_LEN && code.bytes().all(|b| RECOVERY_ALPHABET.contains(&b))).then_some(code)
}

/// HMAC-SHA256 under a key derived from the master key with a label: recovery codes are
/// hashed with one (so a copy of the database alone does not allow guessing them offline), the
/// dashboard's CSRF tokens are made with another.
#[derive(Clone)]
pub struct KeyedHash {
    key: [u8; 32],
}

/// The label of the recovery codes' key.
pub const RECOVERY_LABEL: &[u8] = b"reconbanker/recovery-codes/v1";
/// The label of the dashboard's CSRF key.
pub const CSRF_LABEL: &[u8] = b"reconbanker/dashboard-csrf/v1";

impl KeyedHash {
    pub fn derive(master: &[u8; 32], label: &[u8]) -> Self {
        Self::from_key(crate::support::crypto::derive_key(master, label))
    }

    /// From the derived key itself (issue 11: a key carried across master-key rotations).
    pub fn from_key(key: [u8; 32]) -> Self {
        Self { key }
    }

    /// The hash of `code` (a recovery code normalised with [`normalize_recovery`], or a
    /// CSRF token's input).
    pub fn hash(&self, code: &str) -> Vec<u8> {
        let Ok(mut mac) = <Hmac<Sha256> as Mac>::new_from_slice(&self.key) else {
            return Vec::new();
        };
        mac.update(code.as_bytes());
        mac.finalize().into_bytes().to_vec()
    }
}

impl std::fmt::Debug for KeyedHash {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("KeyedHash(<redacted>)")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// RFC 6238 Appendix B, the SHA1 rows (8 digits, the 20-byte ASCII seed).
    #[test]
    fn rfc_6238_sha1_vectors() {
        let seed = b"12345678901234567890";
        for (time, code) in [
            (59i64, 94287082u32),
            (1111111109, 7081804),
            (1111111111, 14050471),
            (1234567890, 89005924),
            (2000000000, 69279037),
            (20000000000, 65353130),
        ] {
            assert_eq!(hotp(seed, step_at(time) as u64, 8), code, "T = {time}");
            // Six digits are the last six of the eight.
            assert_eq!(
                code_at(seed, step_at(time)),
                format!("{:06}", code % 1_000_000),
                "T = {time}"
            );
        }
    }

    /// RFC 4226 Appendix D.
    #[test]
    fn rfc_4226_hotp_vectors() {
        let expected = [
            755224, 287082, 359152, 969429, 338314, 254676, 287922, 162583, 399871, 520489,
        ];
        for (counter, code) in expected.into_iter().enumerate() {
            assert_eq!(hotp(b"12345678901234567890", counter as u64, 6), code);
        }
    }

    #[test]
    fn one_step_either_side_is_accepted_and_no_further() {
        let secret = [42u8; SECRET_BYTES];
        let now = 1_700_000_015; // mid-step
        let step = step_at(now);
        for (offset, accepted) in [(-2, false), (-1, true), (0, true), (1, true), (2, false)] {
            let code = code_at(&secret, step + offset);
            let got = matching_step(&secret, &code, now);
            if accepted {
                assert_eq!(got, Some(step + offset), "offset {offset}");
            } else {
                // A far code may collide with a near one by chance; it never matches its own step.
                assert_ne!(got, Some(step + offset), "offset {offset}");
            }
        }
        assert_eq!(matching_step(&secret, "12345", now), None, "wrong length");
    }

    #[test]
    fn base32_matches_rfc_4648() {
        for (input, out) in [
            ("", ""),
            ("f", "MY"),
            ("fo", "MZXQ"),
            ("foo", "MZXW6"),
            ("foob", "MZXW6YQ"),
            ("fooba", "MZXW6YTB"),
            ("foobar", "MZXW6YTBOI"),
        ] {
            assert_eq!(base32(input.as_bytes()), out);
        }
    }

    #[test]
    fn uri_names_issuer_account_and_parameters() {
        let uri = otpauth_uri("Reconbanker", "a b@example.com", b"12345678901234567890");
        assert_eq!(
            uri,
            "otpauth://totp/Reconbanker:a%20b%40example.com?secret=GEZDGNBVGY3TQOJQGEZDGNBVGY3TQOJQ\
             &issuer=Reconbanker&algorithm=SHA1&digits=6&period=30"
        );
    }

    #[test]
    fn recovery_codes_are_letters_and_digits_and_normalise() {
        let codes = new_recovery_codes();
        assert_eq!(codes.len(), 10);
        for c in &codes {
            assert!(c.len() >= 8 && c.bytes().all(|b| b.is_ascii_alphanumeric()), "{c}");
            assert_eq!(normalize_recovery(c).as_deref(), Some(c.as_str()));
            let typed = format!("{}-{}", &c[..5], &c[5..]).to_uppercase();
            assert_eq!(normalize_recovery(&typed).as_deref(), Some(c.as_str()));
        }
        let distinct: std::collections::HashSet<_> = codes.iter().collect();
        assert_eq!(distinct.len(), 10);
        assert_eq!(normalize_recovery("short"), None);
        assert_eq!(normalize_recovery("abcdefghi0"), None, "0 is not in the alphabet");
        let h = KeyedHash::derive(&[1; 32], RECOVERY_LABEL);
        assert_eq!(h.hash("abc"), h.hash("abc"));
        assert_ne!(h.hash("abc"), KeyedHash::derive(&[2; 32], RECOVERY_LABEL).hash("abc"));
        assert_ne!(h.hash("abc"), KeyedHash::derive(&[1; 32], CSRF_LABEL).hash("abc"));
    }

    #[test]
    fn code_shape() {
        assert_eq!(looks_like_code(" 123 456 ").as_deref(), Some("123456"));
        assert_eq!(looks_like_code("12345a"), None);
        assert_eq!(looks_like_code("1234567"), None);
    }
}
