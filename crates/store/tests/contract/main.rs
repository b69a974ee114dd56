//! The store contract: every method of [`Store`], with its documented behaviour, checked against
//! both adapters — SQLite always, PostgreSQL when `TEST_DATABASE_URL` names a server where the
//! user may `CREATE DATABASE` (`scripts/test.sh` starts a throwaway one).
//!
//! Each check is its own test per backend (`sqlite::check_users`, `postgres::check_users`, …) on
//! a fresh database, so checks are independent and `cargo test check_leases` runs one. The
//! checks live in one module per area; [`every_store_method_is_covered`] fails when a method
//! declared in `pub trait Store` is called by none of them.
//!
//! On PostgreSQL each check gets `CREATE DATABASE … TEMPLATE` a template migrated once per schema
//! (named by a hash of the migrations, so it is reused across runs), and drops its database
//! afterwards even when the check panics. Without `TEST_DATABASE_URL` the PostgreSQL tests are
//! skipped with a notice, unless `REQUIRE_POSTGRES=1`.

#![allow(clippy::unwrap_used)]

mod accounts;
mod api_keys;
mod assistance;
mod banks;
mod deliveries;
mod engine;
mod events;
mod expiry;
mod failures;
mod fixtures;
mod lifecycle;
mod matching;
mod passthrough;
mod reconcile;
mod review;
mod users;
// issue 12: hardening
mod hardening;
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
// Issue 8 (performance): WAL checkpoints off the commit path.
mod wal;
// Issue 11 (scale-out): the /v1 per-key budget shared by every instance.
mod rate_slices;
// Issue 8 (performance): the first match pass inside the poll's transaction.
mod poll_pass;

use std::collections::BTreeSet;
use std::future::Future;
use std::hash::{Hash, Hasher};
use std::sync::Arc;

use reconbanker_store::{Store, StoreError};
use sqlx::{Connection, Executor};
use uuid::Uuid;

// Each check is named by `contract_tests!` below, once per backend.
use crate::{
    accounts::*, api_keys::*, assistance::*, banks::*, deliveries::*, engine::*, events::*, lifecycle::*, matching::*,
    reconcile::*, users::*,
};
// One line per area, so areas are added independently.
#[allow(unused_imports)]
use crate::expiry::*;
#[allow(unused_imports)]
use crate::failures::*;
#[allow(unused_imports)]
use crate::passthrough::*;
#[allow(unused_imports)]
use crate::review::*;
// issue 12: hardening
#[allow(unused_imports)]
use crate::hardening::*;
#[allow(unused_imports)]
use crate::scaleout::*;
// Issue 10: two-factor sign-in.
#[allow(unused_imports)]
use crate::two_factor::*;
// Issue 9 (real banks).
#[allow(unused_imports)]
use crate::evidence::*;
// Issue 11: master-key rotation.
#[allow(unused_imports)]
use crate::rotation::*;
// Issue 11 (scale-out): codes handed between instances, take-over.
#[allow(unused_imports)]
use crate::handoff::*;
// Issue 11 (metrics).
use crate::gauges::*;
use crate::wal::*;
// Issue 11 (scale-out): the /v1 per-key budget shared by every instance.
use crate::rate_slices::*;
// Issue 8 (performance): the first match pass inside the poll's transaction.
use crate::poll_pass::*;

/// Stamps out `sqlite::<check>` and `postgres::<check>` tests for each check, each on a fresh
/// database.
macro_rules! contract_tests {
    ($($check:ident),* $(,)?) => {
        mod sqlite {
            $(
                #[tokio::test]
                async fn $check() {
                    crate::run_check(crate::Backend::Sqlite, |s, _| async move { crate::$check(&*s).await }).await;
                }
            )*
        }
        mod postgres {
            $(
                #[tokio::test]
                async fn $check() {
                    crate::run_check(crate::Backend::Postgres, |s, _| async move { crate::$check(&*s).await }).await;
                }
            )*
        }
    };
}

