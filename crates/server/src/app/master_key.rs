//! Issue 11: the master key's derived keys, and `reconbanker admin rotate-master-key`.
//!
//! Everything sealed with the master key (account config secrets, TOTP secrets, failure
//! evidence) is rewritten under a new key in one transaction: every value is opened with the old
//! key first, and one that does not open changes nothing. Two keys derived from the master key
//! have outputs that outlive any process — the checksum inside every issued API key and the
//! keyed hash of the stored recovery codes — so a rotation *carries* them: they are kept in
//! `carried_keys`, sealed with the new master key, and used instead of deriving them from it.
//! Issued API keys and recovery codes keep working; a server started with the old key refuses to
//! start (its key does not open the carried keys).

use std::path::Path;

use reconbanker_store::{CarriedKeyRow, ResealCounts, SealedOwner, Store};

use crate::auth::api_key::CHECKSUM_LABEL;
use crate::auth::totp::RECOVERY_LABEL;
use crate::config::{Config, Secrets};
use crate::support::crypto::{derive_key, Sealer};
use crate::StartError;

/// The derived keys that are carried across rotations: `(label in carried_keys, derivation
/// label)`.
const CARRIED: [(&str, &[u8]); 2] = [("api-key-checksum", CHECKSUM_LABEL), ("recovery-codes", RECOVERY_LABEL)];

/// The derived keys the server runs with.
pub(crate) struct DerivedKeys {
    pub api_key_checksum: [u8; 32],
    pub recovery_codes: [u8; 32],
}

fn carried_aad(label: &str) -> Vec<u8> {
    format!("carried-key:{label}").into_bytes()
}

/// The associated data each sealed value is bound to (as its writer sealed it).
fn aad(owner: &SealedOwner) -> Vec<u8> {
    match owner {
        SealedOwner::AccountConfig(id) => crate::domain::account_config::aad(*id),
        SealedOwner::Totp(id) => super::two_factor::aad(*id),
        SealedOwner::Evidence(id) => id.0.as_bytes().to_vec(),
        SealedOwner::CarriedKey(label) => carried_aad(label),
        SealedOwner::Device(id) => crate::engine::device::aad(*id),
    }
}

/// The derived keys under `master`: the carried ones where a rotation left them (they must open
/// with `master`), else derived from `master` itself.
pub(crate) async fn derived_keys(store: &dyn Store, master: &[u8; 32]) -> Result<DerivedKeys, StartError> {
    let rows = store.carried_keys().await?;
    let sealer = Sealer::new(master);
    let mut keys = [[0u8; 32]; 2];
    for (slot, (label, derivation)) in keys.iter_mut().zip(CARRIED) {
        *slot = match rows.iter().find(|r| r.label == label) {
            None => derive_key(master, derivation),
            Some(row) => sealer
                .open(&row.sealed, &carried_aad(label))
                .ok()
                .and_then(|k| <[u8; 32]>::try_from(k.as_slice()).ok())
                .ok_or_else(|| {
                    StartError::Other(
                        "the master key (RECONBANKER_MASTER_KEY, else <data dir>/master.key) does not open this \
                         database's sealed keys: it was rotated with `reconbanker admin rotate-master-key`; \
                         start every instance with the new key"
                            .into(),
                    )
                })?,
        };
    }
    let [api_key_checksum, recovery_codes] = keys;
    Ok(DerivedKeys {
        api_key_checksum,
        recovery_codes,
    })
}

/// The environment variable that may give the new key to `admin rotate-master-key`.
pub const NEW_KEY_ENV: &str = "RECONBANKER_NEW_MASTER_KEY";

/// Reads the new master key: from `file` (64 hex characters, surrounding whitespace ignored), else
/// from [`NEW_KEY_ENV`].
pub fn read_new_key(file: Option<&Path>, env: Option<String>) -> Result<[u8; 32], StartError> {
    let (text, from) = match (file, env) {
        (Some(path), _) => (
            std::fs::read_to_string(path)
                .map_err(|e| StartError::Other(format!("cannot read the new key file {}: {e}", path.display())))?,
            path.display().to_string(),
        ),
        (None, Some(text)) => (text, NEW_KEY_ENV.to_owned()),
        (None, None) => {
            return Err(StartError::Other(format!(
                "give the new master key with --new-key-file FILE or {NEW_KEY_ENV} (64 hexadecimal characters; \
                 e.g. `openssl rand -hex 32`)"
            )))
        }
    };
    hex::decode(text.trim())
        .ok()
        .and_then(|b| <[u8; 32]>::try_from(b.as_slice()).ok())
        .ok_or_else(|| StartError::Other(format!("{from} must hold 64 hexadecimal characters (32 bytes)")))
}

/// What a rotation did.
#[derive(Debug)]
pub struct Rotated {
    pub counts: ResealCounts,
    /// The key file rewritten with the new key (when the old key came from it).
    pub key_file: Option<std::path::PathBuf>,
}

