//! Issue 11 (metrics): what an instance's `/metrics` reads from the store.

/// The connection pool right now (read without a round trip).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct PoolUsage {
    /// Connections open (idle or in use).
    pub open: u32,
    /// Open connections no one is using.
    pub idle: u32,
    /// The most the pool opens.
    pub max: u32,
}

impl PoolUsage {
    /// Open connections in use.
    pub fn in_use(&self) -> u32 {
        self.open.saturating_sub(self.idle)
    }
}

/// The gauges read from the database in one round trip.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct InstanceGauges {
    /// Webhook deliveries waiting to be sent (every instance's: the outbox is shared).
    pub outbox_pending: i64,
    /// Deliveries that used up their attempts (dead letters), every instance's.
    pub outbox_dead: i64,
    /// Session leases `owner` holds unexpired.
    pub session_leases: i64,
    /// Pending-orders poll leases `owner` holds unexpired.
    pub poll_leases: i64,
}