contract_tests! {
    // lifecycle
    check_backend_migrate_ping,
    check_close,
    // users and tokens
    check_users,
    check_set_operation_mode,
    check_grant_admin,
    check_session_user_and_revoke_token,
    check_purge_revoked_tokens,
    // banks
    check_banks,
    check_upsert_bank,
    // accounts
    check_accounts,
    check_list_accounts,
    check_owned_account_ids,
    check_account_config,
    check_replace_account_config,
    check_delete_account,
    // API keys
    check_api_keys,
    check_revoke_api_key,
    check_record_api_key_use,
    // assistance requests
    check_assistance,
    check_close_all_pending_assistance,
    check_assistance_events,
    // sessions (the engine)
    check_engine_accounts,
    check_set_scrape_block,
    check_insert_movements,
    check_list_movements,
    check_runs,
    check_close_open_runs,
    check_leases,
    check_run_events,
    // the event log
    check_record_events,
    check_list_events,
    check_purge_events,
    check_last_event_seq,
    // the webhook outbox
    check_claim_due_deliveries,
    check_concurrent_claims,
    check_finish_delivery_attempt,
    check_list_deliveries,
    check_resend_delivery,
    // reconciliation
    check_poll_registers_updates_and_cancels,
    check_poll_stale_is_superseded,
    check_poll_failures_and_recovery,
    check_poll_lease,
    check_request_poll_and_due_polls,
    check_poll_now_during_a_poll_is_kept,
    check_poll_log_is_pruned,
    check_conciliation_listing_is_scoped,
    check_concurrent_finish_poll,
    // the match pass
    check_movements_mark_reconciliation_dirty,
    check_dirty_accounts,
    check_load_pass,
    check_commit_pass_match,
    check_commit_pass_races,
    check_commit_pass_ambiguous_once,
    check_commit_pass_not_found,
    check_commit_pass_expires,
    check_delivery_subject_order,
    check_movement_matches_is_scoped,
    check_commit_pass_recheck,
    check_review_reads_the_amount_group_and_respects_expiry,
    check_review_actions_need_reconcile_mode_under_the_lock,
    check_load_pass_changes,
    // review
    // (this area's checks go below this line)
    check_conciliation_detail,
    check_movement_for_user,
    check_resolve_conciliation,
    check_a_match_by_hand_changes_the_group,
    check_reject_candidates,
    check_run_conciliation,
    check_notify_conciliation,
    check_conciliation_summary,
    check_set_movement_ignored,
    check_channel_deliveries,

    // passthrough
    // (this area's checks go below this line)
    check_insert_movements_forwards_in_passthrough,
    check_notify_movement,
    check_commit_pass_outside_reconcile_mode,
    check_finish_poll_outside_reconcile_mode,

    // expiry
    // (this area's checks go below this line)
    check_mark_overdue_dirty,

    // failures
    // (this area's checks go below this line)
    check_record_pass_failure,

    // issue 12: hardening
    check_release_delivery_claims,
    // scale-out (issue 11)
    // (this area's checks go below this line)
    check_events_after,
    check_session_owner,
    check_close_unowned_at_boot,
    check_tickets,

    // two-factor sign-in (issue 10)
    check_totp_setup_and_confirm,
    check_totp_steps_and_recovery,
    // issue 9 (real banks): failure evidence
    check_evidence,
    check_device_state,
    // issue 11: master-key rotation
    check_reseal_all,
    // issue 11 (scale-out): codes handed between instances, take-over
    check_code_offers,
    check_expired_leases_and_take_over_runs,
    check_rate_windows,
    // issue 11 (metrics)
    check_instance_gauges,
    // issue 11 (scale-out): the /v1 per-key budget shared by every instance
    check_rate_slices,
    // issue 8 (performance): WAL checkpoints off the commit path
    check_checkpoint,
    // issue 8 (performance): the first match pass inside the poll's transaction
    check_finish_poll_with_pass,
    check_finish_poll_with_pass_in_chunks,
}

/// A timestamp out of range in a row is a `Corrupt` error, not 1970 (written behind the store's
/// back, so not a check of the trait).
async fn corrupt_timestamp_is_an_error(backend: Backend) {
    run_check(backend, |s, url| async move {
        let u = fixtures::user(&*s).await;
        let sql = "UPDATE users SET created_at = $1 WHERE id = $2";
        let done = match backend {
            Backend::Sqlite => {
                let mut c = sqlx::SqliteConnection::connect(&url).await.unwrap();
                sqlx::query(sql)
                    .bind(i64::MAX)
                    .bind(u.id.0)
                    .execute(&mut c)
                    .await
                    .map(|d| d.rows_affected())
            }
            Backend::Postgres => {
                let mut c = sqlx::PgConnection::connect(&url).await.unwrap();
                sqlx::query(sql)
                    .bind(i64::MAX)
                    .bind(u.id.0)
                    .execute(&mut c)
                    .await
                    .map(|d| d.rows_affected())
            }
        };
        assert_eq!(done.unwrap(), 1);
        let r = s.user_by_id(u.id).await;
        assert!(
            matches!(&r, Err(StoreError::Corrupt(m)) if m.contains("created_at")),
            "{r:?}"
        );
        assert!(matches!(s.user_by_email(&u.email).await, Err(StoreError::Corrupt(_))));
    })
    .await;
}

#[tokio::test]
async fn sqlite_corrupt_timestamp_is_an_error() {
    corrupt_timestamp_is_an_error(Backend::Sqlite).await;
}

#[tokio::test]
async fn postgres_corrupt_timestamp_is_an_error() {
    corrupt_timestamp_is_an_error(Backend::Postgres).await;
}

