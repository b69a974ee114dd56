//! The API key format (docs/product.md §3): `rbk_` + 8 lowercase hex (the public, unique prefix) + `_` +
//! 64 lowercase hex (the secret). The secret's last 8 hex are the CRC-32 (IEEE) of everything
//! before them (`rbk_<prefix>_<56 hex>`), so a mistyped or made-up key is refused without a
//! database read, and secret scanners can recognise real keys. Only SHA-256(secret) is stored.

use rand::RngCore;
use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;

pub const KEY_PREFIX: &str = "rbk_";
const PREFIX_HEX: usize = 8;
const SECRET_HEX: usize = 64;
const CHECKSUM_HEX: usize = 8;
/// `rbk_` + 8 + `_` + 64.
pub const KEY_LEN: usize = KEY_PREFIX.len() + PREFIX_HEX + 1 + SECRET_HEX;

/// A freshly generated key: the full text (shown once) and what is stored.
pub struct NewKey {
    pub full: String,
    pub prefix: String,
    pub secret_hash: [u8; 32],
}

/// A key that has the right shape and checksum (not yet known to be real).
#[derive(Debug, PartialEq, Eq)]
pub struct ParsedKey<'a> {
    pub prefix: &'a str,
    pub secret: &'a str,
}

pub fn generate() -> NewKey {
    let mut rng = rand::rngs::OsRng;
    let mut prefix = [0u8; PREFIX_HEX / 2];
    rng.fill_bytes(&mut prefix);
    let mut body = [0u8; (SECRET_HEX - CHECKSUM_HEX) / 2];
    rng.fill_bytes(&mut body);
    let prefix = hex::encode(prefix);
    let head = format!("{KEY_PREFIX}{prefix}_{}", hex::encode(body));
    let full = format!("{head}{:08x}", crc32fast::hash(head.as_bytes()));
    let secret = &full[KEY_LEN - SECRET_HEX..];
    NewKey {
        secret_hash: hash_secret(secret),
        prefix,
        full,
    }
}

pub fn hash_secret(secret: &str) -> [u8; 32] {
    Sha256::digest(secret.as_bytes()).into()
}

/// Checks shape and checksum; `None` for anything that cannot be a key we issued.
pub fn parse(text: &str) -> Option<ParsedKey<'_>> {
    if text.len() != KEY_LEN || !text.starts_with(KEY_PREFIX) {
        return None;
    }
    let rest = &text[KEY_PREFIX.len()..];
    let (prefix, rest) = rest.split_at(PREFIX_HEX);
    let secret = rest.strip_prefix('_')?;
    let lower_hex = |s: &str| s.bytes().all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b));
    if !lower_hex(prefix) || !lower_hex(secret) {
        return None;
    }
    let (head, checksum) = text.split_at(KEY_LEN - CHECKSUM_HEX);
    if format!("{:08x}", crc32fast::hash(head.as_bytes())) != checksum {
        return None;
    }
    Some(ParsedKey { prefix, secret })
}

/// Constant-time comparison of a presented secret with a stored hash.
pub fn verify(secret: &str, stored_hash: &[u8]) -> bool {
    hash_secret(secret).ct_eq(stored_hash).into()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn generated_keys_have_the_documented_shape_and_parse() {
        let k = generate();
        assert_eq!(k.full.len(), KEY_LEN);
        assert!(k.full.starts_with("rbk_"));
        assert_eq!(&k.full[4..12], k.prefix);
        assert_eq!(&k.full[12..13], "_");
        assert!(k.full[13..]
            .bytes()
            .all(|b| b.is_ascii_hexdigit() && !b.is_ascii_uppercase()));
        let p = parse(&k.full).expect("own key parses");
        assert_eq!(p.prefix, k.prefix);
        assert!(verify(p.secret, &k.secret_hash));
        assert!(!verify(p.secret, &[0u8; 32]));
        assert_ne!(generate().full, k.full);
    }

    #[test]
    fn malformed_or_mistyped_keys_are_refused() {
        let k = generate().full;
        let mut typo = k.clone().into_bytes();
        typo[20] = if typo[20] == b'0' { b'1' } else { b'0' };
        let typo = String::from_utf8(typo).expect("ascii");
        for bad in [
            "",
            "rbk_",
            &k[..k.len() - 1],
            &format!("{k}0"),
            &k.to_uppercase(),
            &k.replacen("rbk_", "rbx_", 1),
            &typo,
            &k.replacen('_', "-", 2),
        ] {
            assert!(parse(bad).is_none(), "{bad:?}");
        }
    }
}
