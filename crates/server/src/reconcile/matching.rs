//! The deterministic match pass (docs/reconciliation.md §5): name normalization and scoring (`name_rules: 1`),
//! reference codes, and [`run_pass`], which turns the open requests and eligible movements of
//! one account into decisions with per-candidate explanations.
//!
//! Pure: the caller loads the state, calls [`run_pass`] inside its transaction and writes the
//! decisions. Scores are integers in thousandths (`875` = 0.875) so comparisons and the
//! ambiguity margin are exact and the recorded explanations never carry float noise.
//!
//! Cost: requests are only scored against movements of the same amount (one hash lookup per
//! request); names and reference texts are prepared once, lazily, for the requests and
//! movements that share an amount with something. A pass is
//! O(R + M + E log E + (A + 1) · E) for R requests, M movements, E same-amount pairs and A
//! requests found ambiguous (each restart of the assignment is one linear sweep of the edges).

use std::borrow::Cow;
use std::cmp::Reverse;
use std::collections::{HashMap, HashSet};

use rust_decimal::Decimal;
use serde::Serialize;
use unicode_normalization::char::is_combining_mark;
use unicode_normalization::UnicodeNormalization;
use uuid::Uuid;

/// Version of the name rules below (normalization, noise tokens, token scores), recorded with
/// decisions so a later change can be told apart.
pub const NAME_RULES: u32 = 1;
/// A name score (thousandths) at or above this can auto-match (docs/reconciliation.md §5.4, §10).
pub const STRONG_BAND: u16 = 800;
/// A name score at or above this (and below [`STRONG_BAND`]) is shown for review, never matched.
pub const WEAK_BAND: u16 = 500;
/// A one-token name against a multi-token one scores at most this: "PEREZ" alone is not enough.
pub const ONE_TOKEN_CAP: u16 = 790;
/// An alternative within this many thousandths of the chosen edge makes a request ambiguous
/// (`AMBIGUITY_MARGIN` 0.10, docs/reconciliation.md §5.6 step 4).
pub const AMBIGUITY_MARGIN: u16 = 100;
/// The score of a reference-code match, whatever the names say (docs/reconciliation.md §5.5).
pub const REFERENCE_SCORE: u16 = 1000;
/// How long before its registration a movement may have arrived (docs/reconciliation.md §5.2: 120 h, fixed).
pub const WINDOW_BEFORE_REGISTRATION_MS: i64 = 120 * 3_600_000;
/// How long a request stays open after its registration (docs/reconciliation.md §2: exactly 120 h).
pub const EXPIRY_MS: i64 = 120 * 3_600_000;
/// Most candidate explanations kept per request.
pub const MAX_EXPLAINED_CANDIDATES: usize = 20;
/// Reference codes shorter than this (compacted) never match.
const REFERENCE_MIN_TOKEN: usize = 4;
/// Reference codes at least this long (compacted) match anywhere inside the compacted text.
const REFERENCE_MIN_SUBSTRING: usize = 6;

/// Tokens that say nothing about who paid: legal forms and name particles (docs/reconciliation.md §5.3).
const NOISE_TOKENS: &[&str] = &[
    "sa", "sas", "srl", "sl", "ltda", "ltd", "inc", "llc", "gmbh", "bv", "spa", "cia", "de", "del", "la", "las", "los",
    "y", "e", "da", "do", "dos", "das", "van", "von", "der",
];

// ---------------------------------------------------------------------------------------------
// Names

/// A name after §5.3: its tokens, each also as chars for the edit distance.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct NormalizedName {
    tokens: Vec<String>,
    chars: Vec<Vec<char>>,
}

impl NormalizedName {
    #[cfg(test)]
    pub fn tokens(&self) -> &[String] {
        &self.tokens
    }

    pub fn is_empty(&self) -> bool {
        self.tokens.is_empty()
    }
}

/// Normalizes a name (docs/reconciliation.md §5.3, `name_rules: 1`): NFKD, combining marks dropped, lowercase,
/// `ß æ œ ø đ ł` folded, `.` and apostrophes deleted, every other non-alphanumeric a space,
/// then tokens without the noise tokens (unless that leaves none).
pub fn normalize_name(name: &str) -> NormalizedName {
    let mut text = String::with_capacity(name.len());
    for c in name.nfkd().filter(|c| !is_combining_mark(*c)) {
        for c in c.to_lowercase() {
            match c {
                'ß' => text.push_str("ss"),
                'æ' => text.push_str("ae"),
                'œ' => text.push_str("oe"),
                'ø' => text.push('o'),
                'đ' => text.push('d'),
                'ł' => text.push('l'),
                '.' | '\'' | '’' | '`' => {}
                c if c.is_alphanumeric() => text.push(c),
                _ => text.push(' '),
            }
        }
    }
    let all: Vec<&str> = text.split_whitespace().collect();
    let kept: Vec<&str> = all.iter().copied().filter(|t| !NOISE_TOKENS.contains(t)).collect();
    let tokens: Vec<String> = if kept.is_empty() { all } else { kept }
        .into_iter()
        .map(str::to_owned)
        .collect();
    let chars = tokens.iter().map(|t| t.chars().collect()).collect();
    NormalizedName { tokens, chars }
}

/// Strong can auto-match; weak is shown for review; none is not a candidate.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Band {
    Strong,
    Weak,
    None,
}

impl Band {
    pub fn of(score: u16) -> Band {
        if score >= STRONG_BAND {
            Band::Strong
        } else if score >= WEAK_BAND {
            Band::Weak
        } else {
            Band::None
        }
    }
}

/// A name comparison, as explanations record it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct NameScore {
    /// Thousandths: 875 = 0.875.
    pub score: u16,
    pub band: Band,
    /// The paired tokens (order's, movement's, pair score in thousandths), best first.
    pub pairs: Vec<(String, String, u16)>,
}

/// Scores a movement's sender name against an order's name (docs/reconciliation.md §5.4). A missing or blank
/// side scores 0 (the pass reports it as `no_sender_name`).
pub fn name_score(order_name: &str, movement_name: Option<&str>) -> NameScore {
    let order = normalize_name(order_name);
    let movement = movement_name.map(normalize_name).unwrap_or_default();
    score_names(&order, &movement)
}

/// [`name_score`] on names already normalized, with the token pairs.
pub fn score_names(order: &NormalizedName, movement: &NormalizedName) -> NameScore {
    let (score, pairs) = score_and_pairs(order, movement);
    NameScore {
        score,
        band: Band::of(score),
        pairs: pairs
            .into_iter()
            .map(|(i, j, s)| (order.tokens[i].clone(), movement.tokens[j].clone(), s))
            .collect(),
    }
}

fn score_and_pairs(a: &NormalizedName, b: &NormalizedName) -> (u16, Vec<(usize, usize, u16)>) {
    if a.is_empty() || b.is_empty() {
        return (0, Vec::new());
    }
    // Every scoring pair, then greedily one-to-one: best score first, ties by position.
    let mut candidates: Vec<(u16, usize, usize)> = Vec::new();
    for (i, ta) in a.chars.iter().enumerate() {
        for (j, tb) in b.chars.iter().enumerate() {
            let s = token_score(ta, tb);
            if s > 0 {
                candidates.push((s, i, j));
            }
        }
    }
    candidates.sort_by_key(|&(s, i, j)| (Reverse(s), i, j));
    let mut used_a = vec![false; a.chars.len()];
    let mut used_b = vec![false; b.chars.len()];
    let mut pairs = Vec::new();
    let mut sum: u64 = 0;
    for (s, i, j) in candidates {
        if !used_a[i] && !used_b[j] {
            used_a[i] = true;
            used_b[j] = true;
            sum += u64::from(s);
            pairs.push((i, j, s));
        }
    }
    // 0.75 × S / min + 0.25 × S / max = S × (3·max + min) / (4·min·max), rounded half up.
    let (la, lb) = (a.chars.len() as u64, b.chars.len() as u64);
    let (min, max) = (la.min(lb), la.max(lb));
    let num = sum * (3 * max + min);
    let den = 4 * min * max;
    let mut score = u16::try_from((2 * num + den) / (2 * den)).unwrap_or(1000).min(1000);
    // `perez gomez` vs `perezgomez`: the same letters, split differently. This wins over the
    // one-token cap below, which it exists to lift (the spec's own example is one vs two).
    if a.tokens.concat() == b.tokens.concat() {
        score = 1000;
    } else if (la == 1) != (lb == 1) {
        score = score.min(ONE_TOKEN_CAP);
    }
    (score, pairs)
}

/// One token against another (docs/reconciliation.md §5.4), in thousandths.
fn token_score(a: &[char], b: &[char]) -> u16 {
    if a == b {
        return 1000;
    }
    let (la, lb) = (a.len(), b.len());
    if la >= 5 && lb >= 5 && la.abs_diff(lb) <= 2 {
        let limit = if la >= 9 && lb >= 9 { 2 } else { 1 };
        if osa_distance(a, b) <= limit {
            return 900;
        }
    }
    let (short, long) = if la <= lb { (a, b) } else { (b, a) };
    if short.len() >= 4 && long.starts_with(short) {
        return 800;
    }
    if short.len() == 1 && long.first() == short.first() {
        return 500;
    }
    0
}

