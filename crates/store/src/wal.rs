//! Issue 8 (performance): SQLite's write-ahead log is copied back into the database by a
//! background loop, not by whichever commit happens to cross SQLite's threshold.

/// What one checkpoint did.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct WalCheckpoint {
    /// The log was in use in a way that kept the checkpoint from running at all.
    pub busy: bool,
    /// Frames (pages) in the log.
    pub frames: i64,
    /// Of those, frames now copied into the database (fewer when a reader still needs older
    /// ones; the next checkpoint copies the rest).
    pub copied: i64,
}
