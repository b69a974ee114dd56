//! Reconbanker's storage: the [`Store`] trait, the rows it reads and writes, and its two
//! adapters — SQLite (the embedded default) and PostgreSQL (scale-out). Both adapters share the
//! same SQL text (`sql/mod.rs`, mounted once per backend; numbered `$n` placeholders work on both),
//! and each has its own migrations folder.
//!
//! Tenant scoping lives in the queries: every read of user data takes the owner's id.

mod embedded;
mod error;
mod ids;
mod model;
mod passthrough;
mod reconcile;
mod review;
// Issue 11 (scale-out).
mod scaleout;
// Issue 10: two-factor sign-in.
mod two_factor;
// Issue 9 (real banks).
mod evidence;
// Issue 11: master-key rotation.
mod rotation;
// Issue 11 (scale-out): codes handed between instances, take-over.
mod handoff;
// Issue 11 (metrics).
mod gauges;
// Issue 11 (scale-out): the /v1 per-key budget shared by every instance.
mod rate_slices;
// Issue 8 (performance): WAL checkpoints off the commit path.
mod wal;

pub mod postgres;
pub mod sqlite;
// Issue 11 (scale-out): LISTEN/NOTIFY between instances on one PostgreSQL database.
pub mod signals;

use std::sync::Arc;

use async_trait::async_trait;

pub use error::{Constraint, StoreError, StoreResult};
pub use ids::*;
pub use model::*;
pub use passthrough::*;
pub use reconcile::*;
pub use review::*;
pub use scaleout::*;
pub use two_factor::*;
// Issue 9 (real banks).
pub use evidence::*;
// Issue 11: master-key rotation.
pub use rotation::*;
// Issue 11 (scale-out): codes handed between instances, take-over.
pub use handoff::*;
// Issue 11 (metrics).
pub use gauges::*;
// Issue 11 (scale-out): the /v1 per-key budget shared by every instance.
pub use rate_slices::*;
pub use wal::*;