/// Damerau–Levenshtein distance in its usual "optimal string alignment" form (adjacent
/// transpositions, no edits of a transposed pair): `jaun` → `juan` is one edit.
fn osa_distance(a: &[char], b: &[char]) -> usize {
    let width = b.len() + 1;
    // Three rows: two back (for transpositions), previous, current.
    let mut rows = vec![0usize; 3 * width];
    for (j, cell) in rows[width..2 * width].iter_mut().enumerate() {
        *cell = j;
    }
    for i in 1..=a.len() {
        let (back, rest) = rows.split_at_mut(width);
        let (prev, cur) = rest.split_at_mut(width);
        cur[0] = i;
        for j in 1..=b.len() {
            let cost = usize::from(a[i - 1] != b[j - 1]);
            let mut d = (prev[j] + 1).min(cur[j - 1] + 1).min(prev[j - 1] + cost);
            if i > 1 && j > 1 && a[i - 1] == b[j - 2] && a[i - 2] == b[j - 1] {
                d = d.min(back[j - 2] + 1);
            }
            cur[j] = d;
        }
        // Shift: back ← prev, prev ← cur.
        back.copy_from_slice(prev);
        prev.copy_from_slice(cur);
    }
    rows[width + b.len()]
}

// ---------------------------------------------------------------------------------------------
// Reference codes

/// Uppercase, letters and digits only.
fn compact(s: &str) -> String {
    s.chars()
        .filter(|c| c.is_alphanumeric())
        .flat_map(char::to_uppercase)
        .collect()
}

/// The uppercase text split on everything that is not a letter or digit.
fn upper_tokens(s: &str) -> Vec<String> {
    s.to_uppercase()
        .split(|c: char| !c.is_alphanumeric())
        .filter(|t| !t.is_empty())
        .map(str::to_owned)
        .collect()
}

/// A movement's texts prepared for reference search.
#[derive(Debug, Default)]
struct RefText {
    compact: Vec<String>,
    tokens: Vec<String>,
}

impl RefText {
    fn of(description: &str, name: Option<&str>) -> RefText {
        let mut text = RefText::default();
        // Searched one at a time: a code must not be found across the end of one and the start
        // of the other.
        for part in std::iter::once(description).chain(name) {
            text.compact.push(compact(part));
            text.tokens.extend(upper_tokens(part));
        }
        text
    }

    /// `reference` already compacted.
    fn contains(&self, reference: &str) -> bool {
        match reference.chars().count() {
            n if n >= REFERENCE_MIN_SUBSTRING => self.compact.iter().any(|t| t.contains(reference)),
            n if n >= REFERENCE_MIN_TOKEN => self.tokens.iter().any(|t| t == reference),
            _ => false,
        }
    }
}

/// Whether an order's reference code is found in a movement (docs/reconciliation.md §5.5): compacted (uppercase,
/// letters and digits), a code of ≥ 6 chars anywhere inside the compacted description or name,
/// one of 4–5 chars equal to a whole token of either. Shorter codes never match.
pub fn reference_matches(reference: &str, description: &str, name: Option<&str>) -> bool {
    RefText::of(description, name).contains(&compact(reference))
}

// ---------------------------------------------------------------------------------------------
// The pass

/// The open statuses a request may have when it enters a pass.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ReqStatus {
    Pending,
    NotFound,
    Ambiguous,
    Failed,
}

/// An open request, as the pass needs it.
#[derive(Debug, Clone)]
pub struct Req<'a> {
    pub id: Uuid,
    /// The texts are borrowed from the snapshot's rows where there are any (a first pass holds
    /// 50,000 of them: copies would be about 10 MB at the pass's peak).
    pub external_id: Cow<'a, str>,
    pub amount: Decimal,
    pub currency: Cow<'a, str>,
    pub sender_name: Cow<'a, str>,
    pub reference: Option<Cow<'a, str>>,
    pub registered_at_ms: i64,
    pub expires_at_ms: i64,
    pub status: ReqStatus,
    /// For an ambiguous request, the candidate set its last attempt recorded
    /// ([`Ambiguous::candidate_set`]).
    pub last_candidates: Option<Vec<Uuid>>,
    /// Movements a human ruled out for this request.
    pub rejected: Vec<Uuid>,
}

/// An eligible movement (credit, unmatched, not ignored), as the pass needs it.
#[derive(Debug, Clone)]
pub struct Mov {
    pub id: Uuid,
    pub amount: Decimal,
    pub currency: String,
    pub name: Option<String>,
    pub description: String,
    /// `None` when the bank's date could not be parsed: never eligible.
    pub received_at_ms: Option<i64>,
    /// Already matched to a request by an earlier pass or by hand: never assigned again; it
    /// explains a request left without a candidate (`taken`, `candidates_taken`).
    pub taken: bool,
}

/// The per-check results of one (request, movement) pair.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Checks {
    pub amount: bool,
    pub currency: bool,
    pub window: bool,
    pub name: NameScore,
    pub reference: bool,
}

/// One movement considered for a request, and what the pass made of it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Candidate {
    pub movement: Uuid,
    pub checks: Checks,
    /// The edge score in thousandths: 1000 for a reference match, else the name score.
    pub score: u16,
    /// `chosen`, `alternative` (strong, not chosen), `weak`, `no_sender_name`,
    /// `name_too_different`, `taken` (by `taken_by` in this pass), `rejected`, `outside_window`,
    /// `received_at_unparseable`, `not_a_credit`, `currency_mismatch`.
    pub verdict: &'static str,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub taken_by: Option<Uuid>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Matched {
    pub request: Uuid,
    pub movement: Uuid,
    pub score: u16,
    pub reference_match: bool,
    /// `None`, `paired_by_age` or `reference_match` (docs/reconciliation.md §5.7).
    pub reason: Option<&'static str>,
    pub explanation: Candidate,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Ambiguous {
    pub request: Uuid,
    /// The equally plausible movements when the request was found ambiguous ({m} ∪ {m′…} of
    /// step 4), sorted: store it as the request's `last_candidates`. The next pass skips the
    /// request while its strong movements are exactly these; once one is taken, ignored or
    /// rejected, it is evaluated again (and matched if one is left).
    pub candidate_set: Vec<Uuid>,
    /// Explanations (at most [`MAX_EXPLAINED_CANDIDATES`]); strong ones still free have the
    /// verdict `alternative`.
    pub candidates: Vec<Candidate>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NotFound {
    pub request: Uuid,
    /// The most specific reason (see [`run_pass`]).
    pub reason: &'static str,
    /// Every movement of the same amount, best first, at most [`MAX_EXPLAINED_CANDIDATES`].
    pub candidates: Vec<Candidate>,
}

/// The decisions of one pass. Every list is in request order (`registered_at`, `external_id`,
/// `id`), whatever order the input came in.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Pass {
    pub expired: Vec<Uuid>,
    pub matched: Vec<Matched>,
    pub ambiguous: Vec<Ambiguous>,
    pub not_found: Vec<NotFound>,
    /// Ambiguous requests skipped because their candidate set did not change.
    pub unchanged_ambiguous: Vec<Uuid>,
}

/// A movement prepared once for every request that shares its amount.
struct MovPrep {
    name: NormalizedName,
    refs: RefText,
}

/// One same-amount (request, movement) pair and its checks.
struct Pair {
    mov: usize,
    eligible: bool,
    credit: bool,
    currency: bool,
    window: bool,
    rejected: bool,
    /// The movement was matched before this pass.
    taken_before: bool,
    reference: bool,
    name_score: u16,
    has_sender_name: bool,
}

impl Pair {
    fn score(&self) -> u16 {
        if self.reference {
            REFERENCE_SCORE
        } else {
            self.name_score
        }
    }

    /// An edge of the assignment (docs/reconciliation.md §5.6 step 2).
    fn is_strong_edge(&self) -> bool {
        self.eligible
            && self.credit
            && self.currency
            && self.window
            && !self.rejected
            && !self.taken_before
            && (self.reference || self.name_score >= STRONG_BAND)
    }
}

#[derive(Clone, Copy)]
struct Edge {
    req: usize,
    mov: usize,
    reference: bool,
    score: u16,
}

