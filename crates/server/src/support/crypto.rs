//! Secrets at rest: AES-256-GCM under the server's master key. Each sealed value is
//! `nonce (12 bytes) || ciphertext+tag`, bound to its owner by associated data so a sealed
//! value copied to another row does not open there.

use aes_gcm::aead::{Aead, KeyInit, OsRng, Payload};
use aes_gcm::{AeadCore, Aes256Gcm, Key, Nonce};

const NONCE_LEN: usize = 12;

#[derive(Clone)]
pub struct Sealer {
    cipher: Aes256Gcm,
}

#[derive(Debug, thiserror::Error)]
#[error("a sealed value could not be opened (wrong master key or tampered data)")]
pub struct OpenError;

impl Sealer {
    pub fn new(key: &[u8; 32]) -> Self {
        Self {
            cipher: Aes256Gcm::new(Key::<Aes256Gcm>::from_slice(key)),
        }
    }

    pub fn seal(&self, plaintext: &[u8], aad: &[u8]) -> Vec<u8> {
        let nonce = Aes256Gcm::generate_nonce(&mut OsRng);
        // AES-GCM refuses only plaintexts over 64 GiB; ours are a few KiB at most, so this is an
        // invariant, not an I/O failure (an empty ciphertext must never be stored instead).
        let ct = self
            .cipher
            .encrypt(&nonce, Payload { msg: plaintext, aad })
            .expect("AES-GCM encrypts any in-memory buffer under 64 GiB");
        let mut out = Vec::with_capacity(NONCE_LEN + ct.len());
        out.extend_from_slice(&nonce);
        out.extend_from_slice(&ct);
        out
    }

    pub fn open(&self, sealed: &[u8], aad: &[u8]) -> Result<Vec<u8>, OpenError> {
        if sealed.len() < NONCE_LEN {
            return Err(OpenError);
        }
        let (nonce, ct) = sealed.split_at(NONCE_LEN);
        self.cipher
            .decrypt(Nonce::from_slice(nonce), Payload { msg: ct, aad })
            .map_err(|_| OpenError)
    }
}

/// A key derived from the master key for one purpose: HMAC-SHA256(master, label).
pub fn derive_key(master: &[u8; 32], label: &[u8]) -> [u8; 32] {
    use hmac::{Hmac, Mac};
    let mut key = [0u8; 32];
    // HMAC takes a key of any length: `new_from_slice` cannot fail here.
    if let Ok(mut mac) = <Hmac<sha2::Sha256> as Mac>::new_from_slice(master) {
        mac.update(label);
        key.copy_from_slice(&mac.finalize().into_bytes());
    }
    key
}

impl std::fmt::Debug for Sealer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Sealer(<redacted>)")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trip_and_binding() {
        let s = Sealer::new(&[7u8; 32]);
        let sealed = s.seal(b"hunter2", b"account:1");
        assert!(!sealed.windows(7).any(|w| w == b"hunter2"));
        assert_eq!(s.open(&sealed, b"account:1").expect("opens"), b"hunter2");
        assert!(s.open(&sealed, b"account:2").is_err(), "bound to its associated data");
        assert!(
            Sealer::new(&[8u8; 32]).open(&sealed, b"account:1").is_err(),
            "wrong key"
        );
        let mut tampered = sealed.clone();
        let last = tampered.len() - 1;
        tampered[last] ^= 1;
        assert!(s.open(&tampered, b"account:1").is_err());
        assert!(s.open(&[1, 2, 3], b"account:1").is_err());
        assert_ne!(s.seal(b"x", b""), s.seal(b"x", b""), "fresh nonce each time");
    }
}
