//! Black-box HTTP tests: each test starts the real application on 127.0.0.1:0 with its own
//! fresh database and drives it with a real HTTP client.

mod harness;

mod accounts;
mod api_keys;
mod cli;
mod engine;
mod expiry;
mod failures;
mod layers;
mod matching;
mod openapi;
mod passthrough;
mod readme;
mod reconcile;
mod review;
mod streams;
mod surfaces;
mod users;
mod v1;
mod webhooks;

// issue 12: hardening
mod crash;
mod hardening;
mod log_secrets;
mod openapi_dashboard;
mod process;
// issue 9: the flows on the JavaScript sandbox bank, in headless Chromium.
mod browser;
// Issue 10: two-factor sign-in.
mod two_factor;
// Issue 10: the dashboard in the browser (over HTTP).
mod ui;
// Issue 10: the reconciliation review screen (over HTTP).
mod ui_review;
// issue 10: the account page
mod ui_account;
// Issue 11: master-key rotation (the real binary).
mod rotation;
// Issue 11: RECONBANKER_ROLES (the real binary).
mod roles;
// issue 10: Settings for administrators (banks) and the API keys' account restriction.
mod ui_settings;
// issue 10: the reconciliation list's paging and external-id search.
mod ui_review_list;
// Issue 11: /metrics (Prometheus).
mod metrics;
// Issue 11: /metrics behind a bearer token.
mod metrics_auth;