/// Runs the match pass (docs/reconciliation.md §5.6) at `now_ms` over an account's open requests and eligible
/// movements.
///
/// 1. Requests with `now ≥ expires_at` expire (any open status) and take no further part.
/// 2. Strong edges join a request and a movement with the same amount (exact decimals), the same
///    currency (trimmed, uppercase), `registered_at − 120 h ≤ received_at ≤ expires_at`, not
///    rejected, and a strong name or a reference match. An ambiguous request whose strong
///    movements are exactly its `last_candidates` is skipped (`unchanged_ambiguous`).
/// 3. Edges in rank order (reference desc, score desc, `registered_at`, `external_id`, request
///    id, `received_at`, movement id) are taken greedily when both ends are free.
/// 4. The first assigned request (in rank order) with a free alternative of the same reference
///    flag within [`AMBIGUITY_MARGIN`] becomes ambiguous and leaves; step 3 runs again.
/// 5. Matched reason: `paired_by_age` when another request with an equal edge to the same
///    movement (same flag, same score) lost it by rank and ended not found, else
///    `reference_match` for a reference edge, else none. A request not matched is `not_found`
///    with the first reason that applies, in this precedence (what a human can act on first,
///    then the furthest check the best candidate passed): `weak_name_only`, `no_sender_name`,
///    `candidates_taken`, `candidates_rejected`, `name_too_different`, `outside_window` (also
///    for unparseable dates), `currency_mismatch`, `no_movement_with_amount`. Rejected and taken
///    movements never count as weak or nameless candidates.
pub fn run_pass(now_ms: i64, requests: &[Req<'_>], movements: &[Mov]) -> Pass {
    let mut pass = Pass::default();

    // Canonical order first: everything after depends only on positions in these vectors.
    let mut reqs: Vec<&Req<'_>> = requests.iter().collect();
    reqs.sort_by(|a, b| (a.registered_at_ms, &a.external_id, a.id).cmp(&(b.registered_at_ms, &b.external_id, b.id)));
    let mut movs: Vec<&Mov> = movements.iter().collect();
    movs.sort_by_key(|m| (m.received_at_ms.is_none(), m.received_at_ms, m.id));

    let (expired, open): (Vec<&Req<'_>>, Vec<&Req<'_>>) = reqs.into_iter().partition(|r| now_ms >= r.expires_at_ms);
    pass.expired = expired.iter().map(|r| r.id).collect();

    let mut by_amount: HashMap<Decimal, Vec<usize>> = HashMap::new();
    for (i, m) in movs.iter().enumerate() {
        by_amount.entry(m.amount.normalize()).or_default().push(i);
    }
    let mov_currency: Vec<String> = movs.iter().map(|m| normalize_currency(&m.currency)).collect();
    let mut prep: Vec<Option<MovPrep>> = movs.iter().map(|_| None).collect();

    // Step 2: every same-amount pair, checked once.
    let mut pairs: Vec<Vec<Pair>> = Vec::with_capacity(open.len());
    let mut names: Vec<Option<NormalizedName>> = Vec::with_capacity(open.len());
    for r in &open {
        let Some(same_amount) = by_amount.get(&r.amount.normalize()) else {
            pairs.push(Vec::new());
            names.push(None);
            continue;
        };
        let name = normalize_name(&r.sender_name);
        let currency = normalize_currency(&r.currency);
        let reference = r.reference.as_deref().map(compact);
        let mut list = Vec::with_capacity(same_amount.len());
        for &mi in same_amount {
            let m = movs[mi];
            let p = prep[mi].get_or_insert_with(|| MovPrep {
                name: m.name.as_deref().map(normalize_name).unwrap_or_default(),
                refs: RefText::of(&m.description, m.name.as_deref()),
            });
            list.push(Pair {
                mov: mi,
                eligible: m.received_at_ms.is_some(),
                credit: m.amount > Decimal::ZERO,
                currency: mov_currency[mi] == currency,
                window: m
                    .received_at_ms
                    .is_some_and(|t| r.registered_at_ms - WINDOW_BEFORE_REGISTRATION_MS <= t && t <= r.expires_at_ms),
                rejected: r.rejected.contains(&m.id),
                taken_before: m.taken,
                reference: reference.as_deref().is_some_and(|code| p.refs.contains(code)),
                name_score: score_and_pairs(&name, &p.name).0,
                has_sender_name: !p.name.is_empty(),
            });
        }
        pairs.push(list);
        names.push(Some(name));
    }

    let mut skipped = vec![false; open.len()];
    let mut edges: Vec<Edge> = Vec::new();
    for (ri, r) in open.iter().enumerate() {
        let strong = pairs[ri].iter().filter(|p| p.is_strong_edge());
        if r.status == ReqStatus::Ambiguous {
            if let Some(last) = &r.last_candidates {
                let mut now: Vec<Uuid> = strong.clone().map(|p| movs[p.mov].id).collect();
                now.sort_unstable();
                let mut last = last.clone();
                last.sort_unstable();
                last.dedup();
                if now == last {
                    skipped[ri] = true;
                    pass.unchanged_ambiguous.push(r.id);
                    continue;
                }
            }
        }
        edges.extend(strong.map(|p| Edge {
            req: ri,
            mov: p.mov,
            reference: p.reference,
            score: p.score(),
        }));
    }
    // A skipped request competes again when a request of this pass could take one of its
    // candidates (a candidate about to be taken is a changed set): otherwise arrival order would
    // decide — an order arriving after an identical one went ambiguous would leave both
    // ambiguous where, arriving together, both match. Woken requests add edges, which can wake
    // more, so until nothing changes.
    loop {
        let contested: HashSet<usize> = edges.iter().map(|e| e.mov).collect();
        let woken: Vec<usize> = (0..open.len())
            .filter(|&ri| {
                skipped[ri]
                    && pairs[ri]
                        .iter()
                        .any(|p| p.is_strong_edge() && contested.contains(&p.mov))
            })
            .collect();
        if woken.is_empty() {
            break;
        }
        for ri in woken {
            skipped[ri] = false;
            pass.unchanged_ambiguous.retain(|id| *id != open[ri].id);
            edges.extend(pairs[ri].iter().filter(|p| p.is_strong_edge()).map(|p| Edge {
                req: ri,
                mov: p.mov,
                reference: p.reference,
                score: p.score(),
            }));
        }
    }
    // Request and movement indexes are already in rank order for the later keys.
    edges.sort_by_key(|e| (Reverse(e.reference), Reverse(e.score), e.req, e.mov));
    let mut edges_of_req: Vec<Vec<usize>> = vec![Vec::new(); open.len()];
    let mut edges_of_mov: Vec<Vec<usize>> = vec![Vec::new(); movs.len()];
    for (ei, e) in edges.iter().enumerate() {
        edges_of_req[e.req].push(ei);
        edges_of_mov[e.mov].push(ei);
    }

    // Steps 3 and 4.
    // For each request found ambiguous, the plausible movements at that moment: {m} ∪ {m′…}.
    let mut ambiguous: Vec<Option<Vec<usize>>> = vec![None; open.len()];
    let mut req_edge: Vec<Option<usize>> = vec![None; open.len()];
    let mut mov_req: Vec<Option<usize>> = vec![None; movs.len()];
    let mut assigned: Vec<usize> = Vec::new();
    loop {
        for &ei in &assigned {
            req_edge[edges[ei].req] = None;
            mov_req[edges[ei].mov] = None;
        }
        assigned.clear();
        for (ei, e) in edges.iter().enumerate() {
            if ambiguous[e.req].is_none() && req_edge[e.req].is_none() && mov_req[e.mov].is_none() {
                req_edge[e.req] = Some(ei);
                mov_req[e.mov] = Some(e.req);
                assigned.push(ei);
            }
        }
        let first_ambiguous = assigned.iter().find_map(|&ei| {
            let chosen = edges[ei];
            let rivals: Vec<usize> = edges_of_req[chosen.req]
                .iter()
                .map(|&other| edges[other])
                .filter(|alt| {
                    alt.mov != chosen.mov
                        && mov_req[alt.mov].is_none()
                        && alt.reference == chosen.reference
                        && alt.score + AMBIGUITY_MARGIN >= chosen.score
                })
                .map(|alt| alt.mov)
                .collect();
            (!rivals.is_empty()).then(|| (chosen.req, std::iter::once(chosen.mov).chain(rivals).collect()))
        });
        match first_ambiguous {
            Some((ri, set)) => ambiguous[ri] = Some(set),
            None => break,
        }
    }

    // Step 5.
    let ends_not_found = |ri: usize| !skipped[ri] && ambiguous[ri].is_none() && req_edge[ri].is_none();
    for (ri, r) in open.iter().enumerate() {
        if skipped[ri] {
            continue;
        }
        let explain = |pair: &Pair| -> Candidate {
            let verdict = verdict(pair, ri, mov_req[pair.mov]);
            let name = match &names[ri] {
                Some(name) => prep[pair.mov]
                    .as_ref()
                    .map(|p| score_names(name, &p.name))
                    .unwrap_or_else(|| score_names(name, &NormalizedName::default())),
                None => score_names(&NormalizedName::default(), &NormalizedName::default()),
            };
            Candidate {
                movement: movs[pair.mov].id,
                checks: Checks {
                    amount: true,
                    currency: pair.currency,
                    window: pair.window,
                    name,
                    reference: pair.reference,
                },
                score: pair.score(),
                verdict,
                taken_by: mov_req[pair.mov]
                    .filter(|&other| other != ri)
                    .map(|other| open[other].id),
            }
        };
        let mut ranked: Vec<&Pair> = pairs[ri].iter().collect();
        ranked.sort_by(|a, b| {
            let key = |p: &Pair| (verdict_rank(verdict(p, ri, mov_req[p.mov])), Reverse(p.score()), p.mov);
            key(a).cmp(&key(b))
        });
        let explained = || -> Vec<Candidate> {
            ranked
                .iter()
                .take(MAX_EXPLAINED_CANDIDATES)
                .map(|p| explain(p))
                .collect()
        };

        if let Some(ei) = req_edge[ri] {
            let e = edges[ei];
            let lost_by_age = edges_of_mov[e.mov].iter().any(|&other| {
                let rival = edges[other];
                rival.req != ri && rival.reference == e.reference && rival.score == e.score && ends_not_found(rival.req)
            });
            let reason = if lost_by_age {
                Some("paired_by_age")
            } else if e.reference {
                Some("reference_match")
            } else {
                None
            };
            let chosen = pairs[ri].iter().find(|p| p.mov == e.mov).map(explain);
            if let Some(explanation) = chosen {
                pass.matched.push(Matched {
                    request: r.id,
                    movement: movs[e.mov].id,
                    score: e.score,
                    reference_match: e.reference,
                    reason,
                    explanation,
                });
            }
        } else if let Some(set) = &ambiguous[ri] {
            let mut candidate_set: Vec<Uuid> = set.iter().map(|&mi| movs[mi].id).collect();
            candidate_set.sort_unstable();
            pass.ambiguous.push(Ambiguous {
                request: r.id,
                candidate_set,
                candidates: explained(),
            });
        } else {
            let reason = pairs[ri]
                .iter()
                .map(|p| reason_of(verdict(p, ri, mov_req[p.mov])))
                .min_by_key(|&reason| reason_rank(reason))
                .unwrap_or("no_movement_with_amount");
            pass.not_found.push(NotFound {
                request: r.id,
                reason,
                candidates: explained(),
            });
        }
    }
    pass
}

fn normalize_currency(c: &str) -> String {
    c.trim().to_uppercase()
}

/// What the pass made of one pair, given who (if anyone) took its movement.
fn verdict(pair: &Pair, req: usize, taken_by: Option<usize>) -> &'static str {
    match taken_by {
        Some(r) if r == req => "chosen",
        _ if !pair.currency => "currency_mismatch",
        _ if !pair.credit => "not_a_credit",
        _ if !pair.eligible => "received_at_unparseable",
        _ if !pair.window => "outside_window",
        Some(_) => "taken",
        None if pair.taken_before => "taken",
        None if pair.rejected => "rejected",
        None if pair.is_strong_edge() => "alternative",
        None if !pair.has_sender_name => "no_sender_name",
        None if pair.name_score >= WEAK_BAND => "weak",
        None => "name_too_different",
    }
}