/// Re-seals every sealed value of the configured database under `new`, in one transaction. The
/// old key is the configured one (`RECONBANKER_MASTER_KEY`, else `<data dir>/master.key`, which
/// is then rewritten with the new key once the database is). On SQLite it takes the instance lock:
/// no server may be running; on PostgreSQL every instance must be stopped first (documented).
pub async fn rotate_master_key(config: &Config, new: [u8; 32]) -> Result<Rotated, StartError> {
    let from_file = config.master_key.is_none();
    let key_path = config.data_dir.join("master.key");
    if from_file && !key_path.exists() {
        return Err(StartError::Other(format!(
            "no master key to rotate: RECONBANKER_MASTER_KEY is not set and {} does not exist",
            key_path.display()
        )));
    }
    let secrets = Secrets::load_or_create(config)?;
    let old = *secrets.master_key.expose();
    if old == new {
        return Err(StartError::Other(
            "the new master key is the current one: nothing to rotate".into(),
        ));
    }
    let _lock = super::instance_lock::acquire(config)
        .map_err(|e| StartError::Other(format!("stop every instance before rotating the master key: {e}")))?;
    let store = super::wiring::open_store(config).await?;
    let result = reseal(&*store, &old, &new).await;
    store.close().await;
    let counts = result?;
    let key_file = if from_file {
        write_key_file(&key_path, &new)?;
        Some(key_path)
    } else {
        None
    };
    Ok(Rotated { counts, key_file })
}

/// The rotation itself: the carried keys to add (those not carried yet, derived from `old`),
/// then every sealed value opened with `old` and sealed with `new`, all in one transaction.
async fn reseal(store: &dyn Store, old: &[u8; 32], new: &[u8; 32]) -> Result<ResealCounts, StartError> {
    let (old_sealer, new_sealer) = (Sealer::new(old), Sealer::new(new));
    let carried = store.carried_keys().await?;
    let now = reconbanker_store::now();
    let add: Vec<CarriedKeyRow> = CARRIED
        .iter()
        .filter(|(label, _)| !carried.iter().any(|r| r.label == *label))
        .map(|(label, derivation)| CarriedKeyRow {
            label: (*label).to_owned(),
            sealed: new_sealer.seal(&derive_key(old, derivation), &carried_aad(label)),
            created_at: now,
        })
        .collect();
    let reseal = |owner: &SealedOwner, sealed: &[u8]| -> Result<Vec<u8>, String> {
        let aad = aad(owner);
        let plain = old_sealer
            .open(sealed, &aad)
            .map_err(|_| "does not open with the current master key".to_owned())?;
        Ok(new_sealer.seal(&plain, &aad))
    };
    match store.reseal_all(&reseal, &add).await? {
        Ok(counts) => Ok(counts),
        Err(refused) => Err(StartError::Other(format!(
            "nothing was changed: the {} {} (is RECONBANKER_MASTER_KEY, else <data dir>/master.key, the key \
             the server runs with?)",
            describe(&refused.owner),
            refused.reason
        ))),
    }
}

fn describe(owner: &SealedOwner) -> String {
    match owner {
        SealedOwner::AccountConfig(id) => format!("secrets of account {id}"),
        SealedOwner::Totp(id) => format!("two-factor secret of user {id}"),
        SealedOwner::Evidence(id) => format!("failure evidence {}", id.0),
        SealedOwner::CarriedKey(label) => format!("carried key {label}"),
        SealedOwner::Device(id) => format!("remembered device of account {id}"),
    }
}

/// Replaces the key file: a new file (mode 0600) beside it, synced, renamed over it.
fn write_key_file(path: &Path, key: &[u8; 32]) -> Result<(), StartError> {
    use std::io::Write;
    let tmp = path.with_extension("key.new");
    let _ = std::fs::remove_file(&tmp);
    let mut options = std::fs::OpenOptions::new();
    options.write(true).create_new(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt;
        options.mode(0o600);
    }
    let written = options.open(&tmp).and_then(|mut f| {
        f.write_all(format!("{}\n", hex::encode(key)).as_bytes())?;
        f.sync_all()
    });
    written.and_then(|_| std::fs::rename(&tmp, path)).map_err(|e| {
        StartError::Other(format!(
            "the database is re-sealed with the new key, but {} could not be replaced ({e}): write the new key \
             into it (or set RECONBANKER_MASTER_KEY) before starting the server",
            path.display()
        ))
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_new_key_comes_from_a_file_or_the_environment() {
        let dir = tempfile::tempdir().expect("tempdir");
        let file = dir.path().join("k");
        std::fs::write(&file, format!(" {}\n", "ab".repeat(32))).expect("write");
        assert_eq!(
            read_new_key(Some(&file), Some("00".repeat(32))).expect("file"),
            [0xab; 32]
        );
        assert_eq!(read_new_key(None, Some("01".repeat(32))).expect("env"), [1; 32]);
        for bad in ["", "abcd", &"zz".repeat(32), &"ab".repeat(33)] {
            let e = read_new_key(None, Some(bad.to_owned())).expect_err(bad).to_string();
            assert!(e.contains(NEW_KEY_ENV) && e.contains("64 hexadecimal"), "{e}");
        }
        let e = read_new_key(None, None).expect_err("none").to_string();
        assert!(e.contains("--new-key-file") && e.contains(NEW_KEY_ENV), "{e}");
        let e = read_new_key(Some(&dir.path().join("missing")), None)
            .expect_err("missing")
            .to_string();
        assert!(e.contains("cannot read the new key file"), "{e}");
    }

    #[test]
    fn carried_derivations_match_the_running_ones() {
        // A key carried over must be exactly what the server derived before the first rotation.
        let master = [9u8; 32];
        let from_master = crate::auth::api_key::Checksum::from_master_key(&master);
        let carried = crate::auth::api_key::Checksum::from_key(&derive_key(&master, CHECKSUM_LABEL));
        let key = crate::auth::api_key::generate(&from_master).full;
        assert!(crate::auth::api_key::parse(&key, &carried).is_some_and(|p| !p.legacy));
        assert_eq!(
            crate::auth::totp::KeyedHash::derive(&master, RECOVERY_LABEL).hash("abc"),
            crate::auth::totp::KeyedHash::from_key(derive_key(&master, RECOVERY_LABEL)).hash("abc")
        );
    }
}
