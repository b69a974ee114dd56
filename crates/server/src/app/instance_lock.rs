//! One serving instance per SQLite database (issue 11). SQLite has no way to share the
//! in-process seams (broker, bus, caches, limiter) between processes, so a second `serve` on the
//! same database file would silently break them; it is refused at start instead.
//!
//! The guard is an exclusive OS file lock (`flock` on Unix, `LockFileEx` on Windows, through
//! `std::fs::File::try_lock`) on `<database file>.instance.lock`, next to the database. The OS
//! releases it when the process ends, however it ends (`kill -9` included), so there is no stale
//! lock to clean up. Only `serve` takes it: `migrate` and `admin` commands may still run beside a
//! serving instance, as SQLite allows. PostgreSQL needs no guard: several instances may share it.

use std::fs::{File, OpenOptions, TryLockError};
use std::path::{Path, PathBuf};

use crate::config::{self, Config};
use crate::StartError;

/// Held for as long as this process serves; dropping it releases the lock.
#[derive(Debug)]
pub(crate) struct InstanceLock {
    _file: File,
}

/// The database file of a `sqlite:` URL, or `None` for PostgreSQL and in-memory databases.
pub(crate) fn sqlite_file(url: &str) -> Option<PathBuf> {
    let rest = url.strip_prefix("sqlite:")?;
    let rest = rest.strip_prefix("//").unwrap_or(rest);
    let path = rest.split('?').next().unwrap_or_default();
    if path.is_empty() || path == ":memory:" || url.contains("mode=memory") {
        return None;
    }
    Some(PathBuf::from(path))
}

/// The lock file that guards `db`.
pub(crate) fn lock_path(db: &Path) -> PathBuf {
    let mut name = db.file_name().map(|n| n.to_os_string()).unwrap_or_default();
    name.push(".instance.lock");
    db.with_file_name(name)
}

/// Takes the SQLite database's instance lock (nothing to take on PostgreSQL).
pub(crate) fn acquire(config: &Config) -> Result<Option<InstanceLock>, StartError> {
    let Some(db) = sqlite_file(&config.database_url) else {
        return Ok(None);
    };
    config::create_data_dir(&config.data_dir)?;
    let path = lock_path(&db);
    let file = OpenOptions::new()
        .create(true)
        .truncate(false)
        .write(true)
        .open(&path)
        .map_err(|e| StartError::Other(format!("cannot open the instance lock {}: {e}", path.display())))?;
    match file.try_lock() {
        Ok(()) => Ok(Some(InstanceLock { _file: file })),
        Err(TryLockError::WouldBlock) => Err(StartError::Other(format!(
            "another reconbanker instance is already serving the SQLite database {} (it holds the lock {}). \
             A SQLite database serves one instance only; stop the other one, or use PostgreSQL \
             (DATABASE_URL=postgres://…) to run several instances",
            db.display(),
            path.display()
        ))),
        Err(TryLockError::Error(e)) => Err(StartError::Other(format!(
            "cannot lock the instance lock {}: {e}",
            path.display()
        ))),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_database_file_of_a_url() {
        for (url, want) in [
            ("sqlite://./data/reconbanker.db", Some("./data/reconbanker.db")),
            (
                "sqlite:///var/lib/rbk/db.sqlite?mode=rwc",
                Some("/var/lib/rbk/db.sqlite"),
            ),
            ("sqlite:rel.db", Some("rel.db")),
            ("sqlite::memory:", None),
            ("sqlite://file.db?mode=memory", None),
            ("postgres://u@h/db", None),
        ] {
            assert_eq!(sqlite_file(url), want.map(PathBuf::from), "{url}");
        }
        assert_eq!(
            lock_path(Path::new("/d/reconbanker.db")),
            PathBuf::from("/d/reconbanker.db.instance.lock")
        );
    }
}