/// The order of explanations: the most relevant first.
fn verdict_rank(verdict: &str) -> u8 {
    match verdict {
        "chosen" => 0,
        "alternative" => 1,
        "weak" => 2,
        "no_sender_name" => 3,
        "taken" => 4,
        "rejected" => 5,
        "name_too_different" => 6,
        "outside_window" => 7,
        "received_at_unparseable" => 8,
        "not_a_credit" => 9,
        _ => 10,
    }
}

/// The not-found reason one candidate's verdict supports.
fn reason_of(verdict: &str) -> &'static str {
    match verdict {
        "weak" => "weak_name_only",
        "no_sender_name" => "no_sender_name",
        // An unassigned strong candidate cannot be left over by the greedy assignment;
        // if it ever were, "taken" is the closest honest word.
        "taken" | "alternative" | "chosen" => "candidates_taken",
        "rejected" => "candidates_rejected",
        "name_too_different" => "name_too_different",
        "outside_window" | "received_at_unparseable" | "not_a_credit" => "outside_window",
        _ => "currency_mismatch",
    }
}

/// The precedence of not-found reasons (lower wins).
fn reason_rank(reason: &str) -> u8 {
    match reason {
        "weak_name_only" => 0,
        "no_sender_name" => 1,
        "candidates_taken" => 2,
        "candidates_rejected" => 3,
        "name_too_different" => 4,
        "outside_window" => 5,
        "currency_mismatch" => 6,
        _ => 7,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::reconcile::orders::parse_signed_decimal;

    const H: i64 = 3_600_000;
    const T0: i64 = 10_000 * H;

    fn dec(s: &str) -> Decimal {
        parse_signed_decimal(s).unwrap_or_else(|| panic!("test decimal {s}"))
    }

    fn req(n: u128, external_id: &str, amount: &str, name: &str, registered_at_ms: i64) -> Req<'static> {
        Req {
            id: Uuid::from_u128(n),
            external_id: external_id.to_owned().into(),
            amount: dec(amount),
            currency: "UYU".into(),
            sender_name: name.to_owned().into(),
            reference: None,
            registered_at_ms,
            expires_at_ms: registered_at_ms + EXPIRY_MS,
            status: ReqStatus::Pending,
            last_candidates: None,
            rejected: Vec::new(),
        }
    }

    fn mov(n: u128, amount: &str, name: Option<&str>, received_at_ms: i64) -> Mov {
        Mov {
            id: Uuid::from_u128(1_000_000 + n),
            amount: dec(amount),
            currency: "UYU".to_owned(),
            name: name.map(str::to_owned),
            description: String::new(),
            received_at_ms: Some(received_at_ms),
            taken: false,
        }
    }

    fn rid(n: u128) -> Uuid {
        Uuid::from_u128(n)
    }

    fn mid(n: u128) -> Uuid {
        Uuid::from_u128(1_000_000 + n)
    }

    fn matched_pairs(pass: &Pass) -> Vec<(Uuid, Uuid, Option<&'static str>)> {
        pass.matched.iter().map(|m| (m.request, m.movement, m.reason)).collect()
    }

    fn not_found(pass: &Pass) -> Vec<(Uuid, &'static str)> {
        pass.not_found.iter().map(|n| (n.request, n.reason)).collect()
    }

    // ---- names ------------------------------------------------------------------------------

    #[test]
    fn normalization() {
        let tokens = |s: &str| normalize_name(s).tokens().to_vec();
        assert_eq!(tokens("José  María Pérez-Gómez"), ["jose", "maria", "perez", "gomez"]);
        assert_eq!(tokens("ACME S.A."), ["acme"]);
        assert_eq!(tokens("S.A."), ["sa"]);
        assert_eq!(tokens("O'Brien O’Neil D`Arcy"), ["obrien", "oneil", "darcy"]);
        assert_eq!(
            tokens("Großmann Æsir Œuvre Søren Đorđe Łódź"),
            ["grossmann", "aesir", "oeuvre", "soren", "dorde", "lodz"]
        );
        assert_eq!(
            tokens("Maria de los Angeles y Van der Berg"),
            ["maria", "angeles", "berg"]
        );
        assert_eq!(tokens("De La Cruz"), ["cruz"]);
        assert_eq!(tokens("de la"), ["de", "la"]);
        assert_eq!(tokens("ＡＣＭＥ ﬁnance №5"), ["acme", "finance", "no5"]);
        assert_eq!(tokens("  --  "), Vec::<String>::new());
        assert_eq!(tokens("Inversiones 2020, S.R.L."), ["inversiones", "2020"]);
    }

    /// Every example of the spec's table (§5.4) first, then bank-statement styles.
    #[test]
    fn name_score_table() {
        let table: &[(&str, Option<&str>, u16, Band)] = &[
            // The spec's table.
            (
                "José  María Pérez-Gómez",
                Some("JOSE MARIA PEREZ GOMEZ"),
                1000,
                Band::Strong,
            ),
            ("Juan Perez", Some("PEREZ JUAN"), 1000, Band::Strong),
            ("Juan Perez", Some("JUAN CARLOS PEREZ GOMEZ"), 875, Band::Strong),
            ("Juan Perez", Some("MARIA PEREZ"), 500, Band::Weak),
            ("Ana Lopez", Some("MARIANA LOPEZ"), 500, Band::Weak),
            ("J. Perez", Some("Juan Perez"), 750, Band::Weak),
            ("ACME S.A.", Some("ACME"), 1000, Band::Strong),
            // Truncated by the bank: prefix of ≥ 4 chars is 0.8.
            ("Juan Carlos Perez", Some("JUAN CARLOS PERE"), 933, Band::Strong),
            ("Juan Carlos Perez", Some("JUAN CARL"), 825, Band::Strong),
            // Surname first.
            (
                "Juan Carlos Perez Gomez",
                Some("PEREZ GOMEZ JUAN CARLOS"),
                1000,
                Band::Strong,
            ),
            (
                "María José García López",
                Some("GARCIA LOPEZ MARIA JOSE"),
                1000,
                Band::Strong,
            ),
            // Legal forms, with and without dots.
            ("ACME S.R.L.", Some("ACME SRL"), 1000, Band::Strong),
            ("Acme Servicios SRL", Some("ACME SERVICIOS S.R.L."), 1000, Band::Strong),
            ("Transportes del Sur Ltda", Some("TRANSPORTES SUR"), 1000, Band::Strong),
            ("Inversiones 2020 SA", Some("INVERSIONES 2020 S.A."), 1000, Band::Strong),
            // Not in the noise list: a one-token name against two, capped.
            ("Dupont SARL", Some("DUPONT"), 790, Band::Weak),
            // Initials.
            ("Juan Carlos Perez", Some("J C PEREZ"), 667, Band::Weak),
            ("Juan Perez", Some("PEREZ J"), 750, Band::Weak),
            // Particles.
            (
                "Maria de los Angeles Gonzalez",
                Some("MARIA ANGELES GONZALEZ"),
                1000,
                Band::Strong,
            ),
            // Hyphens and joined surnames (concatenation beats the one-token cap).
            ("Pérez-Gómez", Some("PEREZGOMEZ"), 1000, Band::Strong),
            ("Bob Smith-Jones", Some("BOB SMITHJONES"), 1000, Band::Strong),
            ("Anne-Marie Dubois", Some("ANNE MARIE DUBOIS"), 1000, Band::Strong),
            // Apostrophes, ß, Nordic and Polish letters, umlauts.
            ("Sean O'Brien", Some("SEAN OBRIEN"), 1000, Band::Strong),
            ("Peter Großmann", Some("PETER GROSSMANN"), 1000, Band::Strong),
            ("Søren Kierkegaard", Some("SOREN KIERKEGAARD"), 1000, Band::Strong),
            ("Łukasz Wałęsa", Some("LUKASZ WALESA"), 1000, Band::Strong),
            ("Jürgen Müller", Some("JURGEN MULLER"), 1000, Band::Strong),
            ("Jürgen Müller", Some("JUERGEN MUELLER"), 900, Band::Strong),
            // Typos: one edit (≥ 5 chars), two edits (≥ 9 chars), short tokens get none.
            ("Jose Perez", Some("JOSE PERES"), 950, Band::Strong),
            ("Alejandro Fernandez", Some("ALEJANDRO FERNANDES"), 950, Band::Strong),
            (
                "Maximiliano Rodriguez",
                Some("MAXIMILIAON RODRIGUEZ"),
                950,
                Band::Strong,
            ),
            ("Christopher Johnson", Some("KRISTOPHER JOHNSON"), 950, Band::Strong),
            ("Rodriguez", Some("RODRIGUES"), 900, Band::Strong),
            ("Juan Perez", Some("JAUN PEREZ"), 500, Band::Weak),
            // All caps and lowercase alike.
            ("JUAN PEREZ", Some("juan perez"), 1000, Band::Strong),
            // Extra middle names and words.
            ("Juan Perez", Some("Juan Perez Gonzalez Maria Jose"), 850, Band::Strong),
            (
                "Francisco Javier",
                Some("FRANCISCO JAVIER HERNANDEZ RODRIGUEZ"),
                875,
                Band::Strong,
            ),
            ("Juan Perez", Some("JUAN PEREZ 123456"), 917, Band::Strong),
            ("Juan Perez", Some("MARIA PEREZ GOMEZ"), 458, Band::None),
            // A surname alone is not enough.
            ("Perez", Some("JUAN PEREZ"), 790, Band::Weak),
            ("Ana Lopez", Some("ANA"), 790, Band::Weak),
            // Company against person, nothing in common.
            ("ACME Corp", Some("JUAN PEREZ"), 0, Band::None),
            ("ACME SA", Some("SA"), 0, Band::None),
            // More statement styles: APELLIDO(S) NOMBRE(S), with a comma, truncated, with the
            // bank's own words, one surname of two, initials, legal forms with accents and dots.
            (
                "Gabriel García Márquez",
                Some("GARCIA MARQUEZ GABRIEL"),
                1000,
                Band::Strong,
            ),
            ("Juan Perez", Some("PEREZ, JUAN"), 1000, Band::Strong),
            (
                "María Fernanda Rodríguez Pérez",
                Some("RODRIGUEZ PEREZ MARIA F"),
                875,
                Band::Strong,
            ),
            ("Juan Carlos Rodriguez", Some("RODRIGUEZ JUAN CARL"), 933, Band::Strong),
            ("Fernando Gonzalez", Some("FERNANDO GON"), 500, Band::Weak),
            ("Juan Perez", Some("TRF DE JUAN PEREZ"), 917, Band::Strong),
            ("Ana María López García", Some("ANA LOPEZ"), 875, Band::Strong),
            ("M. Rodriguez", Some("MARIA RODRIGUEZ"), 750, Band::Weak),
            (
                "Distribuidora del Este S.A.S.",
                Some("DISTRIBUIDORA ESTE SAS"),
                1000,
                Band::Strong,
            ),
            (
                "Comercial Andina Cía. Ltda.",
                Some("COMERCIAL ANDINA CIA LTDA"),
                1000,
                Band::Strong,
            ),
            ("Müller GmbH", Some("MUELLER GMBH"), 900, Band::Strong),
            // No sender name.
            ("Juan Perez", None, 0, Band::None),
            ("Juan Perez", Some(""), 0, Band::None),
            ("Juan Perez", Some(" ... "), 0, Band::None),
        ];
        for &(order, movement, score, band) in table {
            let s = name_score(order, movement);
            assert_eq!((s.score, s.band), (score, band), "{order:?} vs {movement:?}: {s:?}");
            // Symmetric in the two names.
            if let Some(movement) = movement {
                assert_eq!(
                    name_score(movement, Some(order)).score,
                    score,
                    "{movement:?} vs {order:?}"
                );
            }
        }
    }

    #[test]
    fn pairs_are_recorded_best_first() {
        let s = name_score("J. Perez", Some("Juan Perez"));
        assert_eq!(
            s.pairs,
            [
                ("perez".to_owned(), "perez".to_owned(), 1000),
                ("j".to_owned(), "juan".to_owned(), 500)
            ]
        );
        // Greedy one-to-one: the second `juan` finds no partner.
        let s = name_score("Juan Juan", Some("JUAN"));
        assert_eq!(s.pairs, [("juan".to_owned(), "juan".to_owned(), 1000)]);
        assert_eq!(s.score, 790);
    }

    #[test]
    fn token_scores() {
        let t = |a: &str, b: &str| token_score(&a.chars().collect::<Vec<_>>(), &b.chars().collect::<Vec<_>>());
        assert_eq!(t("perez", "perez"), 1000);
        assert_eq!(t("perez", "peres"), 900);
        assert_eq!(t("perez", "eprez"), 900);
        assert_eq!(t("pere", "pera"), 0);
        assert_eq!(t("perez", "perezz"), 900);
        assert_eq!(t("fernandez", "frenandes"), 900);
        assert_eq!(t("fernande", "frenandes"), 0);
        assert_eq!(t("fernandez", "fernandezzz"), 900);
        assert_eq!(t("fernandez", "fernandezzzz"), 800);
        assert_eq!(t("pere", "perez"), 800);
        assert_eq!(t("per", "perez"), 0);
        assert_eq!(t("j", "juan"), 500);
        assert_eq!(t("juan", "j"), 500);
        assert_eq!(t("j", "p"), 0);
        assert_eq!(t("j", "j"), 1000);
        let d = |a: &str, b: &str| osa_distance(&a.chars().collect::<Vec<_>>(), &b.chars().collect::<Vec<_>>());
        assert_eq!(d("", "abc"), 3);
        assert_eq!(d("ca", "abc"), 3);
        assert_eq!(d("jaun", "juan"), 1);
        assert_eq!(d("kitten", "sitting"), 3);
    }

    #[test]
    fn references() {
        assert!(reference_matches(
            "INV-2024-0042",
            "Transferencia inv 2024/0042 pago",
            None
        ));
        assert!(reference_matches(
            "inv20240042",
            "TRF INV-2024-0042",
            Some("JUAN PEREZ")
        ));
        assert!(reference_matches("A123", "PAGO A123", None));
        assert!(reference_matches("a123", "pago/a123.", None));
        assert!(reference_matches("AB123", "REF:AB123.", None));
        assert!(reference_matches("A123", "TRANSFER", Some("JUAN A123")));
        assert!(!reference_matches("A123", "PAGO XA123", None));
        assert!(!reference_matches("A12", "PAGO A12", None));
        assert!(
            reference_matches("ORD-9999", "PAGO ORD 9999", None),
            "7 compacted chars: anywhere"
        );
        // 4–5 compacted chars must be one whole token: a code split by the bank is not found.
        assert!(!reference_matches("AB-12", "PAGO AB 12", None));
        assert!(!reference_matches("123456", "PAGO 12345", None));
        assert!(reference_matches("123456", "PAGO X1234567", None));
        // Never across the description and the name.
        assert!(!reference_matches("ABCDEF", "PAGO ABC", Some("DEF")));
        assert!(!reference_matches("----", "----", None));
    }

    // ---- the pass -----------------------------------------------------------------------------

    #[test]
    fn one_order_two_identical_transfers_is_ambiguous() {
        let reqs = [req(1, "A", "1500", "Juan Perez", T0)];
        let movs = [
            mov(1, "1500.00", Some("JUAN PEREZ"), T0 + H),
            mov(2, "1500", Some("JUAN PEREZ"), T0 + 2 * H),
        ];
        let pass = run_pass(T0 + 3 * H, &reqs, &movs);
        assert!(pass.matched.is_empty());
        assert_eq!(pass.ambiguous.len(), 1);
        let a = &pass.ambiguous[0];
        assert_eq!(a.request, rid(1));
        assert_eq!(a.candidate_set, [mid(1), mid(2)]);
        let verdicts: Vec<_> = a.candidates.iter().map(|c| (c.movement, c.verdict)).collect();
        assert_eq!(verdicts, [(mid(1), "alternative"), (mid(2), "alternative")]);
    }

    #[test]
    fn a_movement_matched_before_explains_but_is_never_assigned_again() {
        let reqs = [req(1, "A", "1500", "Juan Perez", T0)];
        let mut taken = mov(1, "1500", Some("JUAN PEREZ"), T0 + H);
        taken.taken = true;
        let pass = run_pass(T0 + 2 * H, &reqs, std::slice::from_ref(&taken));
        assert!(matched_pairs(&pass).is_empty());
        assert_eq!(not_found(&pass), [(rid(1), "candidates_taken")]);
        let c = &pass.not_found[0].candidates[0];
        assert_eq!((c.movement, c.verdict, c.taken_by), (mid(1), "taken", None));
        // Beside a free one, only the free one counts: matched, not ambiguous.
        let free = mov(2, "1500", Some("JUAN PEREZ"), T0 + H);
        let pass = run_pass(T0 + 2 * H, &reqs, &[taken.clone(), free]);
        assert_eq!(matched_pairs(&pass), [(rid(1), mid(2), None)]);
        assert!(pass.ambiguous.is_empty());
        // Out of the window, it is that, not taken.
        let mut old = mov(3, "1500", Some("JUAN PEREZ"), T0 - 200 * H);
        old.taken = true;
        let pass = run_pass(T0 + 2 * H, &reqs, &[old]);
        assert_eq!(not_found(&pass), [(rid(1), "outside_window")]);
    }

    #[test]
    fn two_identical_orders_one_transfer_pairs_by_age() {
        let reqs = [
            req(2, "B", "1500", "Juan Perez", T0 + H),
            req(1, "A", "1500", "Juan Perez", T0),
        ];
        let movs = [mov(1, "1500", Some("JUAN PEREZ"), T0 + 2 * H)];
        let pass = run_pass(T0 + 3 * H, &reqs, &movs);
        assert_eq!(matched_pairs(&pass), [(rid(1), mid(1), Some("paired_by_age"))]);
        assert_eq!(not_found(&pass), [(rid(2), "candidates_taken")]);
        let c = &pass.not_found[0].candidates[0];
        assert_eq!((c.verdict, c.taken_by), ("taken", Some(rid(1))));
        assert!(pass.ambiguous.is_empty());

        // Same registration instant: the external id decides.
        let reqs = [
            req(1, "B", "1500", "Juan Perez", T0),
            req(2, "A", "1500", "Juan Perez", T0),
        ];
        let pass = run_pass(T0 + 3 * H, &reqs, &movs);
        assert_eq!(matched_pairs(&pass), [(rid(2), mid(1), Some("paired_by_age"))]);
    }

    #[test]
    fn two_identical_orders_two_transfers_both_match() {
        let reqs = [
            req(1, "A", "1500", "Juan Perez", T0),
            req(2, "B", "1500", "Juan Perez", T0 + H),
        ];
        let movs = [
            mov(2, "1500", Some("JUAN PEREZ"), T0 + 3 * H),
            mov(1, "1500", Some("JUAN PEREZ"), T0 + 2 * H),
        ];
        let pass = run_pass(T0 + 4 * H, &reqs, &movs);
        assert_eq!(matched_pairs(&pass), [(rid(1), mid(1), None), (rid(2), mid(2), None)]);
        assert!(pass.ambiguous.is_empty() && pass.not_found.is_empty());

        // Three orders, two transfers: the two oldest, both by age; the third waits.
        let mut reqs = reqs.to_vec();
        reqs.push(req(3, "C", "1500", "Juan Perez", T0 + 2 * H));
        let pass = run_pass(T0 + 4 * H, &reqs, &movs);
        assert_eq!(
            matched_pairs(&pass),
            [
                (rid(1), mid(1), Some("paired_by_age")),
                (rid(2), mid(2), Some("paired_by_age"))
            ]
        );
        assert_eq!(not_found(&pass), [(rid(3), "candidates_taken")]);
    }

    #[test]
    fn a_different_first_name_never_settles() {
        let reqs = [req(1, "A", "1500", "Maria Perez", T0)];
        let movs = [mov(1, "1500", Some("JUAN PEREZ"), T0 + H)];
        let pass = run_pass(T0 + 2 * H, &reqs, &movs);
        assert!(pass.matched.is_empty());
        assert_eq!(not_found(&pass), [(rid(1), "weak_name_only")]);
        assert_eq!(pass.not_found[0].candidates[0].verdict, "weak");
        assert_eq!(pass.not_found[0].candidates[0].checks.name.score, 500);
    }

    #[test]
    fn missing_sender_name_never_settles() {
        let reqs = [req(1, "A", "1500", "Juan Perez", T0)];
        for name in [None, Some(""), Some("  ")] {
            let movs = [mov(1, "1500", name, T0 + H)];
            let pass = run_pass(T0 + 2 * H, &reqs, &movs);
            assert_eq!(not_found(&pass), [(rid(1), "no_sender_name")], "{name:?}");
            assert_eq!(pass.not_found[0].candidates[0].verdict, "no_sender_name");
        }
    }

    #[test]
    fn the_better_name_wins_across_orders() {
        // The older order scores 0.875, the newer one 1.0: the newer one gets it.
        let reqs = [
            req(1, "A", "1500", "Juan Perez", T0),
            req(2, "B", "1500", "Juan Carlos Perez Gomez", T0 + H),
        ];
        let movs = [mov(1, "1500", Some("JUAN CARLOS PEREZ GOMEZ"), T0 + 2 * H)];
        let pass = run_pass(T0 + 3 * H, &reqs, &movs);
        assert_eq!(matched_pairs(&pass), [(rid(2), mid(1), None)]);
        assert_eq!(pass.matched[0].score, 1000);
        assert_eq!(not_found(&pass), [(rid(1), "candidates_taken")]);
    }

    #[test]
    fn a_reference_match_beats_the_name() {
        let mut with_ref = req(2, "B", "1500", "Juan Perez", T0 + H);
        with_ref.reference = Some("INV-000123".into());
        let reqs = [req(1, "A", "1500", "Juan Perez", T0), with_ref.clone()];
        let mut m = mov(1, "1500", Some("JUAN PEREZ"), T0 + 2 * H);
        m.description = "TRANSFERENCIA PAGO INV000123".to_owned();
        let pass = run_pass(T0 + 3 * H, &reqs, &[m.clone()]);
        assert_eq!(matched_pairs(&pass), [(rid(2), mid(1), Some("reference_match"))]);
        assert!(pass.matched[0].reference_match && pass.matched[0].explanation.checks.reference);
        assert_eq!(not_found(&pass), [(rid(1), "candidates_taken")]);

        // One order with a reference, two transfers from the same name, one carrying it: the
        // reference decides, no ambiguity (different reference flags).
        let other = mov(2, "1500", Some("JUAN PEREZ"), T0 + H);
        let pass = run_pass(T0 + 3 * H, &[with_ref.clone()], &[other.clone(), m.clone()]);
        assert_eq!(matched_pairs(&pass), [(rid(2), mid(1), Some("reference_match"))]);

        // A reference match is strong whatever the name says.
        let mut stranger = m.clone();
        stranger.name = Some("EMPRESA XYZ".to_owned());
        let pass = run_pass(T0 + 3 * H, &[with_ref.clone()], &[stranger]);
        assert_eq!(matched_pairs(&pass), [(rid(2), mid(1), Some("reference_match"))]);
        assert_eq!(pass.matched[0].explanation.checks.name.band, Band::None);

        // A reference that is not found does not disqualify a strong name.
        let pass = run_pass(T0 + 3 * H, &[with_ref], &[other]);
        assert_eq!(matched_pairs(&pass), [(rid(2), mid(2), None)]);
    }

    #[test]
    fn ambiguity_margin_is_inclusive() {
        let reqs = [req(1, "A", "10", "Jurgen Muller", T0)];
        // 1000 and 900: within the margin.
        let movs = [
            mov(1, "10", Some("JURGEN MULLER"), T0 + H),
            mov(2, "10", Some("JUERGEN MUELLER"), T0 + H),
        ];
        let pass = run_pass(T0 + 2 * H, &reqs, &movs);
        assert_eq!(pass.ambiguous.len(), 1);
        // 1000 and 875: the better one wins.
        let reqs = [req(1, "A", "10", "Juan Perez", T0)];
        let movs = [
            mov(1, "10", Some("JUAN PEREZ"), T0 + H),
            mov(2, "10", Some("JUAN CARLOS PEREZ GOMEZ"), T0),
        ];
        let pass = run_pass(T0 + 2 * H, &reqs, &movs);
        assert_eq!(matched_pairs(&pass), [(rid(1), mid(1), None)]);
        assert_eq!(pass.matched[0].explanation.verdict, "chosen");
    }

    #[test]
    fn an_ambiguous_request_releases_its_movement_to_others() {
        // r1 (older) fits m1 and m2 equally; r2 only m1 (m2 was ruled out for it). r1 leaves as
        // ambiguous, r2 takes m1; r1 keeps {m1, m2} as its recorded set, so the next pass, where
        // m1 is gone, sees a changed set and matches the one left.
        let mut r2 = req(2, "B", "10", "Juan Perez", T0 + H);
        r2.rejected = vec![mid(2)];
        let reqs = [req(1, "A", "10", "Juan Perez", T0), r2];
        let movs = [
            mov(1, "10", Some("JUAN PEREZ"), T0 + H),
            mov(2, "10", Some("JUAN PEREZ"), T0 + 2 * H),
        ];
        let pass = run_pass(T0 + 3 * H, &reqs, &movs);
        assert_eq!(matched_pairs(&pass), [(rid(2), mid(1), None)]);
        assert_eq!(pass.ambiguous.len(), 1);
        let a = &pass.ambiguous[0];
        assert_eq!(a.candidate_set, [mid(1), mid(2)]);
        let verdicts: Vec<_> = a
            .candidates
            .iter()
            .map(|c| (c.movement, c.verdict, c.taken_by))
            .collect();
        assert_eq!(
            verdicts,
            [(mid(2), "alternative", None), (mid(1), "taken", Some(rid(2)))]
        );

        let mut r1 = reqs[0].clone();
        r1.status = ReqStatus::Ambiguous;
        r1.last_candidates = Some(a.candidate_set.clone());
        let pass = run_pass(T0 + 4 * H, &[r1], &movs[1..]);
        assert_eq!(matched_pairs(&pass), [(rid(1), mid(2), None)]);
    }

    #[test]
    fn unchanged_ambiguous_is_skipped_and_one_candidate_left_matches() {
        let reqs = [req(1, "A", "1500", "Juan Perez", T0)];
        let movs = [
            mov(1, "1500", Some("JUAN PEREZ"), T0 + H),
            mov(2, "1500", Some("JUAN PEREZ"), T0 + 2 * H),
        ];
        let first = run_pass(T0 + 3 * H, &reqs, &movs);
        let mut r = reqs[0].clone();
        r.status = ReqStatus::Ambiguous;
        r.last_candidates = Some(first.ambiguous[0].candidate_set.clone());

        // Nothing changed: skipped.
        let pass = run_pass(T0 + 4 * H, &[r.clone()], &movs);
        assert_eq!(pass.unchanged_ambiguous, [rid(1)]);
        assert!(pass.matched.is_empty() && pass.ambiguous.is_empty() && pass.not_found.is_empty());

        // A new transfer adds a candidate: re-evaluated, still ambiguous, with three.
        let mut three = movs.to_vec();
        three.push(mov(3, "1500", Some("JUAN PEREZ"), T0 + 3 * H));
        let pass = run_pass(T0 + 4 * H, &[r.clone()], &three);
        assert_eq!(pass.ambiguous[0].candidate_set, [mid(1), mid(2), mid(3)]);

        // One candidate was taken (a manual resolve elsewhere): the one left matches.
        let pass = run_pass(T0 + 4 * H, &[r.clone()], &movs[1..]);
        assert_eq!(matched_pairs(&pass), [(rid(1), mid(2), None)]);

        // An ambiguous request without a recorded set is evaluated.
        r.last_candidates = None;
        let pass = run_pass(T0 + 4 * H, &[r], &movs);
        assert_eq!(pass.ambiguous.len(), 1);
    }

    #[test]
    fn a_skipped_ambiguous_request_competes_again_when_its_candidates_are_contested() {
        // One order, two identical transfers: ambiguous. Then an identical order arrives.
        let r1 = req(1, "A", "1500", "Juan Perez", T0);
        let movs = [
            mov(1, "1500", Some("JUAN PEREZ"), T0 + H),
            mov(2, "1500", Some("JUAN PEREZ"), T0 + 2 * H),
        ];
        let first = run_pass(T0 + 3 * H, std::slice::from_ref(&r1), &movs);
        let mut r1 = r1;
        r1.status = ReqStatus::Ambiguous;
        r1.last_candidates = Some(first.ambiguous[0].candidate_set.clone());
        let r2 = req(2, "B", "1500", "Juan Perez", T0 + 3 * H);
        let late = run_pass(T0 + 4 * H, &[r1.clone(), r2.clone()], &movs);
        // As if both orders had arrived together: both match, the older order first.
        let mut together = r1.clone();
        together.status = ReqStatus::Pending;
        together.last_candidates = None;
        let fresh = run_pass(T0 + 4 * H, &[together, r2.clone()], &movs);
        assert_eq!(matched_pairs(&late), [(rid(1), mid(1), None), (rid(2), mid(2), None)]);
        assert_eq!(matched_pairs(&late), matched_pairs(&fresh));
        assert!(late.unchanged_ambiguous.is_empty());

        // A request that competes for none of its candidates leaves it skipped.
        let other = req(3, "C", "99", "Ana Lopez", T0 + 3 * H);
        let pass = run_pass(T0 + 4 * H, &[r1.clone(), other], &movs);
        assert_eq!(pass.unchanged_ambiguous, [rid(1)]);

        // A rival that takes one candidate: the ambiguous request is evaluated in the same pass
        // (r2 reaches only m1; r1 is ambiguous between m1 and a close m2, and r2 takes m1).
        let movs = [
            mov(1, "1500", Some("JUAN PEREZ"), T0 + H),
            mov(2, "1500", Some("JUAN PEREZ ROCHA"), T0 + 2 * H),
        ];
        let first = run_pass(T0 + 3 * H, &[req(1, "A", "1500", "Juan Perez", T0)], &movs);
        assert_eq!(first.ambiguous[0].candidate_set, [mid(1), mid(2)]);
        r1.last_candidates = Some(first.ambiguous[0].candidate_set.clone());
        let rival = req(2, "B", "1500", "Juan Perez Gomez", T0 + 3 * H);
        let pass = run_pass(T0 + 4 * H, &[r1, rival], &movs);
        assert!(pass.unchanged_ambiguous.is_empty());
        assert_eq!(matched_pairs(&pass), [(rid(2), mid(1), None)]);
        // r1 is left ambiguous on a set whose m1 was just taken: the follow-up pass (the
        // worker's `recheck`) matches it with m2.
        assert_eq!(pass.ambiguous[0].request, rid(1));
        assert!(pass.ambiguous[0].candidate_set.contains(&mid(1)));
    }

    #[test]
    fn rejected_pairs_are_never_proposed() {
        let mut r = req(1, "A", "1500", "Juan Perez", T0);
        r.rejected = vec![mid(1)];
        let movs = [mov(1, "1500", Some("JUAN PEREZ"), T0 + H)];
        let pass = run_pass(T0 + 2 * H, &[r.clone()], &movs);
        assert_eq!(not_found(&pass), [(rid(1), "candidates_rejected")]);
        assert_eq!(pass.not_found[0].candidates[0].verdict, "rejected");

        // Two identical transfers, one ruled out: the other matches, no ambiguity.
        let movs = [
            mov(1, "1500", Some("JUAN PEREZ"), T0 + H),
            mov(2, "1500", Some("JUAN PEREZ"), T0 + H),
        ];
        let pass = run_pass(T0 + 2 * H, &[r], &movs);
        assert_eq!(matched_pairs(&pass), [(rid(1), mid(2), None)]);
    }

    #[test]
    fn expiry_comes_first_for_every_open_status() {
        let mut reqs = Vec::new();
        for (n, status) in [
            (1, ReqStatus::Pending),
            (2, ReqStatus::NotFound),
            (3, ReqStatus::Ambiguous),
            (4, ReqStatus::Failed),
        ] {
            let mut r = req(n, &format!("E{n}"), "1500", "Juan Perez", T0);
            r.status = status;
            r.last_candidates = Some(vec![mid(1)]);
            reqs.push(r);
        }
        reqs.push(req(5, "LATER", "1500", "Juan Perez", T0 + H));
        let movs = [mov(1, "1500", Some("JUAN PEREZ"), T0 + H)];
        let expires = T0 + EXPIRY_MS;
        let pass = run_pass(expires, &reqs, &movs);
        assert_eq!(pass.expired, [rid(1), rid(2), rid(3), rid(4)]);
        // The expired ones take no part: the newer request gets the transfer, not by age.
        assert_eq!(matched_pairs(&pass), [(rid(5), mid(1), None)]);

        // One millisecond earlier nothing expires.
        let pass = run_pass(expires - 1, &reqs, &movs);
        assert!(pass.expired.is_empty());
        // The ambiguous E3 competes (the others want its one candidate); E1 wins it by age.
        assert!(pass.unchanged_ambiguous.is_empty());
        assert_eq!(pass.matched[0].request, rid(1));
    }

    #[test]
    fn window_edges() {
        let r = req(1, "A", "1500", "Juan Perez", T0);
        let outcome = |received: i64| {
            let pass = run_pass(
                T0 + H,
                std::slice::from_ref(&r),
                &[mov(1, "1500", Some("JUAN PEREZ"), received)],
            );
            match (pass.matched.first(), pass.not_found.first()) {
                (Some(_), None) => "matched",
                (None, Some(n)) => n.reason,
                _ => "unexpected",
            }
        };
        assert_eq!(outcome(T0 - WINDOW_BEFORE_REGISTRATION_MS), "matched");
        assert_eq!(outcome(T0 - WINDOW_BEFORE_REGISTRATION_MS - 1), "outside_window");
        assert_eq!(outcome(T0 + EXPIRY_MS), "matched");
        assert_eq!(outcome(T0 + EXPIRY_MS + 1), "outside_window");

        // An unparseable date is never eligible.
        let mut m = mov(1, "1500", Some("JUAN PEREZ"), T0);
        m.received_at_ms = None;
        let pass = run_pass(T0 + H, &[r], &[m]);
        assert_eq!(not_found(&pass), [(rid(1), "outside_window")]);
        assert_eq!(pass.not_found[0].candidates[0].verdict, "received_at_unparseable");
    }

    #[test]
    fn amounts_and_currencies_are_exact() {
        let outcome = |order_amount: &str, currency: &str, amount: &str, mov_currency: &str| {
            let mut r = req(1, "A", order_amount, "Juan Perez", T0);
            r.currency = currency.to_owned().into();
            let mut m = mov(1, amount, Some("JUAN PEREZ"), T0);
            m.currency = mov_currency.to_owned();
            let pass = run_pass(T0 + H, &[r], &[m]);
            match (pass.matched.first(), pass.not_found.first()) {
                (Some(_), None) => "matched",
                (None, Some(n)) => n.reason,
                _ => "unexpected",
            }
        };
        assert_eq!(outcome("1500", "UYU", "1500.00", "UYU"), "matched");
        assert_eq!(outcome("1500.10", "UYU", "1500.1", "UYU"), "matched");
        assert_eq!(outcome("1500.005", "UYU", "1500.01", "UYU"), "no_movement_with_amount");
        assert_eq!(outcome("1500", "UYU", "1500.0001", "UYU"), "no_movement_with_amount");
        assert_eq!(outcome("1500", "UYU", "-1500", "UYU"), "no_movement_with_amount");
        assert_eq!(outcome("1500", "uyu", "1500", " UYU "), "matched");
        assert_eq!(outcome("1500", "UYU", "1500", "USD"), "currency_mismatch");
    }

    #[test]
    fn not_found_reasons_and_precedence() {
        let r = req(1, "A", "1500", "Juan Perez", T0);
        let reason = |movs: &[Mov]| run_pass(T0 + H, std::slice::from_ref(&r), movs).not_found[0].reason;
        assert_eq!(reason(&[]), "no_movement_with_amount");
        assert_eq!(reason(&[mov(1, "1500", Some("ACME SA"), T0)]), "name_too_different");
        let far = mov(2, "1500", Some("JUAN PEREZ"), T0 - 200 * H);
        assert_eq!(reason(std::slice::from_ref(&far)), "outside_window");
        // The furthest check reached wins: in window with a bad name beats out of window.
        assert_eq!(
            reason(&[far, mov(1, "1500", Some("ACME SA"), T0)]),
            "name_too_different"
        );
        // What a human can act on first.
        assert_eq!(
            reason(&[
                mov(1, "1500", Some("ACME SA"), T0),
                mov(3, "1500", Some("MARIA PEREZ"), T0)
            ]),
            "weak_name_only"
        );
        assert_eq!(
            reason(&[mov(1, "1500", Some("ACME SA"), T0), mov(3, "1500", None, T0)]),
            "no_sender_name"
        );
    }

    #[test]
    fn explanations_are_capped() {
        let reqs = [req(1, "A", "1500", "Juan Perez", T0)];
        let movs: Vec<Mov> = (0..25)
            .map(|n| mov(n, "1500", Some(&format!("PERSONA {n}")), T0))
            .collect();
        let pass = run_pass(T0 + H, &reqs, &movs);
        assert_eq!(pass.not_found[0].candidates.len(), MAX_EXPLAINED_CANDIDATES);
    }

    #[test]
    fn candidates_serialize_for_the_attempt_log() {
        let reqs = [req(1, "A", "1500", "J. Perez", T0)];
        let movs = [mov(1, "1500", Some("Juan Perez"), T0)];
        let pass = run_pass(T0 + H, &reqs, &movs);
        let json = serde_json::to_value(&pass.not_found[0].candidates[0]).map_err(|e| e.to_string());
        assert_eq!(
            json,
            Ok(serde_json::json!({
                "movement": mid(1),
                "checks": {"amount": true, "currency": true, "window": true, "reference": false,
                           "name": {"score": 750, "band": "weak",
                                    "pairs": [["perez", "perez", 1000], ["j", "juan", 500]]}},
                "score": 750,
                "verdict": "weak",
            }))
        );
    }

    /// A small deterministic generator, so the test needs no seed plumbing.
    struct Lcg(u64);
    impl Lcg {
        fn next(&mut self, bound: usize) -> usize {
            self.0 = self
                .0
                .wrapping_mul(6_364_136_223_846_793_005)
                .wrapping_add(1_442_695_040_888_963_407);
            ((self.0 >> 33) as usize) % bound
        }
        fn shuffle<T>(&mut self, v: &mut [T]) {
            for i in (1..v.len()).rev() {
                v.swap(i, self.next(i + 1));
            }
        }
    }

    fn messy_state(rng: &mut Lcg) -> (Vec<Req<'static>>, Vec<Mov>) {
        const NAMES: &[&str] = &["Juan Perez", "Maria Perez", "Juan Carlos Perez", "Ana Lopez", "ACME SA"];
        const AMOUNTS: &[&str] = &["10", "20.5", "99.99", "1500"];
        let reqs: Vec<Req<'static>> = (0..200)
            .map(|n| {
                let mut r = req(
                    n as u128 + 1,
                    &format!("O{}", rng.next(50)),
                    AMOUNTS[rng.next(AMOUNTS.len())],
                    NAMES[rng.next(NAMES.len())],
                    T0 + (rng.next(10) as i64) * H,
                );
                if rng.next(5) == 0 {
                    r.rejected.push(mid(rng.next(150) as u128));
                }
                if rng.next(7) == 0 {
                    r.reference = Some(format!("REF{:04}", rng.next(30)).into());
                }
                r
            })
            .collect();
        let movs: Vec<Mov> = (0..150)
            .map(|n| {
                let mut m = mov(
                    n as u128,
                    AMOUNTS[rng.next(AMOUNTS.len())],
                    (rng.next(10) > 0)
                        .then(|| NAMES[rng.next(NAMES.len())].to_uppercase())
                        .as_deref(),
                    T0 + (rng.next(20) as i64) * H,
                );
                m.description = format!("TRF REF{:04}", rng.next(30));
                m
            })
            .collect();
        (reqs, movs)
    }

    #[test]
    fn the_same_state_in_any_order_gives_the_same_pass() {
        let mut rng = Lcg(7);
        let (mut reqs, mut movs) = messy_state(&mut rng);
        let expected = run_pass(T0 + 30 * H, &reqs, &movs);
        assert!(!expected.matched.is_empty() && !expected.ambiguous.is_empty() && !expected.not_found.is_empty());
        for _ in 0..5 {
            rng.shuffle(&mut reqs);
            rng.shuffle(&mut movs);
            assert_eq!(run_pass(T0 + 30 * H, &reqs, &movs), expected);
        }
    }

    /// Applies a pass as the caller would: matched pairs leave, ambiguous requests record their
    /// candidate set, the rest are not found.
    fn apply(pass: &Pass, reqs: Vec<Req<'static>>, movs: Vec<Mov>) -> (Vec<Req<'static>>, Vec<Mov>) {
        let matched_reqs: Vec<Uuid> = pass.matched.iter().map(|m| m.request).collect();
        let matched_movs: Vec<Uuid> = pass.matched.iter().map(|m| m.movement).collect();
        let reqs = reqs
            .into_iter()
            .filter(|r| !matched_reqs.contains(&r.id) && !pass.expired.contains(&r.id))
            .map(|mut r| {
                if let Some(a) = pass.ambiguous.iter().find(|a| a.request == r.id) {
                    r.status = ReqStatus::Ambiguous;
                    r.last_candidates = Some(a.candidate_set.clone());
                } else if pass.not_found.iter().any(|n| n.request == r.id) {
                    r.status = ReqStatus::NotFound;
                }
                r
            })
            .collect();
        let movs = movs.into_iter().filter(|m| !matched_movs.contains(&m.id)).collect();
        (reqs, movs)
    }

    #[test]
    fn passes_over_unchanged_state_settle_and_then_change_nothing() {
        let mut rng = Lcg(11);
        let (mut reqs, mut movs) = messy_state(&mut rng);
        let now = T0 + 30 * H;
        // A pass may leave an ambiguous request with one candidate (its rival went to another
        // request); the next pass matches it. Within a few passes nothing is left to match.
        let mut passes = 0;
        let stable = loop {
            let pass = run_pass(now, &reqs, &movs);
            passes += 1;
            (reqs, movs) = apply(&pass, reqs, movs);
            if pass.matched.is_empty() {
                break pass;
            }
            assert!(passes < 4, "no fixpoint after {passes} passes");
        };
        let again = run_pass(now, &reqs, &movs);
        assert!(again.matched.is_empty());
        let ids = |p: &Pass| {
            let mut ambiguous: Vec<Uuid> = p.ambiguous.iter().map(|a| a.request).collect();
            ambiguous.extend(&p.unchanged_ambiguous);
            ambiguous.sort_unstable();
            let not_found: Vec<Uuid> = p.not_found.iter().map(|n| n.request).collect();
            (ambiguous, not_found)
        };
        assert_eq!(ids(&again), ids(&stable));
        assert!(!ids(&again).0.is_empty());
    }

    /// 50,000 open requests × 10,000 eligible movements, 5,000 of which settle one request each.
    /// Run in release to measure:
    /// `cargo test --release -p reconbanker --lib reconcile::matching::tests::large -- --ignored --nocapture`
    #[test]
    #[ignore = "a measurement; run in release"]
    fn large_pass() {
        const FIRST: &[&str] = &[
            "Juan", "Maria", "Jose", "Ana", "Carlos", "Lucia", "Pedro", "Sofia", "Diego", "Elena",
        ];
        const LAST: &[&str] = &[
            "Perez",
            "Gomez",
            "Rodriguez",
            "Fernandez",
            "Lopez",
            "Martinez",
            "Sanchez",
            "Diaz",
        ];
        let reqs: Vec<Req<'static>> = (0..50_000u32)
            .map(|i| {
                let name = format!(
                    "{} {} {}",
                    FIRST[i as usize % FIRST.len()],
                    LAST[(i as usize / 10) % LAST.len()],
                    LAST[(i as usize / 80) % LAST.len()]
                );
                let mut r = req(
                    u128::from(i) + 1,
                    &format!("ORDER-{i}"),
                    "1",
                    &name,
                    T0 - i64::from(i % 100) * H,
                );
                r.amount = Decimal::new(100_000 + i64::from(i) * 13, 2);
                r
            })
            .collect();
        let mut movs: Vec<Mov> = (0..5_000usize)
            .map(|j| {
                let r = &reqs[j * 10];
                let mut m = mov(
                    j as u128,
                    "1",
                    Some(&r.sender_name.to_uppercase()),
                    r.registered_at_ms + H,
                );
                m.amount = r.amount;
                m
            })
            .collect();
        movs.extend((5_000..10_000u32).map(|j| {
            let mut m = mov(u128::from(j), "1", Some("ALGUIEN MAS"), T0);
            // Four decimals ending in 5: never equal to a request's two-decimal amount.
            m.amount = Decimal::new(i64::from(j) * 100 + 55, 4);
            m
        }));
        let start = std::time::Instant::now();
        let pass = run_pass(T0 + H, &reqs, &movs);
        let elapsed = start.elapsed();
        eprintln!("run_pass over 50,000 requests × 10,000 movements: {elapsed:?}");
        assert_eq!(pass.matched.len(), 5_000);
        assert_eq!(pass.not_found.len(), 45_000);
        assert!(pass.ambiguous.is_empty() && pass.expired.is_empty());
        assert!(pass.not_found.iter().all(|n| n.reason == "no_movement_with_amount"));
    }
}