/// A store write that finds SQLite's write lock taken waits for it (the store's own busy
/// handler, `reconbanker-sqlite-busy`, retries until the lock is free) instead of failing.
#[tokio::test]
async fn sqlite_writer_waits_for_the_write_lock() {
    run_check(Backend::Sqlite, |s, url| async move {
        let mut holder = sqlx::SqliteConnection::connect(&url).await.unwrap();
        holder.execute("BEGIN IMMEDIATE").await.unwrap();
        let write = tokio::spawn(async move { fixtures::user(&*s).await });
        let mut write = std::pin::pin!(write);
        // Blocked while the lock is held, however long that is.
        assert!(
            tokio::time::timeout(std::time::Duration::from_millis(200), &mut write)
                .await
                .is_err(),
            "a write went through while another connection held the write lock"
        );
        holder.execute("COMMIT").await.unwrap();
        let u = write.await.unwrap();
        assert!(!u.email.is_empty());
    })
    .await;
}

/// Runs one statement on the check's database behind the store's back.
async fn raw(backend: Backend, url: &str, sql: &str, binds: &[&str]) -> u64 {
    match backend {
        Backend::Sqlite => {
            let mut c = sqlx::SqliteConnection::connect(url).await.unwrap();
            let mut q = sqlx::query(sql);
            for b in binds {
                q = q.bind(*b);
            }
            q.execute(&mut c).await.unwrap().rows_affected()
        }
        Backend::Postgres => {
            let mut c = sqlx::PgConnection::connect(url).await.unwrap();
            let mut q = sqlx::query(sql);
            for b in binds {
                q = q.bind(*b);
            }
            q.execute(&mut c).await.unwrap().rows_affected()
        }
    }
}

/// Matched and expired requests under a poll (no store method sets those statuses yet: they are
/// set behind the store's back), and a bad stored status is `Corrupt`.
async fn matched_and_expired_under_polls(backend: Backend) {
    use reconbanker_store::*;
    run_check(backend, |s, url| async move {
        let s = &*s;
        let (u, a) = reconcile::reconcile_user(s).await;
        let set = |status: &'static str, ext: &'static str| {
            let url = url.clone();
            async move {
                let sql = "UPDATE conciliation_requests SET status = $1 WHERE external_id = $2 \
                           AND status NOT IN ('cancelled', 'expired')";
                assert_eq!(raw(backend, &url, sql, &[status, ext]).await, 1);
            }
        };
        let o = reconcile::order;
        let t1 = now();
        reconcile::poll(
            s,
            u.id,
            a.id,
            &reconcile::success(vec![o("M", "1.00"), o("E1", "2.00"), o("E2", "3.00")], &[], t1),
        )
        .await;
        set("matched", "M").await;
        set("expired", "E1").await;
        set("expired", "E2").await;
        let before = reconcile::requests(s, u.id, a.id).await;

        // M listed (changed, even): untouched. E1 listed: not re-registered. E2 absent: marked.
        let t2 = t1 + fixtures::ms(1000);
        let (row, logged) = reconcile::poll(
            s,
            u.id,
            a.id,
            &reconcile::success(vec![o("M", "9.00"), o("E1", "2.00")], &[], t2),
        )
        .await;
        assert_eq!(
            row.counts,
            PollCounts {
                orders_seen: 2,
                already_matched: 1,
                still_listed_after_expiry: 1,
                ..PollCounts::default()
            }
        );
        assert_eq!(logged, vec![]);
        let rows = reconcile::requests(s, u.id, a.id).await;
        let get = |rows: &[ConciliationRow], ext: &str| rows.iter().find(|r| r.external_id == ext).unwrap().clone();
        assert_eq!(get(&rows, "M"), get(&before, "M"), "matched: untouched");
        assert_eq!(get(&rows, "E1"), get(&before, "E1"));
        let e2 = get(&rows, "E2");
        assert!(e2.absent_since_close);
        assert_eq!(e2.updated_at, t2);
        assert_eq!(
            s.reconcile_state(a.id).await.unwrap().unwrap().dirty_seq,
            1,
            "nothing to match"
        );

        // M absent: a matched request is never cancelled. E2 listed again: generation 2.
        let t3 = t2 + fixtures::ms(1000);
        let (row, logged) = reconcile::poll(s, u.id, a.id, &reconcile::success(vec![o("E2", "3.00")], &[], t3)).await;
        assert_eq!(
            row.counts,
            PollCounts {
                orders_seen: 1,
                reopened: 1,
                ..PollCounts::default()
            }
        );
        assert_eq!(logged.len(), 1);
        assert_eq!(logged[0].kind, "conciliation.reopened");
        let rows = reconcile::requests(s, u.id, a.id).await;
        assert_eq!(get(&rows, "M").status, ConciliationStatus::Matched);
        let e2s: Vec<_> = rows.iter().filter(|r| r.external_id == "E2").collect();
        assert_eq!(e2s.len(), 2);
        assert_eq!(reconcile::live(&rows, "E2").generation, 2);
        assert!(get(&rows, "E1").absent_since_close, "E1 absent from this poll");

        // E1 listed after an absence: re-registered.
        let (row, _) = reconcile::poll(
            s,
            u.id,
            a.id,
            &reconcile::success(vec![o("E1", "2.00"), o("E2", "3.00")], &[], t3 + fixtures::ms(1000)),
        )
        .await;
        assert_eq!(row.counts.reopened, 1);
        assert_eq!(
            reconcile::live(&reconcile::requests(s, u.id, a.id).await, "E1").generation,
            2
        );

        // A status the store does not know is corrupt.
        assert_eq!(
            raw(
                backend,
                &url,
                "UPDATE conciliation_requests SET status = $1 WHERE external_id = $2",
                &["bogus", "M"]
            )
            .await,
            1
        );
        let r = s.list_conciliation(u.id, &ConciliationFilter::default(), 100, 0).await;
        assert!(
            matches!(&r, Err(StoreError::Corrupt(m)) if m.contains("status")),
            "{r:?}"
        );
    })
    .await;
}

