//! Bulk statements: many rows in or out as ONE JSON text, for the writes and reads of a
//! reconciliation poll or pass (tens of thousands of rows in one transaction).
//!
//! Why: on SQLite, sqlx binds a numbered parameter by scanning the statement's parameters (time
//! quadratic in their number per statement), and hands every row read to the async side as a
//! message of its own, each column copied (`sqlite3_value_dup`). A 50,000-order poll and pass
//! spent most of its time there, in the allocator and in thread switches, not in SQLite. One JSON
//! parameter (`json_each` / `jsonb_array_elements`) or one aggregated JSON column
//! (`json_group_array` / `json_agg`) moves the same rows in one crossing, decoded by the
//! database's C JSON parser on one side and serde on the other.
//!
//! Rows are JSON arrays (positional, no key per value). A statement reads element `i` of the
//! current row with [`text`], [`int`], [`uuid`] or [`flag`], from the table [`source`] names `j`.

use std::fmt::Write as _;
use std::future::Future;
use std::task::Poll;

use serde::de::DeserializeOwned;
use uuid::Uuid;

use super::rows::corrupt;
use super::BACKEND;
use crate::error::StoreResult;

fn sqlite() -> bool {
    BACKEND == "sqlite"
}

/// `FROM` item: the rows of JSON parameter `$p` as table `j` (`j.value` the row, `j.key` its
/// position, in order).
///
/// On SQLite each row is turned into JSONB once, in a materialized table: `json_each` hands
/// `value` out as JSON text, converted again from its parse every time the statement reads
/// it, and every `->>` of a text value parses it — so a row of 16 columns read straight from
/// `json_each` was converted 16 times (a third of a 50,000-order poll's CPU in `perf`); a
/// JSONB row is read by `->>` without parsing. The same holds on PostgreSQL: `->>` of a `json`
/// value parses its text again, so the rows are `jsonb` (a 2,500-row insert of 16 columns: 98 ms
/// from `json`, 25 ms from `jsonb`).
pub(super) fn source(p: usize) -> String {
    if sqlite() {
        format!(
            "(WITH r AS MATERIALIZED (SELECT key, jsonb(value) AS value FROM json_each(${p})) \
             SELECT key, value FROM r) AS j"
        )
    } else {
        format!("jsonb_array_elements(CAST(${p} AS jsonb)) WITH ORDINALITY AS j(value, key)")
    }
}

/// Element `i` of the row as text (JSON null → NULL).
pub(super) fn text(i: usize) -> String {
    format!("(j.value->>{i})")
}

/// A long text of the row (written by [`JsonRows::big_text`]): elements `i` and `i + 1` are its
/// 1-based offset and its length in bytes within the side bytes of parameter `$p` (see
/// [`JsonRows::finish_with_texts`]).
pub(super) fn big_text(i: usize, p: usize) -> String {
    let next = i + 1;
    if sqlite() {
        format!("CAST(substr(${p}, j.value->>{i}, j.value->>{next}) AS TEXT)")
    } else {
        format!(
            "convert_from(substring(${p} FROM CAST(j.value->>{i} AS int) FOR CAST(j.value->>{next} AS int)), 'UTF8')"
        )
    }
}

/// Element `i` of the row as an integer.
pub(super) fn int(i: usize) -> String {
    if sqlite() {
        format!("(j.value->>{i})")
    } else {
        format!("CAST(j.value->>{i} AS BIGINT)")
    }
}

/// Element `i` of the row (32 hex digits) as the backend's UUID.
pub(super) fn uuid(i: usize) -> String {
    if sqlite() {
        format!("unhex(j.value->>{i})")
    } else {
        format!("CAST(j.value->>{i} AS uuid)")
    }
}

/// A JSON array of rows, each a JSON array of values, written in place (no value tree).
pub(super) struct JsonRows {
    buf: Vec<u8>,
    rows: usize,
    /// Whether the current row has a value yet.
    filled: bool,
    /// The long texts of [`JsonRows::big_text`], end to end.
    texts: Vec<u8>,
}

impl JsonRows {
    /// Room for `bytes` of text.
    pub(super) fn with_capacity(bytes: usize) -> Self {
        let mut buf = Vec::with_capacity(bytes + 2);
        buf.push(b'[');
        Self {
            buf,
            rows: 0,
            filled: false,
            texts: Vec::new(),
        }
    }

    /// Starts the next row.
    pub(super) fn row(&mut self) -> &mut Self {
        if self.rows > 0 {
            self.buf.extend_from_slice(b"],[");
        } else {
            self.buf.push(b'[');
        }
        self.rows += 1;
        self.filled = false;
        self
    }

    fn sep(&mut self) {
        if self.filled {
            self.buf.push(b',');
        }
        self.filled = true;
    }

    pub(super) fn text(&mut self, v: &str) -> &mut Self {
        self.sep();
        // Writing a string into a Vec cannot fail.
        let _ = serde_json::to_writer(&mut self.buf, v);
        self
    }

