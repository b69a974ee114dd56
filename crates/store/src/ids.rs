//! Newtype ids, so that an account id can never be passed where an API-key id is expected.

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Serialize};
use uuid::Uuid;

macro_rules! id_type {
    ($(#[$meta:meta])* $name:ident) => {
        $(#[$meta])*
        #[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
        #[serde(transparent)]
        pub struct $name(pub Uuid);

        impl $name {
            /// A fresh, time-ordered (v7) id.
            pub fn new() -> Self {
                Self(Uuid::now_v7())
            }
        }

        impl Default for $name {
            fn default() -> Self {
                Self::new()
            }
        }

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                self.0.fmt(f)
            }
        }

        impl FromStr for $name {
            type Err = uuid::Error;
            fn from_str(s: &str) -> Result<Self, Self::Err> {
                Uuid::parse_str(s).map(Self)
            }
        }

        impl From<Uuid> for $name {
            fn from(u: Uuid) -> Self {
                Self(u)
            }
        }
    };
}

id_type!(
    /// A dashboard user.
    UserId
);
id_type!(
    /// A bank (served by a connector).
    BankId
);
id_type!(
    /// A user's bank account (a login at a bank).
    AccountId
);
id_type!(
    /// An API key (the row id, not the key's prefix).
    ApiKeyId
);
id_type!(
    /// An assistance request (a prompt for a one-time code).
    AssistanceRequestId
);
id_type!(
    /// A dashboard JWT's `jti`.
    TokenId
);
id_type!(
    /// A movement (a bank transaction) as stored.
    MovementId
);
id_type!(
    /// One session run (a login, its reads, its end).
    RunId
);
id_type!(
    /// A notification webhook delivery (its `webhook-id`).
    DeliveryId
);
id_type!(
    /// One registration of an order (a conciliation request); the API's request `id`.
    ConciliationRequestId
);
id_type!(
    /// One poll of an account's pending-orders endpoint.
    PollId
);
id_type!(
    /// A match of a movement to a conciliation request.
    ConciliationMatchId
);
id_type!(
    /// One recorded matching attempt of a conciliation request.
    AttemptId
);
// Issue 9 (real banks).
id_type!(
    /// One piece of failure evidence of a run (a screenshot and a DOM snapshot, sealed).
    EvidenceId
);
