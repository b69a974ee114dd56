//! Rows of issue 10: two-factor sign-in (TOTP) for dashboard users.

use crate::{Timestamp, UserId};

/// A user's TOTP set-up: the secret sealed with the master key (the store never sees it in the
/// clear), when the first code confirmed it (`None`: set up, not yet on), the newest time step
/// accepted (a code of that step or an older one is refused), and how many recovery codes are
/// still unused.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TotpRow {
    pub user_id: UserId,
    pub secret: Vec<u8>,
    pub confirmed_at: Option<Timestamp>,
    pub last_step: Option<i64>,
    pub created_at: Timestamp,
    pub recovery_left: i64,
}