#[tokio::test]
async fn sqlite_matched_and_expired_under_polls() {
    matched_and_expired_under_polls(Backend::Sqlite).await;
}

#[tokio::test]
async fn postgres_matched_and_expired_under_polls() {
    matched_and_expired_under_polls(Backend::Postgres).await;
}

/// How long applying a poll of 50,000 orders takes: registering them, seeing them again,
/// updating them all, cancelling them all (`cargo test --release -- --ignored --nocapture poll_50k`).
async fn poll_50k(backend: Backend) {
    use reconbanker_store::*;
    run_check(backend, |s, _| async move {
        let s = &*s;
        let (u, a) = reconcile::reconcile_user(s).await;
        let n = 50_000;
        let list = |amount: &str| {
            (0..n)
                .map(|i| reconcile::order(&format!("ORD-{i:06}"), amount))
                .collect::<Vec<_>>()
        };
        let mut t = now();
        for (what, orders, expect) in [
            ("register", list("10.00"), "registered"),
            ("unchanged", list("10.00"), "none"),
            ("update", list("11.00"), "updated"),
            ("cancel", Vec::new(), "cancelled"),
        ] {
            t += fixtures::ms(1000);
            let report = reconcile::success(orders, &[], t);
            let seq = s
                .begin_poll(a.id, reconcile::OWNER, t, t + fixtures::ms(45_000))
                .await
                .unwrap()
                .unwrap();
            let ev = |e: ConciliationEvent<'_>| reconcile::event_for(u.id, a.id, t, e);
            let next = reconcile::schedule(t);
            let started = std::time::Instant::now();
            let (row, logged) = s
                .finish_poll(
                    a.id,
                    reconcile::OWNER,
                    seq,
                    &report,
                    t,
                    reconcile::FIVE_DAYS_MS,
                    &next,
                    &ev,
                    None,
                )
                .await
                .unwrap();
            let took = started.elapsed();
            println!(
                "{} {what}: {n} orders applied in {took:?} ({} events)",
                backend.name(),
                logged.len()
            );
            let c = row.counts;
            let got = match expect {
                "registered" => c.registered,
                "updated" => c.updated,
                "cancelled" => c.cancelled,
                _ => i64::try_from(logged.len()).unwrap(),
            };
            assert_eq!(got, if expect == "none" { 0 } else { n });
        }
    })
    .await;
}

/// On PostgreSQL, a write of 1,000 new movements or more, and a poll that registers 1,000
/// orders or more, refresh the tables' statistics themselves (`ANALYZE`, counted in
/// `analyze_count`; autovacuum's own runs count in `autoanalyze_count`); smaller ones do not.
#[tokio::test]
async fn postgres_bulk_writes_refresh_statistics() {
    use reconbanker_store::*;
    run_check(Backend::Postgres, |s, url| async move {
        let s = &*s;
        let (u, a) = reconcile::reconcile_user(s).await;
        let analyzed = |table: &'static str| {
            let url = url.clone();
            async move {
                let mut c = sqlx::PgConnection::connect(&url).await.unwrap();
                let n: i64 = sqlx::query_scalar("SELECT analyze_count FROM pg_stat_user_tables WHERE relname = $1")
                    .bind(table)
                    .fetch_one(&mut c)
                    .await
                    .unwrap();
                n
            }
        };
        let mut t = now();
        let at = matching::rfc3339(t);
        let mut stored = 0;
        for (new, want) in [(999, 0), (1_000, 1)] {
            let movements: Vec<NewMovement> = (stored..stored + new)
                .map(|i| matching::credit(&format!("MOV-{i:06}"), "10.00", &at))
                .collect();
            stored += new;
            let n = s.insert_movements(a.id, &movements, t, &never_forward).await.unwrap();
            assert_eq!(n, new as u64);
            assert_eq!(analyzed("movements").await, want, "after {new} new movements");
        }
        let mut listed = Vec::new();
        for (new, want) in [(999, 0), (1_000, 1)] {
            let from = listed.len();
            listed.extend((from..from + new).map(|i| reconcile::order(&format!("ORD-{i:06}"), "10.00")));
            t += fixtures::ms(1000);
            let (row, _) = reconcile::poll(s, u.id, a.id, &reconcile::success(listed.clone(), &[], t)).await;
            assert_eq!(row.counts.registered, new as i64);
            assert_eq!(
                analyzed("conciliation_requests").await,
                want,
                "after a poll registering {new} orders"
            );
        }
    })
    .await;
}