    /// A long text (an event's data, a webhook body) passed beside the JSON rather than in it:
    /// escaped into JSON, it would be unescaped again by the database for every row, and each
    /// quote of a JSON text doubles. Read with [`big_text`].
    pub(super) fn big_text(&mut self, v: &str) -> &mut Self {
        let offset = i64::try_from(self.texts.len()).unwrap_or(i64::MAX).saturating_add(1);
        self.texts.extend_from_slice(v.as_bytes());
        self.int(offset).int(i64::try_from(v.len()).unwrap_or(i64::MAX))
    }

    pub(super) fn opt_text(&mut self, v: Option<&str>) -> &mut Self {
        match v {
            Some(v) => self.text(v),
            None => self.null(),
        }
    }

    pub(super) fn int(&mut self, v: i64) -> &mut Self {
        self.sep();
        let _ = write!(Itoa(&mut self.buf), "{v}");
        self
    }

    pub(super) fn opt_int(&mut self, v: Option<i64>) -> &mut Self {
        match v {
            Some(v) => self.int(v),
            None => self.null(),
        }
    }

    pub(super) fn uuid(&mut self, v: Uuid) -> &mut Self {
        self.sep();
        let mut hex = [0u8; 32];
        self.buf.push(b'"');
        self.buf.extend_from_slice(v.simple().encode_lower(&mut hex).as_bytes());
        self.buf.push(b'"');
        self
    }

    pub(super) fn null(&mut self) -> &mut Self {
        self.sep();
        self.buf.extend_from_slice(b"null");
        self
    }

    /// The JSON text and the side bytes of the long texts (bound as a second parameter).
    pub(super) fn finish_with_texts(mut self) -> (String, Vec<u8>) {
        let texts = std::mem::take(&mut self.texts);
        (self.finish(), texts)
    }

    /// The JSON text.
    pub(super) fn finish(mut self) -> String {
        if self.rows > 0 {
            self.buf.push(b']');
        }
        self.buf.push(b']');
        // Only valid UTF-8 was written: `&str`s, digits and ASCII punctuation.
        String::from_utf8(self.buf).unwrap_or_default()
    }
}

/// Awaits `write` — a statement the database works on by itself (SQLite: on sqlx's worker
/// thread; PostgreSQL: in the server) — while this thread does `work`: `write` is polled once,
/// which hands the statement over, then `work` runs, then `write` is awaited. A bulk write
/// builds its next rows this way while the database stores the current ones: the two run on two
/// cores instead of taking turns (`docs/reconciliation.md`, "Performance").
pub(super) async fn while_writing<F: Future, T>(write: F, work: impl FnOnce() -> T) -> (F::Output, T) {
    let mut write = std::pin::pin!(write);
    let early = std::future::poll_fn(|cx| Poll::Ready(write.as_mut().poll(cx))).await;
    let done = work();
    let out = match early {
        Poll::Ready(out) => out,
        Poll::Pending => write.await,
    };
    (out, done)
}

/// The statements' arguments of a bulk write, one chunk of `BULK_ROWS` items each, built one
/// chunk ahead: [`Chunks::next`] hands out the current chunk's, and [`Chunks::write`] awaits
/// its statement while building the next.
pub(super) struct Chunks<'a, T, A, F> {
    chunks: std::slice::Chunks<'a, T>,
    build: F,
    ready: Option<A>,
}

impl<'a, T, A, F: Fn(&'a [T]) -> A> Chunks<'a, T, A, F> {
    /// Builds the first chunk's arguments now.
    pub(super) fn new(items: &'a [T], per_chunk: usize, build: F) -> Self {
        let mut chunks = items.chunks(per_chunk.max(1));
        let ready = chunks.next().map(&build);
        Self { chunks, build, ready }
    }

    /// The current chunk's arguments; `None` when every chunk was handed out.
    pub(super) fn next(&mut self) -> Option<A> {
        self.ready.take()
    }

    /// Awaits `write` (the statement of the chunk [`Chunks::next`] handed out) while building
    /// the next chunk's arguments.
    pub(super) async fn write<O>(&mut self, write: impl Future<Output = O>) -> O {
        let (chunks, build) = (&mut self.chunks, &self.build);
        let (out, next) = while_writing(write, || chunks.next().map(build)).await;
        self.ready = next;
        out
    }
}

/// Ids as rows of one element (see [`in_ids`]).
pub(super) fn ids<I: IntoIterator<Item = Uuid>>(ids: I) -> JsonRows {
    let ids = ids.into_iter();
    let mut rows = JsonRows::with_capacity(ids.size_hint().0 * 38);
    for id in ids {
        rows.row().uuid(id);
    }
    rows
}

/// `IN (…)` of the ids of JSON parameter `$p` (written by [`ids`]).
///
/// On PostgreSQL the ids become one array, computed once, that the row's id is compared with:
/// written as a semi-join, the planner can put the JSON function on the inner side of a nested
/// loop and extract and cast every id again for every row of the table it scans — which it does
/// when the table's statistics predate a bulk insert in the same transaction (a poll's first
/// pass over 10,000 just-stored movements: two statements of 21 s each).
pub(super) fn in_ids(p: usize) -> String {
    if sqlite() {
        format!("IN (SELECT {} FROM {})", uuid(0), source(p))
    } else {
        format!("= ANY (ARRAY(SELECT {} FROM {}))", uuid(0), source(p))
    }
}

