//! The API key format (docs/product.md §3): `rbk_` + 8 lowercase hex (the public, unique prefix) + `_` +
//! 64 lowercase hex (the secret). The secret's last 8 hex are a keyed checksum of everything
//! before them (`rbk_<prefix>_<56 hex>`): the first 4 bytes of HMAC-SHA256 under a key derived
//! from the master key. Only the server can compute it, so a mistyped, made-up or forged key is
//! refused without a database read (a plain CRC let anyone make well-formed keys that each cost
//! a lookup). Keys issued before it carry a CRC-32 (IEEE) instead: [`parse`] marks them `legacy`,
//! and the key directory looks them up only when their prefix names a key that exists (so they
//! keep working, and a forged CRC key is still refused from memory). Only SHA-256(secret) is
//! stored.

use hmac::{Hmac, Mac};
use rand::RngCore;
use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;

/// The label of the API-key checksum's key (derived from the master key).
pub const CHECKSUM_LABEL: &[u8] = b"reconbanker/api-key-checksum/v1";

/// The keyed checksum of API keys. Cloning the pre-keyed HMAC state costs no key schedule.
#[derive(Clone)]
pub struct Checksum {
    mac: Hmac<Sha256>,
}

impl Checksum {
    /// The checksum key is derived from the master key (HMAC with a fixed label), so it needs no
    /// file of its own and changes only if the master key does.
    pub fn from_master_key(master: &[u8; 32]) -> Self {
        Self::from_key(&crate::support::crypto::derive_key(master, CHECKSUM_LABEL))
    }

    /// From the derived key itself (issue 11: a key carried across master-key rotations).
    pub fn from_key(key: &[u8; 32]) -> Self {
        Self {
            mac: <Hmac<Sha256> as Mac>::new_from_slice(key).unwrap_or_else(|_| unreachable_key()),
        }
    }

    fn of(&self, head: &[u8]) -> [u8; 4] {
        let mut mac = self.mac.clone();
        mac.update(head);
        let tag = mac.finalize().into_bytes();
        [tag[0], tag[1], tag[2], tag[3]]
    }
}

/// HMAC accepts keys of any length; this is never reached.
fn unreachable_key() -> Hmac<Sha256> {
    unreachable!("HMAC-SHA256 takes a key of any length")
}

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
    /// The checksum is the CRC-32 of keys issued before the keyed checksum.
    pub legacy: bool,
}

pub fn generate(checksum: &Checksum) -> NewKey {
    let mut rng = rand::rngs::OsRng;
    let mut prefix = [0u8; PREFIX_HEX / 2];
    rng.fill_bytes(&mut prefix);
    let mut body = [0u8; (SECRET_HEX - CHECKSUM_HEX) / 2];
    rng.fill_bytes(&mut body);
    let prefix = hex::encode(prefix);
    let head = format!("{KEY_PREFIX}{prefix}_{}", hex::encode(body));
    let full = format!("{head}{}", hex::encode(checksum.of(head.as_bytes())));
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

/// Checks the shape only: `(prefix, secret)` of anything shaped like a key (issue 13: a key
/// whose prefix is cached is judged by its secret's hash alone, which covers the checksum).
pub fn split(text: &str) -> Option<(&str, &str)> {
    if text.len() != KEY_LEN || !text.starts_with(KEY_PREFIX) {
        return None;
    }
    let rest = text.get(KEY_PREFIX.len()..)?;
    let (prefix, rest) = rest.split_at_checked(PREFIX_HEX)?;
    let secret = rest.strip_prefix('_')?;
    let lower_hex = |s: &str| s.bytes().all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b));
    if !lower_hex(prefix) || !lower_hex(secret) {
        return None;
    }
    Some((prefix, secret))
}

/// Checks shape and checksum; `None` for anything that cannot be a key we issued.
pub fn parse<'a>(text: &'a str, checksum: &Checksum) -> Option<ParsedKey<'a>> {
    let (prefix, secret) = split(text)?;
    let (head, sent) = text.split_at(KEY_LEN - CHECKSUM_HEX);
    let mut tag = [0u8; 4];
    hex::decode_to_slice(sent, &mut tag).ok()?;
    if bool::from(checksum.of(head.as_bytes()).ct_eq(&tag)) {
        return Some(ParsedKey {
            prefix,
            secret,
            legacy: false,
        });
    }
    (crc32fast::hash(head.as_bytes()).to_be_bytes() == tag).then_some(ParsedKey {
        prefix,
        secret,
        legacy: true,
    })
}

/// Constant-time comparison of a presented secret with a stored hash.
pub fn verify(secret: &str, stored_hash: &[u8]) -> bool {
    hash_secret(secret).ct_eq(stored_hash).into()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn checksum() -> Checksum {
        Checksum::from_master_key(&[7u8; 32])
    }

    #[test]
    fn generated_keys_have_the_documented_shape_and_parse() {
        let c = checksum();
        let k = generate(&c);
        assert_eq!(k.full.len(), KEY_LEN);
        assert!(k.full.starts_with("rbk_"));
        assert_eq!(&k.full[4..12], k.prefix);
        assert_eq!(&k.full[12..13], "_");
        assert!(k.full[13..]
            .bytes()
            .all(|b| b.is_ascii_hexdigit() && !b.is_ascii_uppercase()));
        let p = parse(&k.full, &c).expect("own key parses");
        assert_eq!(p.prefix, k.prefix);
        assert!(verify(p.secret, &k.secret_hash));
        assert!(!verify(p.secret, &[0u8; 32]));
        assert_ne!(generate(&c).full, k.full);
    }

    #[test]
    fn a_plain_crc_is_legacy_and_another_servers_checksum_is_refused() {
        let c = checksum();
        let k = generate(&c).full;
        assert!(!parse(&k, &c).expect("own key").legacy);
        let head = &k[..KEY_LEN - CHECKSUM_HEX];
        let crc = format!("{head}{:08x}", crc32fast::hash(head.as_bytes()));
        // Anyone can compute a CRC: the directory looks it up only for a prefix that exists.
        assert!(parse(&crc, &c).expect("an old key's shape").legacy);
        let other = generate(&Checksum::from_master_key(&[8u8; 32])).full;
        assert!(parse(&other, &c).is_none(), "another master key, another checksum");
    }

    #[test]
    fn malformed_or_mistyped_keys_are_refused() {
        let c = checksum();
        let k = generate(&c).full;
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
            assert!(parse(bad, &c).is_none(), "{bad:?}");
        }
    }
}
