//! Issue 11 (scale-out): several real `reconbanker serve` processes on one database. These
//! tests start the built binary; the PostgreSQL ones need `TEST_DATABASE_URL` (skipped with a
//! notice without it, unless `REQUIRE_POSTGRES=1`).

mod harness;

mod events;
mod keys;
mod sessions;
mod startup;
mod tickets;
// The assistance broker across instances, take-over.
mod handoff;
// One /v1 budget per key across instances.
mod v1_budget;
// Failed API-key authentications per address: one window across instances.
mod auth_failures;
// The documented nginx configuration in front of two instances.
mod nginx;
// The outbox across instances: every webhook once.
mod webhooks;
