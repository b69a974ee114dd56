//! Small mechanisms with no product knowledge: clocks and time formatting, sealing secrets,
//! the outbound-network rule, rate limiting.

pub mod clock;
pub(crate) mod crypto;
pub(crate) mod guard;
pub(crate) mod outbound;
pub mod ratelimit;
pub(crate) mod time;
pub(crate) mod worker;
// issue 12: allocator settings
pub mod memory;
// Issue 11 (scale-out).
pub mod peers;
// Issue 11 (scale-out): rate-limit windows shared by every instance.
pub mod ratelimit_pg;
// Issue 11: the operator's metrics (`/metrics`).
pub mod metrics;
// Issue 11 (scale-out): the /v1 per-key budget shared by every instance.
pub mod ratelimit_slices;
// Issue 11 (scale-out): the failed API-key authentications per address, shared.
pub(crate) mod ratelimit_refusals;