/// On PostgreSQL, event-log writers take turns: a writer whose turn another transaction holds
/// waits for it before it draws a `seq`, so no reader sees a `seq` become visible after a
/// higher one. (The turn is the advisory lock the insert takes; SQLite runs one writer at a
/// time.) Fails if the insert draws its `seq`s before taking the turn, or does not take it.
#[tokio::test]
async fn postgres_event_writers_take_turns() {
    use reconbanker_store::*;
    run_check(Backend::Postgres, |s, url| async move {
        let owner = fixtures::user(&*s).await;
        let b = fixtures::bank(&*s).await;
        let a = fixtures::account(&*s, owner.id, &b).await;
        let first = s
            .record_events(&[fixtures::event(owner.id, a.id, "account.status", now())])
            .await
            .unwrap();
        let mut holder = sqlx::PgConnection::connect(&url).await.unwrap();
        let drawn = sqlx::query_scalar::<_, i64>;
        const DRAWN: &str = "SELECT last_value FROM pg_sequences WHERE sequencename = 'events_seq_seq'";
        let before = drawn(DRAWN).fetch_one(&mut holder).await.unwrap();
        assert_eq!(before, first[0].seq);
        // Another writer's turn, held open.
        holder.execute("BEGIN").await.unwrap();
        holder
            .execute("SELECT pg_advisory_xact_lock(7304411920)")
            .await
            .unwrap();
        let writer = {
            let s = s.clone();
            let e = fixtures::event(owner.id, a.id, "account.status", now());
            tokio::spawn(async move { s.record_events(&[e]).await })
        };
        // Wait until the writer is blocked on an advisory lock (a condition, not a delay).
        let mut watcher = sqlx::PgConnection::connect(&url).await.unwrap();
        loop {
            let waiting: i64 = sqlx::query_scalar(
                "SELECT COUNT(*) FROM pg_stat_activity WHERE datname = current_database() \
                 AND wait_event_type = 'Lock' AND wait_event = 'advisory'",
            )
            .fetch_one(&mut watcher)
            .await
            .unwrap();
            if waiting == 1 {
                break;
            }
            assert!(!writer.is_finished(), "the writer went ahead of the held turn");
            tokio::task::yield_now().await;
        }
        assert_eq!(
            drawn(DRAWN).fetch_one(&mut watcher).await.unwrap(),
            before,
            "no seq is drawn before the turn is taken"
        );
        holder.execute("COMMIT").await.unwrap();
        let logged = writer.await.unwrap().unwrap();
        assert_eq!(logged[0].seq, before + 1);
    })
    .await;
}

#[tokio::test]
#[ignore = "a measurement: run in release"]
async fn sqlite_poll_50k() {
    poll_50k(Backend::Sqlite).await;
}

#[tokio::test]
#[ignore = "a measurement: run in release"]
async fn postgres_poll_50k() {
    poll_50k(Backend::Postgres).await;
}

#[tokio::test]
async fn sqlite_ignoring_changes_the_group() {
    run_check(Backend::Sqlite, |s, url| async move {
        matching::ignoring_changes_the_group(&*s, Backend::Sqlite, &url).await
    })
    .await;
}

#[tokio::test]
async fn postgres_ignoring_changes_the_group() {
    run_check(Backend::Postgres, |s, url| async move {
        matching::ignoring_changes_the_group(&*s, Backend::Postgres, &url).await
    })
    .await;
}

#[tokio::test]
async fn sqlite_ignored_and_rejected() {
    run_check(Backend::Sqlite, |s, url| async move {
        matching::ignored_and_rejected(&*s, Backend::Sqlite, &url).await
    })
    .await;
}

#[tokio::test]
async fn postgres_ignored_and_rejected() {
    run_check(Backend::Postgres, |s, url| async move {
        matching::ignored_and_rejected(&*s, Backend::Postgres, &url).await
    })
    .await;
}

#[tokio::test]
async fn sqlite_attempts_are_recorded() {
    run_check(Backend::Sqlite, |s, url| async move {
        matching::attempts_are_recorded(&*s, Backend::Sqlite, &url).await
    })
    .await;
}

#[tokio::test]
async fn postgres_attempts_are_recorded() {
    run_check(Backend::Postgres, |s, url| async move {
        matching::attempts_are_recorded(&*s, Backend::Postgres, &url).await
    })
    .await;
}