/// Everything the application persists. Implemented by [`sqlite::SqliteStore`] and
/// [`postgres::PgStore`]; the contract test suite calls every method on both.
#[async_trait]
pub trait Store: Send + Sync + 'static {
    /// Which backend this is (`"sqlite"` or `"postgres"`), for logs and `/ready`.
    fn backend(&self) -> &'static str;
    /// Runs the backend's pending migrations.
    async fn migrate(&self) -> StoreResult<()>;
    /// A cheap round trip, for readiness.
    async fn ping(&self) -> StoreResult<()>;
    /// Closes the pool (waits for connections to be returned).
    async fn close(&self);

    // --- users and tokens ---
    /// `Conflict(Constraint::UsersEmail)` when the email is taken.
    async fn create_user(&self, user: &UserRow) -> StoreResult<()>;
    async fn user_by_email(&self, email: &str) -> StoreResult<Option<UserRow>>;
    async fn user_by_id(&self, id: UserId) -> StoreResult<Option<UserRow>>;
    /// The user behind a dashboard token, unless the token (`jti`) was revoked.
    async fn session_user(&self, id: UserId, jti: TokenId) -> StoreResult<Option<UserRow>>;
    async fn set_operation_mode(&self, id: UserId, mode: &str) -> StoreResult<bool>;
    /// Grants the admin role; `false` when no user has that email.
    async fn grant_admin(&self, email: &str) -> StoreResult<bool>;
    /// Idempotent.
    async fn revoke_token(&self, jti: TokenId, user: UserId, expires_at: Timestamp) -> StoreResult<()>;
    /// Forgets revocations of tokens that have expired anyway.
    async fn purge_revoked_tokens(&self, now: Timestamp) -> StoreResult<u64>;

    // --- banks ---
    async fn list_banks(&self) -> StoreResult<Vec<BankRow>>;
    async fn bank_by_id(&self, id: BankId) -> StoreResult<Option<BankRow>>;
    /// `Conflict(Constraint::BanksCode)` when the code is taken.
    async fn create_bank(&self, bank: &BankRow) -> StoreResult<()>;
    /// Inserts the bank if its code is new, else updates its name and login URL; returns it.
    async fn upsert_bank(&self, bank: &BankRow) -> StoreResult<BankRow>;

    // --- accounts ---
    async fn create_account(&self, account: &NewAccount) -> StoreResult<AccountRow>;
    async fn list_accounts(&self, user: UserId, limit: i64, offset: i64) -> StoreResult<Vec<AccountRow>>;
    async fn account_for_user(&self, user: UserId, id: AccountId) -> StoreResult<Option<AccountRow>>;
    /// The subset of `ids` that `user` owns.
    async fn owned_account_ids(&self, user: UserId, ids: &[AccountId]) -> StoreResult<Vec<AccountId>>;
    /// Deletes the account with everything that hangs off it, and its events up to
    /// `history_through` (a `seq`); `false` if not the user's. The caller passes the log's head
    /// from before it announced the account's end: the events announcing it (a cancelled code
    /// request, a stopped session) stay for the streams to deliver, until the log's retention.
    async fn delete_account(&self, user: UserId, id: AccountId, history_through: i64) -> StoreResult<bool>;
    async fn account_config(&self, user: UserId, id: AccountId) -> StoreResult<Option<AccountConfigRow>>;
    /// Inserts or replaces the config; `false` if the account is not the user's.
    async fn put_account_config(&self, user: UserId, config: &AccountConfigRow) -> StoreResult<bool>;
    /// Writes the config only if the stored one is still `previous` (its settings and sealed
    /// secrets, which a fresh nonce makes unique per write; `None`: no config stored yet) — a
    /// compare-and-set, so a change read from an older config never overwrites a newer one.
    async fn replace_account_config(
        &self,
        user: UserId,
        config: &AccountConfigRow,
        previous: Option<&AccountConfigRow>,
    ) -> StoreResult<ConfigWrite>;

    // --- API keys ---
    /// `Conflict(Constraint::ApiKeysPrefix)` when the prefix is taken.
    async fn create_api_key(&self, key: &ApiKeyRow) -> StoreResult<()>;
    async fn list_api_keys(&self, user: UserId, limit: i64, offset: i64) -> StoreResult<Vec<ApiKeyRow>>;
    /// Revokes a live key of the user's and returns it; `None` if unknown, foreign or already revoked.
    async fn revoke_api_key(&self, user: UserId, id: ApiKeyId, now: Timestamp) -> StoreResult<Option<ApiKeyRow>>;
    /// The authentication lookup (the prefix is public and unique).
    async fn api_key_by_prefix(&self, prefix: &str) -> StoreResult<Option<ApiKeyRow>>;
    /// Every key's prefix, revoked ones included (which keys of the old checksum may still be
    /// looked up).
    async fn api_key_prefixes(&self) -> StoreResult<Vec<String>>;
    /// Batched `last_used_at` write; never moves a timestamp backwards.
    async fn record_api_key_use(&self, uses: &[(ApiKeyId, Timestamp)]) -> StoreResult<()>;

    // --- assistance requests ---
    /// `Conflict(Constraint::AssistancePendingPerAccount)` when the account already has a pending
    /// request. `events` are logged (with their deliveries) in the same transaction.
    async fn create_assistance(&self, request: &AssistanceRow, events: &[NewEvent]) -> StoreResult<Vec<EventRow>>;
    async fn pending_assistance(&self, account: AccountId) -> StoreResult<Option<AssistanceRow>>;
    async fn assistance_by_id(&self, id: AssistanceRequestId) -> StoreResult<Option<AssistanceRow>>;
    /// Counts one more tried code on a pending request; returns it, `None` if not pending.
    async fn bump_assistance_attempts(
        &self,
        id: AssistanceRequestId,
        now: Timestamp,
        events: &EventsFor<'_>,
    ) -> StoreResult<Option<(AssistanceRow, Vec<EventRow>)>>;
    /// Closes a pending request; `None` if it was not pending (someone else closed it first).
    async fn close_assistance(
        &self,
        id: AssistanceRequestId,
        status: AssistanceStatus,
        reason: Option<&str>,
        now: Timestamp,
        events: &EventsFor<'_>,
    ) -> StoreResult<Option<(AssistanceRow, Vec<EventRow>)>>;
    /// Closes every pending request (at boot: nobody waits on them any more).
    async fn close_all_pending_assistance(
        &self,
        status: AssistanceStatus,
        reason: &str,
        now: Timestamp,
    ) -> StoreResult<Vec<AssistanceRow>>;

    // --- sessions (the engine) ---
    /// Every account with its config, for the scheduler (not a request path: not user-scoped).
    async fn engine_accounts(&self) -> StoreResult<Vec<EngineAccount>>;
    async fn engine_account(&self, id: AccountId) -> StoreResult<Option<EngineAccount>>;
    /// Sets (`Some`) or clears (`None`) the fatal block; `false` if the account is gone.
    async fn set_scrape_block(&self, id: AccountId, block: Option<(Timestamp, &str)>) -> StoreResult<bool>;
    /// Stores movements not seen before (by `external_id`), with `received_at_ms` parsed from
    /// `received_at` (RFC 3339 with an offset; `NULL` when it does not parse); returns how many
    /// were new. When any is new, the account's reconciliation becomes dirty (`dirty_seq` and
    /// `version` + 1) in the same transaction.
    ///
    /// Passthrough (docs/reconciliation.md §7), in the same transaction: the account's first
    /// call sets its `first_read_at` and forwards nothing (the baseline); on later calls, when
    /// the owner's mode (read in the transaction) is `passthrough`, each new movement with a
    /// non-blank `name` gets a pending `bank_movement` delivery (channel `result`, subject the
    /// movement, due at `read_at`) whose body `forward` builds from the movement and the
    /// account's config settings (`None` from it = no delivery). Deliveries follow the
    /// movements' order in `movements`.
    async fn insert_movements(
        &self,
        account: AccountId,
        movements: &[NewMovement],
        read_at: Timestamp,
        forward: &ForwardFor<'_>,
    ) -> StoreResult<u64>;
    /// Newest first (by the bank's date, then id).
    async fn list_movements(
        &self,
        user: UserId,
        account: AccountId,
        limit: i64,
        offset: i64,
    ) -> StoreResult<Vec<MovementRow>>;
    async fn create_run(&self, run: &RunRow) -> StoreResult<()>;
    /// Ends a running run (`false` if it was not running) and logs `events` in the same
    /// transaction (logged either way).
    async fn finish_run(&self, run: &RunRow, events: &[NewEvent]) -> StoreResult<(bool, Vec<EventRow>)>;
    /// Newest first.
    async fn list_runs(&self, user: UserId, account: AccountId, limit: i64, offset: i64) -> StoreResult<Vec<RunRow>>;
    /// Marks runs left `running` by a dead process as `cancelled` with `reason`.
    async fn close_open_runs(&self, reason: &str, now: Timestamp) -> StoreResult<u64>;
    /// Takes or renews the account's session lease for `owner` until `until`; succeeds when the
    /// lease is free, expired, or already `owner`'s.
    async fn acquire_lease(
        &self,
        account: AccountId,
        owner: &str,
        until: Timestamp,
        now: Timestamp,
    ) -> StoreResult<bool>;
    /// Gives the lease up if `owner` holds it.
    async fn release_lease(&self, account: AccountId, owner: &str) -> StoreResult<bool>;

    // --- push: the event log and the webhook outbox ---
    /// Logs events (with their deliveries) in one transaction; returns them with their `seq`.
    async fn record_events(&self, events: &[NewEvent]) -> StoreResult<Vec<EventRow>>;
    /// The user's events after `after` (by `seq`, ascending), optionally only these accounts.
    async fn list_events(
        &self,
        user: UserId,
        accounts: Option<&[AccountId]>,
        after: i64,
        limit: i64,
    ) -> StoreResult<Vec<EventRow>>;
    /// The highest `seq` in the log (0 when empty): where a stream that does not resume starts.
    async fn last_event_seq(&self) -> StoreResult<i64>;
    /// Keeps the log bounded: forgets events that occurred before `before`.
    async fn purge_events(&self, before: Timestamp) -> StoreResult<u64>;
    /// Takes up to `limit` pending deliveries due at `now` for the instance `owner`, pushing
    /// their next attempt to `lease_until` so no other worker takes them meanwhile.
    async fn claim_due_deliveries(
        &self,
        now: Timestamp,
        lease_until: Timestamp,
        limit: i64,
        owner: &str,
    ) -> StoreResult<Vec<DeliveryRow>>;
    /// Writes the outcome of an attempt (status, attempts, next/last attempt, last status and
    /// error, delivered_at) from the row, and releases the claim; `false` (nothing written) when
    /// the delivery is unknown, or was queued again by hand since it was claimed (the attempt
    /// was under way): the resend stands, and the delivery is claimed and sent again.
    async fn finish_delivery_attempt(&self, delivery: &DeliveryRow) -> StoreResult<bool>;
    /// The account's delivery log, newest first.
    async fn list_deliveries(
        &self,
        user: UserId,
        account: AccountId,
        limit: i64,
        offset: i64,
    ) -> StoreResult<Vec<DeliveryRow>>;
    /// Queues a delivery of the user's account again, due at `now`; `None` if not found.
    async fn resend_delivery(
        &self,
        user: UserId,
        account: AccountId,
        id: DeliveryId,
        now: Timestamp,
    ) -> StoreResult<Option<DeliveryRow>>;

    // --- reconciliation ---
    /// Makes the account's poll due at `now` (creating its state row if missing); calling it
    /// again before the poll runs is the same one due poll.
    async fn request_poll(&self, account: AccountId, now: Timestamp) -> StoreResult<()>;
    /// Accounts of users in `reconcile` mode whose poll is due (never scheduled, or
    /// `next_poll_at <= now`) and whose poll lease is free: never scheduled first, then by
    /// `next_poll_at`. The caller checks the account has an endpoint.
    async fn due_polls(&self, now: Timestamp, limit: i64) -> StoreResult<Vec<AccountId>>;
    /// Takes the account's poll lease for `owner` until `lease_until` (free, expired or already
    /// `owner`'s; compare-and-set) and issues the poll's sequence number; `None` when another
    /// owner holds an unexpired lease (or the account is gone).
    async fn begin_poll(
        &self,
        account: AccountId,
        owner: &str,
        now: Timestamp,
        lease_until: Timestamp,
    ) -> StoreResult<Option<i64>>;
    /// Records poll `seq` and, when it succeeded, is newer than the last applied one and the
    /// owner is still in `reconcile` mode (else it is `superseded`), applies
    /// it (docs/reconciliation.md §3.6), all in one transaction under the account lock; schedules the
    /// next poll with `next_poll(failures after this poll)` (not for a superseded poll) and
    /// gives the lease up if `owner` holds it. Keeps the newest [`POLL_LOG_KEEP`] poll rows.
    /// With `pass`, an applied poll that changed the requests also runs the account's match
    /// pass in the same transaction, as [`Store::commit_pass`] would commit it right after (the
    /// account's `done_seq` catches up with its `dirty_seq`); an error of that pass is the whole
    /// call's, and nothing is written: call again without `pass`.
    /// Returns the poll row and the events logged (built by `events`, then the pass's).
    #[allow(clippy::too_many_arguments)]
    async fn finish_poll(
        &self,
        account: AccountId,
        owner: &str,
        seq: i64,
        report: &PollReport,
        now: Timestamp,
        expires_after_ms: i64,
        next_poll: &(dyn Fn(i64) -> Timestamp + Send + Sync),
        events: &ConciliationEventsFor<'_>,
        pass: Option<&PollPass<'_>>,
    ) -> StoreResult<(PollRow, Vec<EventRow>)>;
    /// The account's poll log, newest first; empty when the account is not `user`'s.
    async fn list_polls(&self, user: UserId, account: AccountId, limit: i64, offset: i64) -> StoreResult<Vec<PollRow>>;
    /// The user's requests matching `filter`, newest first (`registered_at`, then id).
    async fn list_conciliation(
        &self,
        user: UserId,
        filter: &ConciliationFilter,
        limit: i64,
        offset: i64,
    ) -> StoreResult<Vec<ConciliationListRow>>;
    /// One of the user's requests; `None` when unknown or another user's.
    async fn conciliation_for_user(
        &self,
        user: UserId,
        id: ConciliationRequestId,
    ) -> StoreResult<Option<ConciliationListRow>>;
    /// The account's reconciliation state row, if it has one (not user-scoped: for workers).
    async fn reconcile_state(&self, account: AccountId) -> StoreResult<Option<ReconcileStateRow>>;
    /// Accounts with match work pending (`dirty_seq > done_seq`) whose owner is in `reconcile`
    /// mode, with their `dirty_seq`; by account id.
    async fn dirty_accounts(&self, limit: i64) -> StoreResult<Vec<(AccountId, i64)>>;
    /// What a match pass of the account reads, in one consistent snapshot: the state's version
    /// and `dirty_seq`, the open requests, the eligible movements (not matched, not ignored,
    /// `received_at_ms` unknown or `>= horizon`) and the rejected pairs of the open requests.
    async fn load_pass(&self, account: AccountId, horizon: Timestamp) -> StoreResult<PassInput>;
    /// [`Store::load_pass`] restricted to what changed since the last committed pass
    /// (docs/reconciliation.md "Performance"), in one consistent snapshot: the amount groups of
    /// the movements no committed pass has seen (new, or ignored, un-ignored, matched or
    /// unmatched since) and of the `pending`/`failed` requests, each with all its open requests
    /// and eligible movements (as `load_pass` reads them), plus the open requests with
    /// `expires_at <= now`, and the rejected pairs of the requests read. A pass over it decides
    /// exactly what a pass over `load_pass` decides for those requests; the other requests'
    /// stored decisions stand. A committed pass ([`Store::commit_pass`]) records every movement
    /// not seen yet as seen.
    async fn load_pass_changes(&self, account: AccountId, horizon: Timestamp, now: Timestamp)
        -> StoreResult<PassInput>;
    /// Applies a pass's decisions in one transaction under the account lock, when the state's
    /// version is still `expected_version` (else `Ok(None)`, nothing changed: reload and
    /// recompute; a conflict on a match is the same lost race; also when the owner is no longer
    /// in `reconcile` mode, so no result webhook is written in passthrough). Status changes are
    /// compare-and-set on the open statuses; attempts are numbered from the request's counter;
    /// `done_seq` becomes `max(done_seq, done_seq given)` and `version` moves when anything
    /// changed; every movement of the account no committed pass has seen is recorded as seen
    /// (see [`Store::load_pass_changes`]); the open requests decided get `eval_errors = 0`.
    /// Returns the events logged (built by `events`, with their deliveries).
    async fn commit_pass(
        &self,
        account: AccountId,
        expected_version: i64,
        done_seq: i64,
        commit: &PassCommit,
        now: Timestamp,
        events: &PassEventsFor<'_>,
    ) -> StoreResult<Option<Vec<EventRow>>>;
    /// For each of `movements` that is the user's and in `account` (others are left out), in the
    /// given order: the request it is matched to (with its `external_id`) and `ignored_at`.
    async fn movement_matches(
        &self,
        user: UserId,
        account: AccountId,
        movements: &[MovementId],
    ) -> StoreResult<Vec<MovementMatch>>;

    // --- reconciliation: review (resolve, reject, ignore, run, notify, detail, summary, result deliveries) ---
    // (this area's methods go below this line)
    /// One of the user's requests with its attempts, match, review movements and result
    /// deliveries, read in one snapshot; `None` when unknown or another user's.
    async fn conciliation_detail(
        &self,
        user: UserId,
        id: ConciliationRequestId,
    ) -> StoreResult<Option<ConciliationDetail>>;
    /// One of the user's movements (any account of theirs), with its match and ignore mark.
    async fn movement_for_user(&self, user: UserId, id: MovementId) -> StoreResult<Option<OwnedMovement>>;
    /// Matches the user's open request to a movement by hand, in one transaction under the
    /// account lock: the request becomes `matched` (reason `resolved_manually`, compare-and-set
    /// on its open status and on the amount and currency the caller checked), a manual match
    /// row, an attempt (`resolve`, with the user), the events `events` builds (with the frozen
    /// result delivery), the account dirty and its version bumped.
    async fn resolve_conciliation(
        &self,
        user: UserId,
        resolve: &ManualMatch,
        now: Timestamp,
        events: &PassEventsFor<'_>,
    ) -> StoreResult<ResolveOutcome>;
    /// Rules `movements` out for the user's open request (rejections), which becomes
    /// `not_found` with reason `candidates_rejected`; an attempt (`resolve`, the user,
    /// `candidates`), the events, the account dirty. One transaction under the account lock.
    async fn reject_candidates(
        &self,
        user: UserId,
        id: ConciliationRequestId,
        movements: &[MovementId],
        candidates: &str,
        now: Timestamp,
        events: &RequestEventsFor<'_>,
    ) -> StoreResult<RequestChange>;
    /// Puts the user's open request back to `pending` for the next pass, which records an
    /// attempt with trigger `run` whatever it decides; the account dirty. Under the account lock.
    async fn run_conciliation(
        &self,
        user: UserId,
        id: ConciliationRequestId,
        now: Timestamp,
        events: &RequestEventsFor<'_>,
    ) -> StoreResult<RequestChange>;
    /// Sends the user's request's result again: `build` gives the event and the delivery the
    /// current status calls for (with the matched movement, if any); the latest result delivery
    /// of that same status is queued again (same id) when there is one, else the new one is
    /// written. One transaction.
    async fn notify_conciliation(
        &self,
        user: UserId,
        id: ConciliationRequestId,
        now: Timestamp,
        build: &NotifyEventFor<'_>,
    ) -> StoreResult<NotifyOutcome>;
    /// Every account of the user (or only `account`, if the user's) with its requests counted
    /// per status and its review queue; by account id.
    async fn conciliation_summary(
        &self,
        user: UserId,
        account: Option<AccountId>,
    ) -> StoreResult<Vec<ConciliationSummaryRow>>;
    /// Ignores (`Some(now)`) or un-ignores (`None`) a movement of the user's account, under the
    /// account lock: a matched movement is refused; a change marks the account dirty and logs
    /// the events; the same state again changes nothing.
    async fn set_movement_ignored(
        &self,
        user: UserId,
        account: AccountId,
        movement: MovementId,
        ignored_at: Option<Timestamp>,
        events: &MovementEventsFor<'_>,
    ) -> StoreResult<IgnoreOutcome>;
    /// The account's deliveries of one channel, optionally of one status, newest first; empty
    /// when the account is not the user's.
    #[allow(clippy::too_many_arguments)]
    async fn list_channel_deliveries(
        &self,
        user: UserId,
        account: AccountId,
        channel: &str,
        status: Option<&str>,
        limit: i64,
        offset: i64,
    ) -> StoreResult<Vec<DeliveryRow>>;
    /// Queues a delivery of the user's account on `channel` again, due at `now` (same id);
    /// `None` if not found there.
    async fn resend_channel_delivery(
        &self,
        user: UserId,
        account: AccountId,
        channel: &str,
        id: DeliveryId,
        now: Timestamp,
    ) -> StoreResult<Option<DeliveryRow>>;

    // --- reconciliation: passthrough (movements forwarded as they are stored) ---
    // (this area's methods go below this line)
    /// Queues the `bank_movement` webhook of the user's movement in `account` again
    /// (docs/reconciliation.md §7, "Resend bank movement webhook"), in one transaction: its
    /// latest `bank_movement` delivery becomes pending, due at `now` (same id, attempts kept), or,
    /// when it has none, a new one is written with the body `build` makes (from the movement and
    /// the account's config settings). Refused when the owner is not in `passthrough` mode or the
    /// movement's name is null or blank. `None` when the movement is not in `account` or the
    /// account is not `user`'s.
    async fn notify_movement(
        &self,
        user: UserId,
        account: AccountId,
        movement: MovementId,
        now: Timestamp,
        build: &ForwardFor<'_>,
    ) -> StoreResult<Option<MovementNotify>>;

    // --- reconciliation: expiry (the sweep of overdue requests) ---
    // (this area's methods go below this line)
    /// The expiry sweep (docs/reconciliation.md §5.8): marks dirty (`dirty_seq + 1`; `version`
    /// unchanged) every account of a user in `reconcile` mode that has an open request with
    /// `expires_at <= now`, and returns those accounts by id. It closes nothing: the accounts'
    /// next match pass expires the requests (with their events and webhooks).
    async fn mark_overdue_dirty(&self, now: Timestamp) -> StoreResult<Vec<AccountId>>;

    // --- reconciliation: failures (a match pass's evaluation errors, `failed`) ---
    // (this area's methods go below this line)
    /// Records that a match pass of `account` errored (docs/reconciliation.md §2 `failed`), in one
    /// transaction under the account lock: `eval_errors + 1` on each of `requests` that is an
    /// open request of the account (`None`: the account's requests awaiting an evaluation,
    /// `pending` and `failed`, for a pass that errored before its snapshot). Those whose
    /// `eval_errors` reaches `retry_limit` (0 counts as 1) and are not `failed` yet become
    /// `failed` (reason `evaluation_error`, `last_candidates` cleared, compare-and-set on the
    /// open statuses; `pending_trigger` is kept for the next evaluation), each with an attempt
    /// (`failed`, `evaluation_error`, `trigger`) and the events `events` builds; `version`
    /// moves when one did. [`Store::commit_pass`] resets `eval_errors` of the requests it
    /// decides. Returns the events logged (none when the account is gone).
    async fn record_pass_failure(
        &self,
        account: AccountId,
        requests: Option<&[ConciliationRequestId]>,
        retry_limit: i64,
        trigger: &str,
        now: Timestamp,
        events: &RequestEventsFor<'_>,
    ) -> StoreResult<Vec<EventRow>>;

    // issue 12: hardening
    /// At boot: the pending deliveries `owner` (this instance, in an earlier life) had claimed
    /// and not finished become due at `now` and unclaimed, so they are sent again at once instead
    /// of after the claim lease. Returns how many.
    async fn release_delivery_claims(&self, owner: &str, now: Timestamp) -> StoreResult<u64>;
    // --- scale-out (issue 11): what several instances on one database share ---
    // (this area's methods go below this line)
    /// Every user's events after `after` (by `seq`, ascending), at most `limit`: what the
    /// cross-instance event bus reads when another instance rings (not a request path: not
    /// user-scoped).
    async fn events_after(&self, after: i64, limit: i64) -> StoreResult<Vec<EventRow>>;
    /// Who holds the account's session lease at `now` (`expires_at >= now`); `None` when nobody
    /// does (never taken, released, expired, or the account is gone).
    async fn session_owner(&self, account: AccountId, now: Timestamp) -> StoreResult<Option<String>>;
    /// Boot cleanup beside live instances: closes the pending requests of every account whose
    /// session lease is not held at `now` by an owner other than `owner` (a live instance's
    /// waiting logins keep theirs; `owner`'s own leases are a previous process's). Returns them.
    async fn close_unowned_pending_assistance(
        &self,
        owner: &str,
        status: AssistanceStatus,
        reason: &str,
        now: Timestamp,
    ) -> StoreResult<Vec<AssistanceRow>>;
    /// Boot cleanup beside live instances: marks `running` runs `cancelled` with `reason`, but
    /// not those of accounts whose session lease another owner than `owner` holds at `now`.
    async fn close_unowned_open_runs(&self, owner: &str, reason: &str, now: Timestamp) -> StoreResult<u64>;
    /// Keeps a realtime ticket (by its hash) for any instance to redeem. Forgets the expired
    /// tickets at `now` first, and the user's oldest so that at most `per_user` remain with it.
    async fn issue_ticket(&self, ticket: &TicketRow, now: Timestamp, per_user: i64) -> StoreResult<()>;
    /// Consumes a ticket: `Some` the first time, if it has not expired at `now`; `None` when
    /// unknown, expired or already redeemed (on any instance).
    async fn redeem_ticket(&self, hash: &[u8], now: Timestamp) -> StoreResult<Option<TicketRow>>;

    // --- issue 10: two-factor sign-in (TOTP) ---
    /// Starts (or restarts) a set-up with a new sealed secret, not confirmed; `false` when the
    /// user's two-factor is already on (confirmed), which stays untouched.
    async fn begin_totp(&self, user: UserId, sealed_secret: &[u8], now: Timestamp) -> StoreResult<bool>;
    /// The user's set-up, confirmed or not, with the count of unused recovery codes.
    async fn user_totp(&self, user: UserId) -> StoreResult<Option<TotpRow>>;
    /// Turns a pending set-up on: `confirmed_at = now`, `last_step = step`, and replaces the
    /// recovery codes with `recovery_hashes`, in one transaction; `false` when there is no
    /// pending set-up (none, or already confirmed).
    async fn confirm_totp(
        &self,
        user: UserId,
        step: i64,
        recovery_hashes: &[Vec<u8>],
        now: Timestamp,
    ) -> StoreResult<bool>;
    /// Accepts a code of time step `step` once: compare-and-set of `last_step` (only a newer step
    /// than the last accepted one, only when confirmed); `false` otherwise (a replay).
    async fn accept_totp_step(&self, user: UserId, step: i64) -> StoreResult<bool>;
    /// Spends an unused recovery code (by its hash); `false` if unknown or already used.
    async fn use_recovery_code(&self, user: UserId, hash: &[u8], now: Timestamp) -> StoreResult<bool>;
    /// Turns two-factor off: forgets the secret and the recovery codes; `false` if there was none.
    async fn delete_totp(&self, user: UserId) -> StoreResult<bool>;
    // --- issue 9 (real banks): failure evidence of browser runs ---
    // (this area's methods go below this line)
    /// Keeps one piece of a run's failure evidence; `false` (nothing kept) when the run does
    /// not exist (any more).
    async fn insert_evidence(&self, evidence: &EvidenceRow) -> StoreResult<bool>;
    /// The run's evidence that has not expired at `now`, oldest first; `None` when the run is
    /// not one of `account`'s or the account is not `user`'s.
    async fn list_evidence(
        &self,
        user: UserId,
        account: AccountId,
        run: RunId,
        now: Timestamp,
    ) -> StoreResult<Option<Vec<EvidenceRow>>>;
    /// Forgets the evidence that expired at `now`; returns how many.
    async fn purge_evidence(&self, now: Timestamp) -> StoreResult<u64>;
    /// The operator's view (`reconbanker evidence <run>`): the run's account and its evidence
    /// that has not expired at `now`, oldest first, whoever owns it; `None` when there is no
    /// such run.
    async fn run_evidence(&self, run: RunId, now: Timestamp) -> StoreResult<Option<(AccountId, Vec<EvidenceRow>)>>;
    /// Remember-device: what the account's last browser login kept for the next (sealed).
    async fn device_state(&self, account: AccountId) -> StoreResult<Option<Vec<u8>>>;
    /// Keeps (replaces) the account's remembered-device state, or forgets it (`None`);
    /// `false` when the account does not exist (any more).
    async fn set_device_state(&self, account: AccountId, sealed: Option<&[u8]>, now: Timestamp) -> StoreResult<bool>;
    // --- issue 11: master-key rotation ---
    /// The derived keys carried across master-key rotations (sealed with the current master
    /// key), by label; empty before the first rotation.
    async fn carried_keys(&self) -> StoreResult<Vec<CarriedKeyRow>>;
    /// Rewrites every sealed value (account config secrets, TOTP secrets, evidence, carried
    /// keys) in one transaction that locks them: `reseal` is called for every value before
    /// anything is written; if it refuses one, nothing changes and the answer is
    /// `Ok(Err(refused))`. Otherwise every value is replaced by what `reseal` gave, the `add`
    /// rows are inserted (a label that exists is a `Conflict`, and nothing changes), and the
    /// counts are returned.
    async fn reseal_all(
        &self,
        reseal: &Reseal<'_>,
        add: &[CarriedKeyRow],
    ) -> StoreResult<Result<ResealCounts, ResealRefused>>;
    // --- issue 11 (scale-out): codes handed between instances, take-over of a dead one's logins ---
    // (this area's methods go below this line)
    /// Keeps `offer` (state `offered`) for the instance holding the login to take; first
    /// forgets every offer created before `forget_before` (left by an instance that died while
    /// it waited for the answer).
    async fn offer_code(&self, offer: &CodeOffer, forget_before: Timestamp) -> StoreResult<()>;
    /// The holder takes the oldest unanswered offer for `request` created at or after
    /// `not_before`: it becomes `taken` and its sealed code is cleared; returns it with the
    /// sealed code as it was. `None` when there is none (withdrawn by its sender, or answered).
    async fn take_code_offer(
        &self,
        request: AssistanceRequestId,
        not_before: Timestamp,
    ) -> StoreResult<Option<CodeOffer>>;
    /// The holder refuses every unanswered offer for `request` (it is not waiting for a code
    /// right now): they become `refused`, their sealed codes cleared. Returns their ids.
    async fn refuse_code_offers(&self, request: AssistanceRequestId) -> StoreResult<Vec<uuid::Uuid>>;
    /// The sender ends its offer: deletes it and returns the state it had (`None` if unknown).
    /// Atomic against `take_code_offer`: either the holder took it first (`Taken`) or it is
    /// never taken (`Offered`).
    async fn close_code_offer(&self, id: uuid::Uuid) -> StoreResult<Option<CodeOfferState>>;
    /// The session leases that expired before `now` without being released (their holder
    /// stopped renewing them), oldest first.
    async fn expired_session_leases(&self, now: Timestamp) -> StoreResult<Vec<ExpiredLease>>;
    /// Take-over: marks the account's `running` runs `cancelled` with `reason`; returns how many.
    async fn close_account_open_runs(&self, account: AccountId, reason: &str, now: Timestamp) -> StoreResult<u64>;
    /// A sliding-window rate limit shared by every instance: the events of `bucket` whose
    /// expiry is after `now` are the window. With `count`, one event expiring at `expires_at`
    /// is added if fewer than `limit` are in it (atomically: concurrent hits on any instance
    /// never exceed `limit`); without, the window is only looked at.
    async fn hit_window(
        &self,
        bucket: &str,
        limit: i64,
        now: Timestamp,
        expires_at: Timestamp,
        count: bool,
    ) -> StoreResult<WindowState>;
    /// Takes back the newest event of `bucket`; `false` when there is none.
    async fn undo_window_hit(&self, bucket: &str) -> StoreResult<bool>;
    /// Forgets the events expired at `now` (and their idle buckets); returns how many events.
    async fn sweep_window_hits(&self, now: Timestamp) -> StoreResult<u64>;
    // --- issue 11 (metrics): what an instance's `/metrics` reads ---
    // (this area's methods go below this line)
    /// The connection pool right now, without a round trip.
    fn pool_usage(&self) -> PoolUsage;
    /// The outbox's depth (pending and dead deliveries, every instance's) and the session and
    /// poll leases `owner` holds unexpired at `now`, in one round trip.
    async fn instance_gauges(&self, owner: &str, now: Timestamp) -> StoreResult<InstanceGauges>;
    // --- issue 11 (scale-out): the /v1 per-key budget shared by every instance ---
    // (this area's methods go below this line)
    /// Takes up to `want` requests at once from the GCRA budget `bucket` (one request per
    /// `interval_ns`, bursts up to `tolerance_ns` ahead of `now_ns`; times in nanoseconds since
    /// the epoch): as many as fit now, atomically across instances. A new bucket starts full.
    async fn take_rate_slice(
        &self,
        bucket: &str,
        now_ns: i64,
        interval_ns: i64,
        tolerance_ns: i64,
        want: i64,
    ) -> StoreResult<RateSlice>;
    /// Forgets the budgets whose arrival time is before `now_ns` (they are full); returns how many.
    async fn sweep_rate_tats(&self, now_ns: i64) -> StoreResult<u64>;
    // --- issue 8 (performance): WAL checkpoints off the commit path ---
    // (this area's methods go below this line)
    /// SQLite: copies what the write-ahead log holds into the database without waiting on
    /// readers or writers (a passive checkpoint). Connections never do it on commit; the server
    /// calls this from a background loop, so no request or pass pays for it. PostgreSQL
    /// checkpoints by itself: nothing to do, the default is returned.
    async fn checkpoint(&self) -> StoreResult<WalCheckpoint>;
}

/// Opens the store named by a database URL: `sqlite:...` or `postgres://...`/`postgresql://...`.
pub async fn connect(url: &str, max_connections: u32) -> StoreResult<Arc<dyn Store>> {
    if url.starts_with("postgres://") || url.starts_with("postgresql://") {
        Ok(Arc::new(postgres::PgStore::connect(url, max_connections).await?))
    } else {
        Ok(Arc::new(sqlite::SqliteStore::connect(url, max_connections).await?))
    }
}
