//! Push: the event log and bus, the notification webhook worker, and the cursor that streams
//! (SSE and WebSocket) read the log with.

pub mod events;
pub(crate) mod feed;
pub mod webhooks;
// Issue 11 (scale-out).
pub(crate) mod pg_bus;