/// How long a match pass takes on an account with 50,000 open requests and 10,000 new movements
/// of which 5,000 match: inserting the movements, `load_pass`, `commit_pass` of the first
/// evaluation (5,000 matched, 45,000 not found for the first time), then a second pass where
/// nothing changed (`cargo test --release -- --ignored --nocapture pass_50k`).
async fn pass_50k(backend: Backend) {
    use reconbanker_store::*;
    run_check(backend, |s, _| async move {
        let s = &*s;
        let (u, a) = reconcile::reconcile_user(s).await;
        let (n, k, hits) = (50_000, 10_000, 5_000);
        let t = now();
        let orders: Vec<PollOrder> = (0..n)
            .map(|i| reconcile::order(&format!("ORD-{i:06}"), &format!("{}.00", i + 1)))
            .collect();
        reconcile::poll(s, u.id, a.id, &reconcile::success(orders, &[], t)).await;
        let at = matching::rfc3339(t + fixtures::ms(60_000));
        let movements: Vec<NewMovement> = (0..k)
            .map(|i| {
                let amount = if i < hits {
                    format!("{}.00", i + 1)
                } else {
                    "0.01".into()
                };
                matching::credit(&format!("MOV-{i:06}"), &amount, &at)
            })
            .collect();
        let started = std::time::Instant::now();
        assert_eq!(
            s.insert_movements(a.id, &movements, t, &never_forward).await.unwrap(),
            10_000
        );
        println!("{} insert_movements: {k} in {:?}", backend.name(), started.elapsed());

        let horizon = t - chrono::Duration::days(5);
        for round in ["first", "unchanged"] {
            let started = std::time::Instant::now();
            let input = s.load_pass(a.id, horizon).await.unwrap();
            let loaded = started.elapsed();
            let by_amount: std::collections::HashMap<&str, &EligibleMovement> =
                input.movements.iter().map(|m| (m.amount.as_str(), m)).collect();
            let mut commit = matching::commit_of("movements");
            for r in &input.requests {
                match by_amount.get(r.amount.as_str()) {
                    Some(m) => commit.matched.push(matching::matched(r, m)),
                    None => commit
                        .not_found
                        .push(matching::not_found(r, "no_movement_with_amount", "[]")),
                }
            }
            let decided = started.elapsed();
            let logged = matching::commit(s, u.id, a.id, &input, &commit, t + fixtures::ms(120_000))
                .await
                .expect("no race");
            let total = started.elapsed();
            println!(
                "{} pass ({round}): {} requests, {} movements, {} matched, {} not found, {} events; \
                 load_pass {loaded:?}, commit_pass {:?}, total {total:?}",
                backend.name(),
                input.requests.len(),
                input.movements.len(),
                commit.matched.len(),
                commit.not_found.len(),
                logged.len(),
                total - decided
            );
            if round == "first" {
                assert_eq!((commit.matched.len(), logged.len()), (hits, n));
            } else {
                assert_eq!(
                    (input.requests.len(), commit.matched.len(), logged.len()),
                    (n - hits, 0, 0)
                );
            }
        }
    })
    .await;
}

#[tokio::test]
#[ignore = "a measurement: run in release"]
async fn sqlite_pass_50k() {
    pass_50k(Backend::Sqlite).await;
}

#[tokio::test]
#[ignore = "a measurement: run in release"]
async fn postgres_pass_50k() {
    pass_50k(Backend::Postgres).await;
}

// ---------------------------------------------------------------------------------------------
// Drivers
// ---------------------------------------------------------------------------------------------

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Backend {
    Sqlite,
    Postgres,
}

impl Backend {
    fn name(self) -> &'static str {
        match self {
            Self::Sqlite => "sqlite",
            Self::Postgres => "postgres",
        }
    }
}

/// Runs `check` on a fresh, migrated database of `backend` (given the store and the database's
/// URL), then removes the database whatever the check did, then reports the check's outcome.
pub async fn run_check<F, Fut>(backend: Backend, check: F)
where
    F: FnOnce(Arc<dyn Store>, String) -> Fut,
    Fut: Future<Output = ()> + Send + 'static,
{
    let Some(db) = TestDb::create(backend).await else {
        return;
    };
    let store = reconbanker_store::connect(&db.url, 4).await.unwrap();
    assert_eq!(store.backend(), backend.name());
    let outcome = tokio::spawn(check(store.clone(), db.url.clone())).await;
    store.close().await;
    db.drop().await;
    if let Err(e) = outcome {
        std::panic::resume_unwind(e.into_panic());
    }
}

/// A database of a check's own.
struct TestDb {
    url: String,
    /// The SQLite database's directory (removed on drop).
    _dir: Option<tempfile::TempDir>,
    /// The PostgreSQL server and the database's name there.
    postgres: Option<(String, String)>,
}

