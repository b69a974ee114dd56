//! Issue 11 (scale-out): the `/v1` per-key request budget shared by every instance.

/// What [`crate::Store::take_rate_slice`] granted.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct RateSlice {
    /// Requests granted (0 when the budget has no room now).
    pub granted: i64,
    /// The bucket's theoretical arrival time after this slice, in nanoseconds since the epoch:
    /// with `granted = 0`, the budget has room again at `tat_ns - tolerance + interval`.
    pub tat_ns: i64,
}
