//! The other instances on the same database (issue 11): what this instance tells them when a
//! cache of theirs went stale, or when an account is asked to read now. A single instance has no
//! peers ([`Alone`]); on PostgreSQL the composition root plugs in one that sends a `NOTIFY`
//! (`app::cluster`), which every instance hears, this one included.

use async_trait::async_trait;
use uuid::Uuid;

/// What the other instances are told: a cached view that changed in the database, or a read
/// asked for now.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Invalidation {
    /// An API key (by its public prefix) was revoked.
    Key(String),
    /// An account was deleted.
    Account(Uuid),
    /// The account was asked to read its bank now (`POST /accounts/:id/scrape`, the dashboard's
    /// button): the engine instance holding its session reads, or one takes it and logs in.
    Scrape(Uuid),
    /// A dashboard login of this user ended (signed out): the streams it opened end.
    LoginEnded(Uuid),
}

impl Invalidation {
    /// The signal payload: `k:<prefix>`, `a:<account id>` or `s:<account id>`.
    pub fn encode(&self) -> String {
        match self {
            Invalidation::Key(prefix) => format!("k:{prefix}"),
            Invalidation::Account(id) => format!("a:{id}"),
            Invalidation::Scrape(id) => format!("s:{id}"),
            Invalidation::LoginEnded(user) => format!("l:{user}"),
        }
    }

    /// The invalidation a payload carries, if it is one.
    pub fn decode(payload: &str) -> Option<Self> {
        match payload.split_once(':')? {
            ("k", prefix) if !prefix.is_empty() => Some(Invalidation::Key(prefix.to_owned())),
            ("a", id) => id.parse().ok().map(Invalidation::Account),
            ("s", id) => id.parse().ok().map(Invalidation::Scrape),
            ("l", user) => user.parse().ok().map(Invalidation::LoginEnded),
            _ => None,
        }
    }
}

#[derive(Debug, thiserror::Error)]
#[error("could not reach the other instances: {0}")]
pub struct PeersError(pub String);

#[async_trait]
pub trait Peers: Send + Sync + 'static {
    /// Tells every other instance to drop its cached view; returns once the database has taken
    /// the announcement.
    async fn announce(&self, what: &Invalidation) -> Result<(), PeersError>;
    /// Whether announcements reach any instance (this one included): `false` alone, where the
    /// caller acts itself.
    fn heard(&self) -> bool;
}

/// One instance: nobody to tell.
pub struct Alone;

#[async_trait]
impl Peers for Alone {
    async fn announce(&self, _: &Invalidation) -> Result<(), PeersError> {
        Ok(())
    }

    fn heard(&self) -> bool {
        false
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn payloads_round_trip_and_others_are_not_invalidations() {
        let id = Uuid::new_v4();
        for i in [
            Invalidation::Key("0a1b2c3d".into()),
            Invalidation::Account(id),
            Invalidation::Scrape(id),
            Invalidation::LoginEnded(id),
        ] {
            assert_eq!(Invalidation::decode(&i.encode()), Some(i));
        }
        for other in ["e:42", "k:", "a:not-a-uuid", "s:", "s:1", "l:", "l:x", "", "k", "x:1"] {
            assert_eq!(Invalidation::decode(other), None, "{other}");
        }
    }
}