impl TestDb {
    /// `None` when the backend is not available (PostgreSQL without `TEST_DATABASE_URL`).
    async fn create(backend: Backend) -> Option<Self> {
        match backend {
            Backend::Sqlite => {
                let dir = tempfile::tempdir().unwrap();
                let url = format!("sqlite://{}", dir.path().join("contract.db").display());
                let store = reconbanker_store::connect(&url, 1).await.unwrap();
                store.migrate().await.unwrap();
                store.close().await;
                Some(Self {
                    url,
                    _dir: Some(dir),
                    postgres: None,
                })
            }
            Backend::Postgres => {
                let base = postgres_url()?;
                let template = pg_template(&base).await;
                let db = format!("rbk_contract_{}", Uuid::new_v4().simple());
                {
                    // PostgreSQL copies a template only while nobody else uses it: one copy at a
                    // time per process.
                    let _turn = CREATE_LOCK.lock().await;
                    let mut admin = sqlx::PgConnection::connect(&base)
                        .await
                        .expect("connect to TEST_DATABASE_URL");
                    admin
                        .execute(format!("CREATE DATABASE {db} TEMPLATE {template}").as_str())
                        .await
                        .expect("CREATE DATABASE … TEMPLATE");
                    admin.close().await.ok();
                }
                Some(Self {
                    url: with_database(&base, &db),
                    _dir: None,
                    postgres: Some((base, db)),
                })
            }
        }
    }

    async fn drop(self) {
        let Some((base, db)) = &self.postgres else {
            return;
        };
        let mut admin = sqlx::PgConnection::connect(base)
            .await
            .expect("connect to TEST_DATABASE_URL");
        admin
            .execute(format!("DROP DATABASE IF EXISTS {db} WITH (FORCE)").as_str())
            .await
            .expect("DROP DATABASE");
        admin.close().await.ok();
    }
}

/// `TEST_DATABASE_URL`, or `None` (with a notice) to skip; a panic when `REQUIRE_POSTGRES=1`.
fn postgres_url() -> Option<String> {
    match std::env::var("TEST_DATABASE_URL") {
        Ok(url) => Some(url),
        Err(_) => {
            assert_ne!(
                std::env::var("REQUIRE_POSTGRES").as_deref(),
                Ok("1"),
                "REQUIRE_POSTGRES=1 but TEST_DATABASE_URL is not set"
            );
            println!("postgres contract check skipped: TEST_DATABASE_URL is not set");
            None
        }
    }
}

static TEMPLATE: tokio::sync::OnceCell<String> = tokio::sync::OnceCell::const_new();
static CREATE_LOCK: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

/// The name of a database migrated to the current schema, to copy from: created once per schema
/// (its name hashes the migrations), and reused by later runs.
async fn pg_template(base: &str) -> String {
    TEMPLATE
        .get_or_init(|| async {
            let name = format!("rbk_contract_tpl_{:016x}", migrations_hash());
            let mut admin = sqlx::PgConnection::connect(base)
                .await
                .expect("connect to TEST_DATABASE_URL");
            let exists: Option<i32> = sqlx::query_scalar("SELECT 1 FROM pg_database WHERE datname = $1")
                .bind(&name)
                .fetch_optional(&mut admin)
                .await
                .unwrap();
            if exists.is_none() {
                // Migrated under a name of its own, then renamed: a template never shows half
                // migrated, and of two processes racing here one rename wins.
                let building = format!("rbk_contract_build_{}", Uuid::new_v4().simple());
                admin
                    .execute(format!("CREATE DATABASE {building}").as_str())
                    .await
                    .expect("CREATE DATABASE");
                let store = reconbanker_store::connect(&with_database(base, &building), 1)
                    .await
                    .unwrap();
                store.migrate().await.unwrap();
                // Closed, or PostgreSQL would refuse to copy it.
                store.close().await;
                let renamed = admin
                    .execute(format!("ALTER DATABASE {building} RENAME TO {name}").as_str())
                    .await;
                if renamed.is_err() {
                    admin
                        .execute(format!("DROP DATABASE IF EXISTS {building} WITH (FORCE)").as_str())
                        .await
                        .unwrap();
                }
            }
            admin.close().await.ok();
            name
        })
        .await
        .clone()
}

/// A hash of the PostgreSQL migrations (names and contents).
fn migrations_hash() -> u64 {
    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("migrations/postgres");
    let mut files: Vec<_> = std::fs::read_dir(&dir).unwrap().map(|f| f.unwrap().path()).collect();
    files.sort();
    let mut hasher = std::hash::DefaultHasher::new();
    for f in files {
        f.file_name().hash(&mut hasher);
        std::fs::read(&f).unwrap().hash(&mut hasher);
    }
    hasher.finish()
}

/// `base` with its database (URL path) replaced by `db`, query string kept.
fn with_database(base: &str, db: &str) -> String {
    let (main, query) = match base.split_once('?') {
        Some((m, q)) => (m, Some(q)),
        None => (base, None),
    };
    let authority_start = main.find("://").map_or(0, |i| i + 3);
    let root = match main[authority_start..].find('/') {
        Some(i) => &main[..authority_start + i],
        None => main,
    };
    match query {
        Some(q) => format!("{root}/{db}?{q}"),
        None => format!("{root}/{db}"),
    }
}

