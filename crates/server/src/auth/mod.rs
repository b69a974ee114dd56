//! Credentials: the API-key format and its cache, dashboard JWTs, password hashing and the
//! realtime tickets.

pub mod api_key;
pub mod jwt;
pub mod key_cache;
pub mod password;
// Revoked keys and ended logins end the streams they opened, at once.
pub mod revocations;
pub(crate) mod tickets;
// Issue 10: two-factor sign-in.
pub mod totp;