/// `fmt::Write` over a byte buffer (integers without a `String` each).
struct Itoa<'a>(&'a mut Vec<u8>);

impl std::fmt::Write for Itoa<'_> {
    fn write_str(&mut self, s: &str) -> std::fmt::Result {
        self.0.extend_from_slice(s.as_bytes());
        Ok(())
    }
}

/// The SQL expression of one row out: a JSON array of `cols` (expressions on the selected
/// table). UUID columns are written `uuid:<expr>`, boolean ones `flag:<expr>`.
pub(super) fn row_out(cols: &[&str]) -> String {
    let items: Vec<String> = cols
        .iter()
        .map(|c| match (c.strip_prefix("uuid:"), c.strip_prefix("flag:")) {
            (Some(e), _) if sqlite() => format!("lower(hex({e}))"),
            (Some(e), _) => e.to_owned(),
            (_, Some(e)) if sqlite() => format!("json(CASE WHEN {e} THEN 'true' ELSE 'false' END)"),
            (_, Some(e)) => e.to_owned(),
            _ => (*c).to_owned(),
        })
        .collect();
    if sqlite() {
        format!("json_array({})", items.join(", "))
    } else {
        format!("json_build_array({})", items.join(", "))
    }
}

/// The aggregate of [`row_out`] over the rows of `from_where` (`FROM … WHERE …`, maybe with
/// `ORDER BY`/`LIMIT` inside a subquery the caller writes): one text column, `[]` when none.
pub(super) fn agg_out(row: &str, from_where: &str) -> String {
    if sqlite() {
        format!("SELECT json_group_array({row}) {from_where}")
    } else {
        format!("SELECT CAST(COALESCE(json_agg({row}), '[]') AS TEXT) {from_where}")
    }
}

/// Decodes an aggregate read by [`agg_out`]; `what` names it in a corruption error.
pub(super) fn parse<T: DeserializeOwned>(what: &str, text: &str) -> StoreResult<Vec<T>> {
    serde_json::from_str(text).map_err(|e| corrupt(what, e))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The work runs while the write is pending (handed over, not finished), and the write's
    /// output comes back; a write ready at once is not polled again.
    #[test]
    fn work_runs_between_handing_over_and_awaiting() {
        use std::sync::atomic::{AtomicUsize, Ordering};
        use std::task::{Context, Waker};

        let polls = AtomicUsize::new(0);
        // Pending on its first poll (the statement handed over), ready on the second.
        let write = std::future::poll_fn(|cx| {
            if polls.fetch_add(1, Ordering::SeqCst) == 0 {
                cx.waker().wake_by_ref();
                Poll::Pending
            } else {
                Poll::Ready("written")
            }
        });
        let both = while_writing(write, || polls.load(Ordering::SeqCst));
        let waker = Waker::noop();
        let mut both = std::pin::pin!(both);
        let out = loop {
            if let Poll::Ready(out) = both.as_mut().poll(&mut Context::from_waker(waker)) {
                break out;
            }
        };
        assert_eq!(out, ("written", 1), "the work saw the write polled once, not finished");
        assert_eq!(polls.load(Ordering::SeqCst), 2);

        let ready = while_writing(std::future::ready(7), || "built");
        let mut ready = std::pin::pin!(ready);
        assert_eq!(
            ready.as_mut().poll(&mut Context::from_waker(waker)),
            Poll::Ready((7, "built"))
        );
    }

    /// Every chunk is handed out once, in order, each built before its write.
    #[test]
    fn chunks_are_built_one_ahead() {
        let items: Vec<u32> = (0..7).collect();
        let mut chunks = Chunks::new(&items, 3, |c: &[u32]| c.to_vec());
        let mut seen = Vec::new();
        let waker = std::task::Waker::noop();
        while let Some(chunk) = chunks.next() {
            let write = chunks.write(std::future::ready(chunk.len()));
            let mut write = std::pin::pin!(write);
            match write.as_mut().poll(&mut std::task::Context::from_waker(waker)) {
                Poll::Ready(n) => assert_eq!(n, chunk.len()),
                Poll::Pending => unreachable!("a ready write"),
            }
            seen.push(chunk);
        }
        assert_eq!(seen, vec![vec![0, 1, 2], vec![3, 4, 5], vec![6]]);
    }

    #[test]
    fn rows_are_json_arrays_of_values() {
        let mut r = JsonRows::with_capacity(16);
        r.row().text("a\"b").int(-3).null().opt_text(Some("é"));
        r.row().uuid(Uuid::from_u128(0xab)).opt_text(None);
        let v: serde_json::Value = serde_json::from_str(&r.finish()).expect("json");
        assert_eq!(
            v,
            serde_json::json!([["a\"b", -3, null, "é"], ["000000000000000000000000000000ab", null]])
        );
        assert_eq!(JsonRows::with_capacity(0).finish(), "[]");
    }
}