#[test]
fn with_database_replaces_the_path() {
    assert_eq!(with_database("postgres://u@h:1/postgres", "x"), "postgres://u@h:1/x");
    assert_eq!(with_database("postgres://u@h:1", "x"), "postgres://u@h:1/x");
    assert_eq!(
        with_database("postgresql://u:p@h/db?sslmode=disable", "x"),
        "postgresql://u:p@h/x?sslmode=disable"
    );
}

// ---------------------------------------------------------------------------------------------
// Coverage of the trait
// ---------------------------------------------------------------------------------------------

/// The check sources, by file name (the drivers in this file do not count).
const CHECK_SOURCES: &[(&str, &str)] = &[
    ("accounts.rs", include_str!("accounts.rs")),
    ("api_keys.rs", include_str!("api_keys.rs")),
    ("assistance.rs", include_str!("assistance.rs")),
    ("banks.rs", include_str!("banks.rs")),
    ("deliveries.rs", include_str!("deliveries.rs")),
    ("engine.rs", include_str!("engine.rs")),
    ("events.rs", include_str!("events.rs")),
    ("lifecycle.rs", include_str!("lifecycle.rs")),
    ("matching.rs", include_str!("matching.rs")),
    ("reconcile.rs", include_str!("reconcile.rs")),
    ("users.rs", include_str!("users.rs")),
    ("review.rs", include_str!("review.rs")),
    ("passthrough.rs", include_str!("passthrough.rs")),
    ("expiry.rs", include_str!("expiry.rs")),
    ("failures.rs", include_str!("failures.rs")),
    // issue 12: hardening
    ("hardening.rs", include_str!("hardening.rs")),
    // Issue 11 (scale-out).
    ("scaleout.rs", include_str!("scaleout.rs")),
    // Issue 10: two-factor sign-in.
    ("two_factor.rs", include_str!("two_factor.rs")),
    // Issue 9 (real banks).
    ("evidence.rs", include_str!("evidence.rs")),
    // Issue 11: master-key rotation.
    ("rotation.rs", include_str!("rotation.rs")),
    // Issue 11 (scale-out): codes handed between instances, take-over.
    ("handoff.rs", include_str!("handoff.rs")),
    // Issue 11 (metrics).
    ("gauges.rs", include_str!("gauges.rs")),
    // Issue 11 (scale-out): the /v1 per-key budget shared by every instance.
    ("rate_slices.rs", include_str!("rate_slices.rs")),
    // Issue 8 (performance): WAL checkpoints off the commit path.
    ("wal.rs", include_str!("wal.rs")),
    // Issue 8 (performance): the first match pass inside the poll's transaction.
    ("poll_pass.rs", include_str!("poll_pass.rs")),
];

/// The names of the methods declared in `pub trait Store { … }`.
fn trait_methods(src: &str) -> Vec<String> {
    let start = src.find("pub trait Store").expect("`pub trait Store` in lib.rs");
    let body = &src[start..];
    let open = body.find('{').expect("trait body");
    let mut depth = 0usize;
    let mut end = body.len();
    for (i, c) in body[open..].char_indices() {
        match c {
            '{' => depth += 1,
            '}' => {
                depth -= 1;
                if depth == 0 {
                    end = open + i;
                    break;
                }
            }
            _ => {}
        }
    }
    let mut names = Vec::new();
    for line in body[open + 1..end].lines() {
        let line = line.trim();
        if line.starts_with("//") {
            continue;
        }
        let mut words = line.split(|c: char| c.is_whitespace() || c == '(' || c == '<');
        while let Some(w) = words.next() {
            if w == "fn" {
                if let Some(name) = words.next() {
                    names.push(name.to_owned());
                }
                break;
            }
        }
    }
    names
}

#[test]
fn every_store_method_is_covered() {
    let declared = trait_methods(include_str!("../../src/lib.rs"));
    assert!(declared.len() >= 30, "parsed too few trait methods: {declared:?}");
    let declared_set: BTreeSet<&str> = declared.iter().map(String::as_str).collect();
    assert_eq!(
        declared_set.len(),
        declared.len(),
        "duplicate trait method names: {declared:?}"
    );
    // A call reads `.name(` (or `.name` at the end of a line, before a wrapped argument list).
    let called = |name: &str| {
        CHECK_SOURCES.iter().any(|(_, src)| {
            src.contains(&format!(".{name}(")) || src.lines().any(|l| l.trim_end().ends_with(&format!(".{name}")))
        })
    };
    let uncovered: Vec<&str> = declared_set.iter().copied().filter(|m| !called(m)).collect();
    assert!(
        uncovered.is_empty(),
        "Store methods no contract check calls: {uncovered:?} ({} declared)",
        declared.len()
    );
}
