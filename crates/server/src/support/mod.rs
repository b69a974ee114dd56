//! Small mechanisms with no product knowledge: clocks and time formatting, sealing secrets,
//! the outbound-network rule, rate limiting.

pub mod clock;
pub mod crypto;
pub mod guard;
pub mod ratelimit;
pub mod time;
