//! Bank definitions (CONNECTORS §7): a bank described as data in TOML, parsed and validated at
//! load. Every error names the file, the line and the field.
//!
//! The format, in short (the tutorial in `docs/banks.md` walks through `banks/sandbox-js.toml`):
//! top-level `format = 1`, `code`, `name`, `version` (semver), `base_url`, `allowed_hosts`,
//! optional `locale`, `timezone`, `user_agent`, `block_resources`; `[timeouts]` (`step`,
//! `navigation`, `login`, `read`); `[[outcome]]` rules (`when` + `result`); `[[login]]` steps;
//! an optional `[otp]` block; `[movements]` (a table or a captured JSON response, and
//! `[movements.fields]`; `read = "http"` + `url` + `headers`); `[[logout]]` steps; `[session]`
//! (`remember` cookies / `local_storage` keys, `watch` rules, `keep_alive`). `eval` steps may
//! keep their result (`as`) for `{ var }` conditions and `{{ vars.NAME }}` URL templates.

use std::collections::BTreeMap;
use std::fmt;
use std::path::Path;
use std::time::Duration;

use serde::Deserialize;
use toml::Spanned;

/// A definition error: where and what.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DefError {
    pub file: String,
    /// 1-based; 0 when the error is about the file as a whole.
    pub line: usize,
    /// The dotted path of the field (`login[3].fill`), empty for a syntax error.
    pub field: String,
    pub message: String,
}

impl fmt::Display for DefError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match (self.line, self.field.is_empty()) {
            (0, true) => write!(f, "{}: {}", self.file, self.message),
            (0, false) => write!(f, "{}: {}: {}", self.file, self.field, self.message),
            (l, true) => write!(f, "{}:{l}: {}", self.file, self.message),
            (l, false) => write!(f, "{}:{l}: {}: {}", self.file, self.field, self.message),
        }
    }
}

impl std::error::Error for DefError {}

// ---------------------------------------------------------------------------------------------
// The TOML shape (deny_unknown_fields everywhere: a typo is an error, not a silent default).

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawDef {
    format: Spanned<u32>,
    code: Spanned<String>,
    name: String,
    version: Spanned<String>,
    base_url: Spanned<String>,
    allowed_hosts: Spanned<Vec<String>>,
    #[serde(default)]
    locale: Option<String>,
    #[serde(default)]
    timezone: Option<Spanned<String>>,
    #[serde(default)]
    user_agent: Option<String>,
    #[serde(default)]
    block_resources: Option<Spanned<Vec<String>>>,
    #[serde(default)]
    timeouts: Option<RawTimeouts>,
    #[serde(default)]
    outcome: Vec<RawOutcome>,
    login: Vec<RawStep>,
    #[serde(default)]
    otp: Option<RawOtp>,
    movements: RawMovements,
    #[serde(default)]
    logout: Vec<RawStep>,
    #[serde(default)]
    session: Option<RawSession>,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawSession {
    #[serde(default)]
    remember: Option<RawRemember>,
    #[serde(default)]
    watch: Vec<RawWatch>,
    /// `"reads"` (the default: the engine's reads keep the session warm) or a duration: the
    /// watch rules also run on that timer while the session is parked between reads.
    #[serde(default)]
    keep_alive: Option<Spanned<String>>,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawWatch {
    when: RawCond,
    click: RawSel,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawRemember {
    #[serde(default)]
    cookies: Option<Spanned<Vec<String>>>,
    #[serde(default)]
    local_storage: Option<Spanned<Vec<String>>>,
    #[serde(default)]
    ttl: Option<Spanned<String>>,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawTimeouts {
    step: Option<Spanned<String>>,
    navigation: Option<Spanned<String>>,
    login: Option<Spanned<String>>,
    read: Option<Spanned<String>>,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawOutcome {
    when: RawCond,
    result: Spanned<String>,
}

/// A selector: a CSS string, `{ text, role }`, `{ pierce }`, or a list tried in order.
#[derive(Debug, Clone, Deserialize)]
#[serde(untagged)]
enum RawSel {
    Css(String),
    List(Vec<RawSel>),
    Located(RawLocated),
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawLocated {
    #[serde(default)]
    text: Option<String>,
    #[serde(default)]
    role: Option<String>,
    #[serde(default)]
    pierce: Option<String>,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawCond {
    #[serde(default)]
    visible: Option<RawSel>,
    #[serde(default)]
    hidden: Option<RawSel>,
    #[serde(default)]
    url: Option<Spanned<String>>,
    #[serde(default)]
    status: Option<Spanned<toml::Value>>,
    #[serde(default)]
    response: Option<String>,
    #[serde(default)]
    any: Option<Vec<RawCond>>,
    /// A variable set by an earlier `eval … as` step: holds when it is truthy, or (with
    /// `equals`) when it equals that value.
    #[serde(default)]
    var: Option<Spanned<String>>,
    #[serde(default)]
    equals: Option<toml::Value>,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawStep {
    #[serde(default)]
    goto: Option<Spanned<String>>,
    #[serde(default)]
    fill: Option<RawSel>,
    #[serde(default)]
    with: Option<Spanned<String>>,
    #[serde(default)]
    typing: Option<Spanned<String>>,
    #[serde(default)]
    click: Option<RawSel>,
    #[serde(default)]
    wait: Option<Spanned<String>>,
    #[serde(default)]
    wait_for: Option<RawCond>,
    #[serde(default)]
    branch: Option<Vec<RawBranch>>,
    #[serde(default)]
    timeout: Option<Spanned<String>>,
    #[serde(default)]
    eval: Option<String>,
    /// `eval` only: the variable its JSON result is stored in.
    #[serde(default, rename = "as")]
    into: Option<Spanned<String>>,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawBranch {
    when: RawCond,
    then: Spanned<String>,
}

/// A constant or `{ attr, of }` / `{ count }`.
type RawFrom = Spanned<toml::Value>;

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawOtp {
    length: RawFrom,
    kind: RawFrom,
    #[serde(default)]
    purpose: Option<RawFrom>,
    #[serde(default)]
    input: Option<RawSel>,
    #[serde(default)]
    boxes: Option<RawSel>,
    submit: RawSel,
    accepted: RawCond,
    rejected: RawCond,
    #[serde(default)]
    logged_out: Option<RawCond>,
    #[serde(default)]
    timeout: Option<Spanned<String>>,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawMovements {
    #[serde(default)]
    goto: Option<Spanned<String>>,
    #[serde(default)]
    steps: Vec<RawStep>,
    #[serde(default)]
    logged_out: Option<RawCond>,
    #[serde(default)]
    table: Option<RawSel>,
    #[serde(default)]
    rows: Option<RawSel>,
    #[serde(default)]
    capture: Option<RawCapture>,
    #[serde(default)]
    list: Option<Spanned<String>>,
    #[serde(default)]
    next: Option<RawSel>,
    #[serde(default)]
    max_pages: Option<Spanned<i64>>,
    #[serde(default)]
    until_older_than: Option<Spanned<String>>,
    /// `"browser"` (the default) or `"http"` (CONNECTORS §4): after the login, reads are plain
    /// HTTP requests to `url` with the login's cookies, and the browser context is closed.
    #[serde(default)]
    read: Option<Spanned<String>>,
    #[serde(default)]
    url: Option<Spanned<String>>,
    /// With `read = "http"`: request headers captured from the bank's own requests during the
    /// browser login (a bearer token) and sent on every read.
    #[serde(default)]
    headers: Option<Spanned<Vec<String>>>,
    fields: BTreeMap<String, Spanned<RawField>>,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawCapture {
    response: Spanned<String>,
    #[serde(default)]
    status: Option<u16>,
    #[serde(default)]
    pick: Option<Spanned<String>>,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawField {
    #[serde(default)]
    attr: Option<String>,
    #[serde(default)]
    text: Option<Spanned<String>>,
    #[serde(default)]
    json: Option<Spanned<String>>,
    #[serde(default)]
    hash: Option<Vec<String>>,
    #[serde(default)]
    parse: Option<Spanned<String>>,
    #[serde(default)]
    decimal: Option<String>,
    #[serde(default)]
    thousands: Option<String>,
    #[serde(default)]
    negative: Option<Spanned<String>>,
    #[serde(default)]
    format: Option<String>,
    #[serde(default)]
    timezone: Option<Spanned<String>>,
    #[serde(default)]
    map: Option<BTreeMap<String, String>>,
    #[serde(default)]
    empty: Option<Spanned<String>>,
    #[serde(default)]
    regex: Option<Spanned<String>>,
}

// ---------------------------------------------------------------------------------------------
// The validated definition the interpreter runs.

/// A loaded, validated bank definition.
#[derive(Debug, Clone)]
pub struct BankDef {
    pub code: String,
    pub name: String,
    pub version: String,
    pub base_url: url::Url,
    pub allowed_hosts: Vec<String>,
    pub locale: Option<String>,
    pub timezone: Option<String>,
    pub user_agent: Option<String>,
    /// CDP resource types failed at interception (`image`, `font`, `media`, …).
    pub block_resources: Vec<String>,
    pub timeouts: Timeouts,
    pub outcomes: Vec<Outcome>,
    pub login: Vec<Step>,
    pub otp: Option<Otp>,
    pub movements: Movements,
    pub logout: Vec<Step>,
    /// Remember-device (CONNECTORS §4): the cookies kept after a login and given to the next.
    pub remember: Option<Remember>,
    /// `[session] watch` (CONNECTORS §4): interruptions handled wherever they appear.
    pub watch: Vec<Watch>,
    /// `[session] keep_alive = "4m"`: while a session is parked between reads, its watch rules
    /// run on this timer (`None`: `"reads"`, only the reads and steps look at the page).
    pub keep_alive: Option<Duration>,
    /// Where it was loaded from (`builtin:sandbox-js.toml` or a path).
    pub source: String,
}

/// `[[session.watch]] when = { visible = "#session-timeout" }, click = "#stay"`: checked at every
/// wait of every step and read (the moments the interpreter looks at the page); when `when`
/// holds, `click` is clicked and the wait goes on. For the bank's own interruptions — "are you
/// still there?" modals, cookie banners, news pop-ups — that can come at any time.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Watch {
    pub when: Cond,
    pub click: Locator,
}

/// `[session] remember = { cookies = ["device*"], local_storage = ["trusted_*"], ttl = "90d" }`:
/// after a successful login the cookies and the `localStorage` keys (of the origin the login
/// ended on) whose names match a pattern (`*` matches any run of characters) are handed to the
/// engine, which seals them with the master key; the next login sets the cookies before its
/// first page and the keys before the bank's first script runs on that origin, so the bank
/// recognises the device and may not ask for a code. None is kept longer than `ttl` (default
/// 90 days), whatever the bank's own expiry says.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Remember {
    pub cookies: Vec<String>,
    pub local_storage: Vec<String>,
    pub ttl: Duration,
}

impl Remember {
    /// Whether the cookie `name` matches one of the patterns.
    pub fn keeps(&self, name: &str) -> bool {
        self.cookies.iter().any(|p| glob(p, name))
    }

    /// Whether the `localStorage` key `key` matches one of the patterns.
    pub fn keeps_key(&self, key: &str) -> bool {
        self.local_storage.iter().any(|p| glob(p, key))
    }
}

/// `*` matches any run of characters (none included); everything else matches itself.
fn glob(pattern: &str, name: &str) -> bool {
    let mut parts = pattern.split('*');
    let first = parts.next().unwrap_or("");
    let Some(mut rest) = name.strip_prefix(first) else {
        return false;
    };
    let parts: Vec<&str> = parts.collect();
    let Some((last, middle)) = parts.split_last() else {
        return rest.is_empty();
    };
    for p in middle {
        match rest.find(p) {
            Some(i) => rest = &rest[i + p.len()..],
            None => return false,
        }
    }
    rest.len() >= last.len() && rest.ends_with(last)
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Timeouts {
    pub step: Duration,
    pub navigation: Duration,
    /// The whole login, OTP waits excluded.
    pub login: Duration,
    pub read: Duration,
}

impl Default for Timeouts {
    fn default() -> Self {
        Timeouts {
            step: Duration::from_secs(15),
            navigation: Duration::from_secs(30),
            login: Duration::from_secs(120),
            read: Duration::from_secs(60),
        }
    }
}

/// Finds elements: CSS, text + role, piercing open shadow roots, or alternatives in order.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Locator {
    Css(String),
    Text { text: String, role: Option<String> },
    Pierce(String),
    Any(Vec<Locator>),
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum StatusClass {
    Exact(u16),
    /// `2xx` … `5xx`: the hundreds digit.
    Class(u16),
}

impl StatusClass {
    pub fn matches(&self, status: u16) -> bool {
        match self {
            StatusClass::Exact(s) => *s == status,
            StatusClass::Class(c) => status / 100 == *c,
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Cond {
    Visible(Locator),
    Hidden(Locator),
    /// A regular expression over the page's URL.
    Url(String),
    /// A response (the document or an XHR/fetch) with this status since the step began.
    Status(StatusClass),
    /// A response whose URL contains this since the step began.
    Response(String),
    Any(Vec<Cond>),
    /// A variable of an earlier `eval … as` step: truthy (`equals` none), or equal to `equals`.
    Var {
        name: String,
        equals: Option<serde_json::Value>,
    },
}

/// What an outcome rule decides.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verdict {
    Fatal(FatalKind),
    Retry,
    /// The bank ended the session (log in again).
    Expired,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FatalKind {
    BadCredentials,
    AccountLocked,
    OtpRejected,
    SecondFactorRequired,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Outcome {
    pub when: Cond,
    pub result: Verdict,
}

/// A value of the template language, which exists only in `fill`: the secret is never part of
/// a script.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum FillValue {
    Username,
    Password,
    Extra(String),
    Literal(String),
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BranchTo {
    Done,
    Otp,
    Continue,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Action {
    Goto(String),
    Fill {
        target: Locator,
        value: FillValue,
        human: bool,
    },
    Click {
        target: Locator,
        navigation: bool,
    },
    WaitFor(Cond),
    Branch(Vec<(Cond, BranchTo)>),
    /// Page-side JavaScript (the escape hatch, CONNECTORS §8): an expression evaluated in the
    /// page (a promise is awaited); with `into` (`as = "name"`) its JSON result is kept as the
    /// variable `name` for later conditions (`{ var = "name" }`) and URL templates
    /// (`{{ vars.name }}` in `goto` and `[movements] url`). Never logged.
    Eval {
        js: String,
        into: Option<String>,
    },
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Step {
    pub action: Action,
    pub timeout: Option<Duration>,
    /// `login[2]`, for messages and evidence.
    pub label: String,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum FromPage<T> {
    Const(T),
    Attr {
        attr: String,
        of: Locator,
    },
    /// The number of elements (`boxes`).
    Count(Locator),
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Otp {
    pub length: FromPage<u32>,
    pub kind: FromPage<String>,
    pub purpose: Option<FromPage<String>>,
    pub input: Option<Locator>,
    pub boxes: Option<Locator>,
    pub submit: Locator,
    pub accepted: Cond,
    pub rejected: Cond,
    pub logged_out: Option<Cond>,
    pub timeout: Option<Duration>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Pick {
    First,
    Last,
    Largest,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Source {
    Table {
        table: Locator,
        rows: Locator,
    },
    Json {
        response: String,
        status: Option<u16>,
        pick: Pick,
        list: String,
    },
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum FieldFrom {
    /// An attribute of the row element (table).
    Attr(String),
    /// The text of an element inside the row (CSS), or of the row itself when empty.
    Text(String),
    /// A JSON pointer inside the list item.
    Json(String),
    /// A stable id for banks that show none: a hash of other fields + the occurrence index
    /// among identical rows.
    Hash(Vec<String>),
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Negative {
    Minus,
    Parens,
    Suffix,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Parse {
    Text {
        regex: Option<String>,
    },
    Decimal {
        decimal: char,
        thousands: Option<char>,
        negative: Negative,
    },
    DateTime {
        format: String,
        zone: Zone,
    },
    Date {
        format: String,
        zone: Zone,
    },
    Currency {
        map: BTreeMap<String, String>,
    },
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Field {
    pub from: FieldFrom,
    pub parse: Parse,
    /// `empty = "none"`: an empty value is absent (only for `name`).
    pub empty_none: bool,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Movements {
    pub goto: Option<String>,
    pub steps: Vec<Step>,
    pub logged_out: Option<Cond>,
    pub source: Source,
    /// Older pages, when the bank pages its list (CONNECTORS §7).
    pub pages: Option<Pages>,
    /// `read = "http"`: the bank's JSON endpoint (relative to `base_url`, or absolute on an
    /// allowed host), read with the login's cookies once the browser context is closed.
    pub http: Option<String>,
    /// With `read = "http"`: the request headers (lower case) captured from the bank's own
    /// requests during the login and sent on every read. Their values are secrets.
    pub headers: Vec<String>,
    pub external_id: Field,
    pub received_at: Field,
    pub amount: Field,
    pub currency: Field,
    pub name: Option<Field>,
    pub description: Option<Field>,
}

/// How a paged list is read: the first page, then `next` is clicked while it is visible and
/// enabled, up to `max_pages` pages in all, stopping early once a page reaches back past
/// `until_older_than`. Nothing filters by date: the store ignores movements it already has.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Pages {
    pub next: Locator,
    pub max_pages: u32,
    pub until_older_than: Option<Duration>,
}

/// The bounds of a `keep_alive` timer.
pub const KEEP_ALIVE_MIN: Duration = Duration::from_millis(100);
pub const KEEP_ALIVE_MAX: Duration = Duration::from_secs(3600);

/// `max_pages` when a definition gives `next` alone, and the most it may ask for.
pub const DEFAULT_MAX_PAGES: u32 = 10;
pub const MAX_PAGES_LIMIT: u32 = 100;

// ---------------------------------------------------------------------------------------------
// Loading.

/// The built-in definitions (`banks/*.toml` of this repository), by file name.
pub const BUILTIN: &[(&str, &str)] = &[("sandbox-js.toml", include_str!("../../../banks/sandbox-js.toml"))];

struct Ctx<'a> {
    file: &'a str,
    text: &'a str,
}

impl Ctx<'_> {
    fn line_of(&self, offset: usize) -> usize {
        let end = offset.min(self.text.len());
        self.text.as_bytes()[..end].iter().filter(|b| **b == b'\n').count() + 1
    }

    /// The span of the first quoted occurrence of `needle` (for values whose own span the
    /// untagged selector forms lose).
    fn near(&self, needle: &str) -> Option<std::ops::Range<usize>> {
        let quoted = format!("\"{needle}\"");
        self.text
            .find(&quoted)
            .or_else(|| self.text.find(needle))
            .map(|i| i..i + needle.len())
    }

    fn err<T>(
        &self,
        span: Option<std::ops::Range<usize>>,
        field: &str,
        message: impl Into<String>,
    ) -> Result<T, DefError> {
        Err(DefError {
            file: self.file.to_owned(),
            line: span.map(|s| self.line_of(s.start)).unwrap_or(0),
            field: field.to_owned(),
            message: message.into(),
        })
    }
}

/// Parses and validates a definition. `file` names it in errors.
pub fn parse(file: &str, text: &str) -> Result<BankDef, DefError> {
    let cx = Ctx { file, text };
    let raw: RawDef = match toml::from_str(text) {
        Ok(r) => r,
        Err(e) => {
            let line = e.span().map(|s| cx.line_of(s.start)).unwrap_or(0);
            // The message of the toml crate already names the key when it knows it.
            let message = e.message().trim().to_owned();
            let field = field_from_message(&message);
            return Err(DefError {
                file: file.to_owned(),
                line,
                field,
                message,
            });
        }
    };
    let mut def = validate(&cx, raw)?;
    def.source = file.to_owned();
    Ok(def)
}

/// Reads and parses a definition file.
pub fn load_file(path: &Path) -> Result<BankDef, DefError> {
    let name = path.display().to_string();
    let text = std::fs::read_to_string(path).map_err(|e| DefError {
        file: name.clone(),
        line: 0,
        field: String::new(),
        message: format!("cannot read: {e}"),
    })?;
    parse(&name, &text)
}

/// The built-in definitions plus every `*.toml` in `dir` (a file with a built-in's code
/// replaces it). Errors are per file; a bad file does not hide the good ones.
pub fn load_all(dir: Option<&Path>) -> (Vec<BankDef>, Vec<DefError>) {
    let mut defs: Vec<BankDef> = Vec::new();
    let mut errors = Vec::new();
    for (name, text) in BUILTIN {
        match parse(&format!("builtin:{name}"), text) {
            Ok(d) => defs.push(d),
            Err(e) => errors.push(e),
        }
    }
    if let Some(dir) = dir {
        let mut files: Vec<_> = std::fs::read_dir(dir)
            .map(|rd| {
                rd.filter_map(Result::ok)
                    .map(|e| e.path())
                    .filter(|p| p.extension().is_some_and(|x| x == "toml"))
                    .collect()
            })
            .unwrap_or_default();
        files.sort();
        for path in files {
            match load_file(&path) {
                Ok(d) => {
                    defs.retain(|old| old.code != d.code);
                    defs.push(d);
                }
                Err(e) => errors.push(e),
            }
        }
    }
    (defs, errors)
}

fn field_from_message(message: &str) -> String {
    // "unknown field `fil`, expected ..." / "missing field `login`"
    for marker in ["unknown field `", "missing field `"] {
        if let Some(rest) = message.split(marker).nth(1) {
            if let Some(name) = rest.split('`').next() {
                return name.to_owned();
            }
        }
    }
    String::new()
}

pub(crate) fn parse_duration(s: &str) -> Option<Duration> {
    let s = s.trim();
    let (num, unit) = s.split_at(s.find(|c: char| !c.is_ascii_digit())?);
    let n: u64 = num.parse().ok()?;
    let d = match unit {
        "ms" => Duration::from_millis(n),
        "s" => Duration::from_secs(n),
        "m" | "min" => Duration::from_secs(n.checked_mul(60)?),
        "h" => Duration::from_secs(n.checked_mul(3600)?),
        "d" => Duration::from_secs(n.checked_mul(86_400)?),
        _ => return None,
    };
    (!d.is_zero()).then_some(d)
}

/// The time zone a bank shows its dates in: a fixed offset (`UTC`, `-03:00`) or an IANA zone
/// (`America/New_York`), whose summer time is followed.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Zone {
    Fixed(chrono::FixedOffset),
    Iana(chrono_tz::Tz),
}

impl Zone {
    /// A local date-time of this zone as UTC. A time skipped by a summer-time change does not
    /// exist (`None`); one repeated when the clocks go back is read as the earlier of the two.
    pub fn to_utc(&self, local: &chrono::NaiveDateTime) -> Option<chrono::DateTime<chrono::Utc>> {
        use chrono::TimeZone;
        match self {
            Zone::Fixed(o) => o.from_local_datetime(local).earliest().map(|t| t.to_utc()),
            Zone::Iana(tz) => tz.from_local_datetime(local).earliest().map(|t| t.to_utc()),
        }
    }
}

/// `UTC`, `Z`, a fixed offset `±HH:MM`, or an IANA zone name (`America/Montevideo`).
pub(crate) fn parse_zone(s: &str) -> Option<Zone> {
    parse_offset(s)
        .map(Zone::Fixed)
        .or_else(|| s.trim().parse::<chrono_tz::Tz>().ok().map(Zone::Iana))
}

/// `UTC`, `Z` or a fixed offset `±HH:MM`.
pub(crate) fn parse_offset(s: &str) -> Option<chrono::FixedOffset> {
    let s = s.trim();
    if s.eq_ignore_ascii_case("utc") || s == "Z" {
        return chrono::FixedOffset::east_opt(0);
    }
    let (sign, rest) = match s.as_bytes().first()? {
        b'+' => (1, &s[1..]),
        b'-' => (-1, &s[1..]),
        _ => return None,
    };
    let (h, m) = rest.split_once(':')?;
    if h.len() != 2 || m.len() != 2 {
        return None;
    }
    let secs = h.parse::<i32>().ok()? * 3600 + m.parse::<i32>().ok()? * 60;
    chrono::FixedOffset::east_opt(sign * secs)
}

fn span_of<T>(s: &Spanned<T>) -> Option<std::ops::Range<usize>> {
    Some(s.span())
}

fn validate(cx: &Ctx<'_>, raw: RawDef) -> Result<BankDef, DefError> {
    if *raw.format.get_ref() != 1 {
        return cx.err(span_of(&raw.format), "format", "only format = 1 exists");
    }
    let code = raw.code.get_ref().clone();
    if code.is_empty()
        || code.len() > 64
        || !code
            .chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-' || c == '_')
    {
        return cx.err(span_of(&raw.code), "code", "1-64 characters from [a-z0-9_-]");
    }
    if !is_semver(raw.version.get_ref()) {
        return cx.err(span_of(&raw.version), "version", "a semver version such as \"1.0.0\"");
    }
    let base_url = match url::Url::parse(raw.base_url.get_ref()) {
        Ok(u) if matches!(u.scheme(), "http" | "https") && u.host_str().is_some() => u,
        _ => return cx.err(span_of(&raw.base_url), "base_url", "an absolute http(s) URL"),
    };
    let allowed_hosts: Vec<String> = raw
        .allowed_hosts
        .get_ref()
        .iter()
        .map(|h| h.to_ascii_lowercase())
        .collect();
    if allowed_hosts.is_empty()
        || allowed_hosts
            .iter()
            .any(|h| h.is_empty() || h.contains('/') || h.contains(':'))
    {
        return cx.err(
            span_of(&raw.allowed_hosts),
            "allowed_hosts",
            "a non-empty list of host names (no scheme, port or path; `*.example.com` for subdomains)",
        );
    }
    if !host_allowed(&allowed_hosts, base_url.host_str().unwrap_or_default()) {
        return cx.err(span_of(&raw.base_url), "base_url", "its host is not in allowed_hosts");
    }
    let timezone = match &raw.timezone {
        Some(tz) => {
            if parse_zone(tz.get_ref()).is_none() {
                return cx.err(
                    span_of(tz),
                    "timezone",
                    "UTC, a fixed offset such as \"-03:00\" or an IANA zone such as \"America/Montevideo\"",
                );
            }
            Some(tz.get_ref().clone())
        }
        None => None,
    };
    let block_resources = match &raw.block_resources {
        None => vec!["image".into(), "font".into(), "media".into()],
        Some(list) => {
            const KINDS: &[&str] = &["image", "font", "media", "stylesheet", "texttrack", "manifest", "other"];
            for k in list.get_ref() {
                if !KINDS.contains(&k.as_str()) {
                    return cx.err(
                        span_of(list),
                        "block_resources",
                        format!("unknown resource type {k:?} (one of {})", KINDS.join(", ")),
                    );
                }
            }
            list.get_ref().clone()
        }
    };
    let mut timeouts = Timeouts::default();
    if let Some(t) = &raw.timeouts {
        for (field, value, slot) in [
            ("timeouts.step", &t.step, &mut timeouts.step),
            ("timeouts.navigation", &t.navigation, &mut timeouts.navigation),
            ("timeouts.login", &t.login, &mut timeouts.login),
            ("timeouts.read", &t.read, &mut timeouts.read),
        ] {
            if let Some(v) = value {
                *slot = dur(cx, v, field)?;
            }
        }
    }
    // Every variable an `eval … as` step sets, anywhere: what a condition may name.
    let declared: std::collections::BTreeSet<String> = raw
        .login
        .iter()
        .chain(&raw.movements.steps)
        .chain(&raw.logout)
        .filter_map(|s| s.into.as_ref().map(|n| n.get_ref().clone()))
        .collect();
    let v = Validator {
        cx,
        hosts: &allowed_hosts,
        base: &base_url,
        declared,
        earlier: Default::default(),
    };
    let mut outcomes = Vec::new();
    for (i, o) in raw.outcome.iter().enumerate() {
        let field = format!("outcome[{i}]");
        let result = match o.result.get_ref().as_str() {
            "fatal:bad_credentials" => Verdict::Fatal(FatalKind::BadCredentials),
            "fatal:account_locked" => Verdict::Fatal(FatalKind::AccountLocked),
            "fatal:otp_rejected" => Verdict::Fatal(FatalKind::OtpRejected),
            "fatal:second_factor_required" => Verdict::Fatal(FatalKind::SecondFactorRequired),
            "retry" => Verdict::Retry,
            "expired" => Verdict::Expired,
            _ => {
                return cx.err(
                    span_of(&o.result),
                    &format!("{field}.result"),
                    "one of fatal:bad_credentials, fatal:account_locked, fatal:otp_rejected, fatal:second_factor_required, retry, expired",
                )
            }
        };
        outcomes.push(Outcome {
            when: v.cond(&o.when, &format!("{field}.when"))?,
            result,
        });
    }
    if raw.login.is_empty() {
        return cx.err(None, "login", "at least one step");
    }
    let login = v.steps(&raw.login, "login", true)?;
    let wants_otp = login
        .iter()
        .any(|s| matches!(&s.action, Action::Branch(b) if b.iter().any(|(_, t)| *t == BranchTo::Otp)));
    let otp = match &raw.otp {
        Some(o) => Some(v.otp(o)?),
        None if wants_otp => return cx.err(None, "otp", "a branch goes to \"otp\" but there is no [otp] block"),
        None => None,
    };
    // A read starts from the login's variables; what its own steps set lasts for that read,
    // so the logout sees the login's alone.
    let login_vars = v.earlier.borrow().clone();
    let movements = v.movements(&raw.movements, &allowed_hosts)?;
    *v.earlier.borrow_mut() = login_vars;
    let logout = v.steps(&raw.logout, "logout", false)?;
    let remember = match raw.session.as_ref().and_then(|s| s.remember.as_ref()) {
        None => None,
        Some(r) => {
            let cookies = remember_patterns(cx, r.cookies.as_ref(), "session.remember.cookies", true)?;
            let local_storage =
                remember_patterns(cx, r.local_storage.as_ref(), "session.remember.local_storage", false)?;
            if cookies.is_empty() && local_storage.is_empty() {
                return cx.err(
                    cx.near("remember ="),
                    "session.remember",
                    "`cookies`, `local_storage` or both: what identifies the device",
                );
            }
            let ttl = match &r.ttl {
                Some(t) => dur(cx, t, "session.remember.ttl")?,
                None => Duration::from_secs(90 * 86_400),
            };
            Some(Remember {
                cookies,
                local_storage,
                ttl,
            })
        }
    };
    let mut watch = Vec::new();
    for (i, w) in raw.session.iter().flat_map(|s| s.watch.iter()).enumerate() {
        let field = format!("session.watch[{i}]");
        watch.push(Watch {
            when: v.cond(&w.when, &format!("{field}.when"))?,
            click: v.sel(&w.click, &format!("{field}.click"))?,
        });
    }
    let keep_alive = match raw.session.as_ref().and_then(|s| s.keep_alive.as_ref()) {
        None => None,
        Some(k) if k.get_ref() == "reads" => None,
        Some(k) => {
            let Some(every) = parse_duration(k.get_ref()) else {
                return cx.err(
                    span_of(k),
                    "session.keep_alive",
                    "\"reads\" or a duration such as \"4m\" (the watch rules' timer)",
                );
            };
            let problem = if every < KEEP_ALIVE_MIN || every > KEEP_ALIVE_MAX {
                Some("a timer from 100ms to 1h")
            } else if watch.is_empty() {
                Some("a keep_alive timer runs the watch rules: give [session] watch")
            } else if movements.http.is_some() {
                Some("with read = \"http\" no page is kept between reads: keep_alive = \"reads\"")
            } else {
                None
            };
            if let Some(p) = problem {
                return cx.err(span_of(k), "session.keep_alive", p);
            }
            Some(every)
        }
    };
    Ok(BankDef {
        code,
        name: raw.name,
        version: raw.version.into_inner(),
        base_url,
        allowed_hosts,
        locale: raw.locale,
        timezone,
        user_agent: raw.user_agent,
        block_resources,
        timeouts,
        outcomes,
        login,
        otp,
        movements,
        logout,
        remember,
        watch,
        keep_alive,
        source: String::new(),
    })
}

/// The names or patterns of `remember.cookies` / `remember.local_storage`: none empty or only
/// `*` (that would keep everything the bank stores), no control characters, and for cookies
/// nothing a cookie name cannot hold (`;`, `=`, `,`, white space). A list given empty is an error.
fn remember_patterns(
    cx: &Ctx<'_>,
    list: Option<&Spanned<Vec<String>>>,
    field: &str,
    cookie: bool,
) -> Result<Vec<String>, DefError> {
    let Some(list) = list else {
        return Ok(Vec::new());
    };
    let bad = |p: &String| {
        p.trim().is_empty()
            || p.chars().all(|c| c == '*')
            || p.chars().any(char::is_control)
            || (cookie && p.chars().any(|c| c.is_whitespace() || matches!(c, ';' | '=' | ',')))
    };
    if list.get_ref().is_empty() || list.get_ref().iter().any(bad) {
        let what = if cookie { "cookie" } else { "localStorage key" };
        return cx.err(
            span_of(list),
            field,
            format!("{what} names or patterns such as \"device*\" (not empty, not only `*`, no separators)"),
        );
    }
    Ok(list.get_ref().clone())
}

fn is_semver(v: &str) -> bool {
    let core = v.split(['-', '+']).next().unwrap_or("");
    let parts: Vec<&str> = core.split('.').collect();
    parts.len() == 3
        && parts
            .iter()
            .all(|p| !p.is_empty() && p.chars().all(|c| c.is_ascii_digit()))
}

/// Whether `host` is allowed: equal to an entry, or a subdomain of a `*.domain` entry.
pub fn host_allowed(allowed: &[String], host: &str) -> bool {
    let host = host.trim_end_matches('.').to_ascii_lowercase();
    allowed.iter().any(|a| match a.strip_prefix("*.") {
        Some(domain) => host == domain || host.ends_with(&format!(".{domain}")),
        None => *a == host,
    })
}

fn dur(cx: &Ctx<'_>, v: &Spanned<String>, field: &str) -> Result<Duration, DefError> {
    match parse_duration(v.get_ref()) {
        Some(d) => Ok(d),
        None => cx.err(
            span_of(v),
            field,
            "a duration such as \"500ms\", \"15s\", \"2m\" or \"3d\"",
        ),
    }
}

struct Validator<'a> {
    cx: &'a Ctx<'a>,
    hosts: &'a [String],
    base: &'a url::Url,
    /// Variables set by some `eval … as` step of the definition.
    declared: std::collections::BTreeSet<String>,
    /// Variables set by the steps validated so far (the ones a URL template may use).
    earlier: std::cell::RefCell<std::collections::BTreeSet<String>>,
}

/// The most a variable's JSON may weigh (an `eval` result above it is `Broken`).
pub const VAR_MAX_BYTES: usize = 64 * 1024;

/// A variable name: `[a-z_][a-z0-9_]*`, at most 64 characters.
fn var_name_ok(n: &str) -> bool {
    n.len() <= 64
        && n.chars().next().is_some_and(|c| c.is_ascii_lowercase() || c == '_')
        && n.chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_')
}

/// The variables `{{ vars.NAME }}` of a URL template, in order; `Err` names what is not one.
pub fn template_vars(text: &str) -> Result<Vec<String>, String> {
    let mut out = Vec::new();
    let mut rest = text;
    while let Some(i) = rest.find("{{") {
        let after = &rest[i + 2..];
        let Some(j) = after.find("}}") else {
            return Err("a `{{` without its `}}`".into());
        };
        let inner = after[..j].trim();
        match inner.strip_prefix("vars.") {
            Some(n) if var_name_ok(n) => out.push(n.to_owned()),
            _ => return Err(format!("{{{{ {inner} }}}}: URL templates are {{{{ vars.NAME }}}} only")),
        }
        rest = &after[j + 2..];
    }
    if rest.contains("}}") {
        return Err("a `}}` without its `{{`".into());
    }
    Ok(out)
}

/// `template` with every `{{ vars.NAME }}` replaced by the variable's value, percent-encoded
/// (every byte but `A-Za-z0-9-._~`, so a value cannot change the URL's host or structure). A
/// string is used as is, a number or boolean as its JSON text; a variable that is not set, is
/// null, or is an object or a list is an error naming it.
pub fn expand(template: &str, vars: &BTreeMap<String, serde_json::Value>) -> Result<String, String> {
    let mut out = String::with_capacity(template.len());
    let mut rest = template;
    while let Some(i) = rest.find("{{") {
        out.push_str(&rest[..i]);
        let after = &rest[i + 2..];
        let Some(j) = after.find("}}") else {
            return Err("a `{{` without its `}}`".into());
        };
        let name = after[..j].trim().trim_start_matches("vars.");
        let text = match vars.get(name) {
            Some(serde_json::Value::String(s)) => s.clone(),
            Some(v @ (serde_json::Value::Number(_) | serde_json::Value::Bool(_))) => v.to_string(),
            Some(serde_json::Value::Null) | None => return Err(format!("the variable {name:?} is not set")),
            Some(_) => return Err(format!("the variable {name:?} is not a string, number or boolean")),
        };
        for b in text.bytes() {
            if b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_' | b'~') {
                out.push(char::from(b));
            } else {
                out.push_str(&format!("%{b:02X}"));
            }
        }
        rest = &after[j + 2..];
    }
    out.push_str(rest);
    Ok(out)
}

impl Validator<'_> {
    fn css(&self, s: &str, field: &str) -> Result<String, DefError> {
        if scraper::Selector::parse(s).is_err() {
            return self
                .cx
                .err(self.cx.near(s), field, format!("not a valid CSS selector: {s:?}"));
        }
        Ok(s.to_owned())
    }

    fn sel(&self, s: &RawSel, field: &str) -> Result<Locator, DefError> {
        match s {
            RawSel::Css(css) => Ok(Locator::Css(self.css(css, field)?)),
            RawSel::List(list) => {
                if list.is_empty() {
                    return self.cx.err(None, field, "an empty selector list");
                }
                let mut out = Vec::new();
                for (i, item) in list.iter().enumerate() {
                    out.push(self.sel(item, &format!("{field}[{i}]"))?);
                }
                Ok(Locator::Any(out))
            }
            RawSel::Located(l) => match (&l.text, &l.pierce) {
                (Some(text), None) => Ok(Locator::Text {
                    text: text.clone(),
                    role: l.role.clone(),
                }),
                (None, Some(p)) if l.role.is_none() => Ok(Locator::Pierce(self.css(p, &format!("{field}.pierce"))?)),
                _ => self.cx.err(
                    None,
                    field,
                    "a selector is a CSS string, { text, role }, { pierce } or a list",
                ),
            },
        }
    }

    fn cond(&self, c: &RawCond, field: &str) -> Result<Cond, DefError> {
        let mut found = Vec::new();
        if let Some(s) = &c.visible {
            found.push(Cond::Visible(self.sel(s, &format!("{field}.visible"))?));
        }
        if let Some(s) = &c.hidden {
            found.push(Cond::Hidden(self.sel(s, &format!("{field}.hidden"))?));
        }
        if let Some(u) = &c.url {
            if regex_lite::Regex::new(u.get_ref()).is_err() {
                return self
                    .cx
                    .err(span_of(u), &format!("{field}.url"), "not a valid regular expression");
            }
            found.push(Cond::Url(u.get_ref().clone()));
        }
        if let Some(s) = &c.status {
            let class = match s.get_ref() {
                toml::Value::Integer(n) if (100..=599).contains(n) => StatusClass::Exact(*n as u16),
                toml::Value::String(t) if t.len() == 3 && t.ends_with("xx") => match t[..1].parse::<u16>() {
                    Ok(d @ 1..=5) => StatusClass::Class(d),
                    _ => {
                        return self.cx.err(
                            span_of(s),
                            &format!("{field}.status"),
                            "a status (503) or a class (\"5xx\")",
                        )
                    }
                },
                _ => {
                    return self.cx.err(
                        span_of(s),
                        &format!("{field}.status"),
                        "a status (503) or a class (\"5xx\")",
                    )
                }
            };
            found.push(Cond::Status(class));
        }
        if let Some(r) = &c.response {
            found.push(Cond::Response(r.clone()));
        }
        if let Some(list) = &c.any {
            let mut out = Vec::new();
            for (i, item) in list.iter().enumerate() {
                out.push(self.cond(item, &format!("{field}.any[{i}]"))?);
            }
            found.push(Cond::Any(out));
        }
        match (&c.var, &c.equals) {
            (Some(n), equals) => {
                if !self.declared.contains(n.get_ref()) {
                    return self.cx.err(
                        span_of(n),
                        &format!("{field}.var"),
                        format!("no `eval` step sets {:?} (`as = \"{}\"`)", n.get_ref(), n.get_ref()),
                    );
                }
                let equals = match equals {
                    None => None,
                    Some(v) => match serde_json::to_value(v) {
                        Ok(j) => Some(j),
                        Err(_) => return self.cx.err(span_of(n), &format!("{field}.equals"), "a JSON value"),
                    },
                };
                found.push(Cond::Var {
                    name: n.get_ref().clone(),
                    equals,
                });
            }
            (None, Some(_)) => {
                return self
                    .cx
                    .err(None, &format!("{field}.equals"), "`equals` belongs to `var`")
            }
            (None, None) => {}
        }
        match found.len() {
            1 => Ok(found.remove(0)),
            _ => self.cx.err(
                None,
                field,
                "a condition has exactly one of visible, hidden, url, status, response, any, var",
            ),
        }
    }

    fn goto(&self, g: &Spanned<String>, field: &str) -> Result<String, DefError> {
        // `{{ vars.NAME }}` of an earlier `eval … as` step; its host is judged with the
        // variables standing in as `x` (a value is percent-encoded: it cannot change the host).
        let probe = self.url_template(g, field)?;
        match self.base.join(&probe) {
            Ok(u) if host_allowed(self.hosts, u.host_str().unwrap_or_default()) => Ok(g.get_ref().clone()),
            Ok(_) => self.cx.err(span_of(g), field, "the URL's host is not in allowed_hosts"),
            Err(_) => self.cx.err(span_of(g), field, "not a URL or a path"),
        }
    }

    /// Checks the `{{ vars.NAME }}` templates of a URL (each set by an earlier step) and
    /// returns the URL with each standing in as `x`.
    fn url_template(&self, g: &Spanned<String>, field: &str) -> Result<String, DefError> {
        let names = match template_vars(g.get_ref()) {
            Ok(n) => n,
            Err(e) => {
                return self.cx.err(
                    span_of(g),
                    field,
                    format!("{e} (credentials are only ever in `with` of a fill step)"),
                )
            }
        };
        if let Some(n) = names.iter().find(|n| !self.earlier.borrow().contains(*n)) {
            return self.cx.err(
                span_of(g),
                field,
                format!("no earlier `eval` step sets {n:?} (`as = \"{n}\"`)"),
            );
        }
        let vars = names.into_iter().map(|n| (n, serde_json::Value::from("x"))).collect();
        expand(g.get_ref(), &vars).or_else(|e| self.cx.err(span_of(g), field, e))
    }

    fn steps(&self, raw: &[RawStep], name: &str, may_branch: bool) -> Result<Vec<Step>, DefError> {
        let mut out = Vec::new();
        for (i, s) in raw.iter().enumerate() {
            let field = format!("{name}[{i}]");
            let mut actions = Vec::new();
            if let Some(g) = &s.goto {
                actions.push(Action::Goto(self.goto(g, &format!("{field}.goto"))?));
            }
            if let Some(f) = &s.fill {
                let target = self.sel(f, &format!("{field}.fill"))?;
                let Some(with) = &s.with else {
                    return self.cx.err(None, &field, "a fill step needs `with`");
                };
                let value = fill_value(self.cx, with, &format!("{field}.with"))?;
                let human = match &s.typing {
                    None => false,
                    Some(t) if t.get_ref() == "human" => true,
                    Some(t) if t.get_ref() == "paste" => false,
                    Some(t) => {
                        return self
                            .cx
                            .err(span_of(t), &format!("{field}.typing"), "\"human\" or \"paste\"")
                    }
                };
                actions.push(Action::Fill { target, value, human });
            }
            if let Some(c) = &s.click {
                let target = self.sel(c, &format!("{field}.click"))?;
                let navigation = match &s.wait {
                    None => false,
                    Some(w) if w.get_ref() == "navigation" => true,
                    Some(w) => return self.cx.err(span_of(w), &format!("{field}.wait"), "only \"navigation\""),
                };
                actions.push(Action::Click { target, navigation });
            }
            if let Some(c) = &s.wait_for {
                actions.push(Action::WaitFor(self.cond(c, &format!("{field}.wait_for"))?));
            }
            if let Some(b) = &s.branch {
                if !may_branch {
                    return self
                        .cx
                        .err(None, &format!("{field}.branch"), "branches exist only in [[login]]");
                }
                if b.is_empty() {
                    return self.cx.err(None, &format!("{field}.branch"), "at least one arm");
                }
                let mut arms = Vec::new();
                for (j, arm) in b.iter().enumerate() {
                    let to = match arm.then.get_ref().as_str() {
                        "done" => BranchTo::Done,
                        "otp" => BranchTo::Otp,
                        "continue" => BranchTo::Continue,
                        _ => {
                            return self.cx.err(
                                span_of(&arm.then),
                                &format!("{field}.branch[{j}].then"),
                                "\"done\", \"otp\" or \"continue\"",
                            )
                        }
                    };
                    arms.push((self.cond(&arm.when, &format!("{field}.branch[{j}].when"))?, to));
                }
                actions.push(Action::Branch(arms));
            }
            if let Some(e) = &s.eval {
                if e.contains("{{") {
                    return self.cx.err(
                        None,
                        &format!("{field}.eval"),
                        "templates are allowed only in `with` of a fill step (credentials are never part of a script)",
                    );
                }
                let into = match &s.into {
                    None => None,
                    Some(n) if var_name_ok(n.get_ref()) => Some(n.get_ref().clone()),
                    Some(n) => {
                        return self.cx.err(
                            span_of(n),
                            &format!("{field}.as"),
                            "a variable name: [a-z_][a-z0-9_]*, at most 64 characters",
                        )
                    }
                };
                actions.push(Action::Eval { js: e.clone(), into });
            } else if let Some(n) = &s.into {
                return self
                    .cx
                    .err(span_of(n), &format!("{field}.as"), "`as` belongs to an eval step");
            }
            if s.with.is_some() && s.fill.is_none() {
                return self
                    .cx
                    .err(None, &format!("{field}.with"), "`with` belongs to a fill step");
            }
            if actions.len() != 1 {
                return self.cx.err(
                    None,
                    &field,
                    "a step has exactly one of goto, fill, click, wait_for, branch, eval",
                );
            }
            let timeout = match &s.timeout {
                Some(t) => Some(dur(self.cx, t, &format!("{field}.timeout"))?),
                None => None,
            };
            if let Action::Eval { into: Some(n), .. } = &actions[0] {
                self.earlier.borrow_mut().insert(n.clone());
            }
            out.push(Step {
                action: actions.remove(0),
                timeout,
                label: field,
            });
        }
        Ok(out)
    }

    fn page_u32(&self, f: &RawFrom, field: &str) -> Result<FromPage<u32>, DefError> {
        let v = f;
        match v.get_ref() {
            toml::Value::Integer(n) if (1..=32).contains(n) => Ok(FromPage::Const(*n as u32)),
            toml::Value::Table(t) => self.attr_of(t, v, field),
            _ => self
                .cx
                .err(span_of(v), field, "a length 1-32, { attr, of } or { count }"),
        }
    }

    fn page_str(&self, f: &RawFrom, field: &str) -> Result<FromPage<String>, DefError> {
        let v = f;
        match v.get_ref() {
            toml::Value::String(s) => Ok(FromPage::Const(s.clone())),
            toml::Value::Table(t) => match self.attr_of::<String>(t, v, field)? {
                FromPage::Count(_) => self.cx.err(span_of(v), field, "{ count } gives a number"),
                other => Ok(other),
            },
            _ => self.cx.err(span_of(v), field, "a string or { attr, of }"),
        }
    }

    fn attr_of<T>(&self, t: &toml::Table, v: &Spanned<toml::Value>, field: &str) -> Result<FromPage<T>, DefError> {
        let css = |key: &str| -> Option<String> { t.get(key).and_then(|x| x.as_str()).map(str::to_owned) };
        let check = |s: &str| scraper::Selector::parse(s).is_ok();
        if t.len() == 2 {
            if let (Some(attr), Some(of)) = (css("attr"), css("of")) {
                if check(&of) {
                    return Ok(FromPage::Attr {
                        attr,
                        of: Locator::Css(of),
                    });
                }
            }
        }
        if t.len() == 1 {
            if let Some(sel) = css("count") {
                if check(&sel) {
                    return Ok(FromPage::Count(Locator::Css(sel)));
                }
            }
        }
        self.cx.err(
            span_of(v),
            field,
            "{ attr = \"name\", of = \"css\" } or { count = \"css\" } with a valid selector",
        )
    }

    fn otp(&self, o: &RawOtp) -> Result<Otp, DefError> {
        let length = self.page_u32(&o.length, "otp.length")?;
        let kind = self.page_str(&o.kind, "otp.kind")?;
        if let FromPage::Const(k) = &kind {
            if k != "numeric" && k != "alphanumeric" {
                let v = &o.kind;
                return self.cx.err(span_of(v), "otp.kind", "\"numeric\" or \"alphanumeric\"");
            }
        }
        let purpose = match &o.purpose {
            Some(p) => Some(self.page_str(p, "otp.purpose")?),
            None => None,
        };
        let input = o.input.as_ref().map(|s| self.sel(s, "otp.input")).transpose()?;
        let boxes = o.boxes.as_ref().map(|s| self.sel(s, "otp.boxes")).transpose()?;
        if input.is_some() == boxes.is_some() {
            return self.cx.err(None, "otp", "exactly one of `input` or `boxes`");
        }
        Ok(Otp {
            length,
            kind,
            purpose,
            input,
            boxes,
            submit: self.sel(&o.submit, "otp.submit")?,
            accepted: self.cond(&o.accepted, "otp.accepted")?,
            rejected: self.cond(&o.rejected, "otp.rejected")?,
            logged_out: o
                .logged_out
                .as_ref()
                .map(|c| self.cond(c, "otp.logged_out"))
                .transpose()?,
            timeout: o.timeout.as_ref().map(|t| dur(self.cx, t, "otp.timeout")).transpose()?,
        })
    }

    fn movements(&self, m: &RawMovements, allowed_hosts: &[String]) -> Result<Movements, DefError> {
        let goto = m.goto.as_ref().map(|g| self.goto(g, "movements.goto")).transpose()?;
        let steps = self.steps(&m.steps, "movements.steps", false)?;
        let logged_out = m
            .logged_out
            .as_ref()
            .map(|c| self.cond(c, "movements.logged_out"))
            .transpose()?;
        let json = m.capture.is_some();
        let source = match (&m.table, &m.rows, &m.capture) {
            (Some(t), Some(r), None) => Source::Table {
                table: self.sel(t, "movements.table")?,
                rows: self.sel(r, "movements.rows")?,
            },
            (None, None, Some(c)) => {
                let pick = match c.pick.as_ref().map(|p| p.get_ref().as_str()) {
                    None | Some("last") => Pick::Last,
                    Some("first") => Pick::First,
                    Some("largest") => Pick::Largest,
                    Some(_) => {
                        let p = c.pick.as_ref().map(span_of).unwrap_or(None);
                        return self
                            .cx
                            .err(p, "movements.capture.pick", "\"first\", \"last\" or \"largest\"");
                    }
                };
                if c.response.get_ref().is_empty() {
                    return self
                        .cx
                        .err(span_of(&c.response), "movements.capture.response", "a URL fragment");
                }
                let list = m.list.as_ref().map(|l| l.get_ref().clone()).unwrap_or_default();
                if !(list.is_empty() || list.starts_with('/')) {
                    let s = m.list.as_ref().map(span_of).unwrap_or(None);
                    return self
                        .cx
                        .err(s, "movements.list", "a JSON pointer (\"\" or \"/path/to/array\")");
                }
                Source::Json {
                    response: c.response.get_ref().clone(),
                    status: c.status,
                    pick,
                    list,
                }
            }
            _ => {
                return self.cx.err(
                    None,
                    "movements",
                    "either `table` + `rows` (an HTML table) or `capture` (+ `list`) (a JSON response)",
                )
            }
        };
        let http = self.read_http(m, json, allowed_hosts)?;
        let headers = match &m.headers {
            None => Vec::new(),
            Some(h) if http.is_none() => {
                return self
                    .cx
                    .err(span_of(h), "movements.headers", "only with read = \"http\"")
            }
            Some(h) => {
                // An HTTP token (RFC 9110), not one the client sets itself.
                let token = |n: &str| {
                    !n.is_empty()
                        && n.bytes()
                            .all(|b| b.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(&b))
                };
                const OWN: &[&str] = &["cookie", "host", "content-length", "connection", "transfer-encoding"];
                let names: Vec<String> = h.get_ref().iter().map(|n| n.to_ascii_lowercase()).collect();
                if names.is_empty() || names.iter().any(|n| !token(n) || OWN.contains(&n.as_str())) {
                    return self.cx.err(
                        span_of(h),
                        "movements.headers",
                        "request header names such as \"authorization\" (not cookie, host, \
                         content-length, connection or transfer-encoding: cookies come from the login)",
                    );
                }
                names
            }
        };
        let known = [
            "external_id",
            "received_at",
            "amount",
            "currency",
            "name",
            "description",
        ];
        for (k, v) in &m.fields {
            if !known.contains(&k.as_str()) {
                return self.cx.err(
                    span_of(v),
                    &format!("movements.fields.{k}"),
                    format!("unknown field (one of {})", known.join(", ")),
                );
            }
        }
        let get = |name: &str| m.fields.get(name);
        let required = |name: &str| -> Result<&Spanned<RawField>, DefError> {
            get(name).ok_or_else(|| DefError {
                file: self.cx.file.to_owned(),
                line: 0,
                field: format!("movements.fields.{name}"),
                message: "missing".into(),
            })
        };
        let field = |name: &str, f: &Spanned<RawField>, default_parse: &str| self.field(name, f, json, default_parse);
        let external_id = field("external_id", required("external_id")?, "text")?;
        let received_at = field("received_at", required("received_at")?, "datetime")?;
        let amount = field("amount", required("amount")?, "decimal")?;
        let currency = field("currency", required("currency")?, "iso4217")?;
        let name = get("name").map(|f| field("name", f, "text")).transpose()?;
        let description = get("description")
            .map(|f| field("description", f, "text"))
            .transpose()?;
        if let FieldFrom::Hash(of) = &external_id.from {
            for f in of {
                if !known[1..].contains(&f.as_str())
                    || (f == "name" && name.is_none())
                    || (f == "description" && description.is_none())
                {
                    return self.cx.err(
                        span_of(required("external_id")?),
                        "movements.fields.external_id.hash",
                        format!("{f:?} is not a field of this definition"),
                    );
                }
            }
        }
        for (n, f) in [
            ("received_at", &received_at),
            ("amount", &amount),
            ("currency", &currency),
        ] {
            if matches!(f.from, FieldFrom::Hash(_)) {
                return self
                    .cx
                    .err(None, &format!("movements.fields.{n}"), "only external_id can be a hash");
            }
        }
        let pages = match &m.next {
            None => {
                if let Some(mp) = &m.max_pages {
                    return self.cx.err(span_of(mp), "movements.max_pages", "only with `next`");
                }
                if let Some(u) = &m.until_older_than {
                    return self
                        .cx
                        .err(span_of(u), "movements.until_older_than", "only with `next`");
                }
                None
            }
            Some(next) => {
                let max_pages = match &m.max_pages {
                    None => DEFAULT_MAX_PAGES,
                    Some(mp) => match u32::try_from(*mp.get_ref()) {
                        Ok(n) if (2..=MAX_PAGES_LIMIT).contains(&n) => n,
                        _ => {
                            return self.cx.err(
                                span_of(mp),
                                "movements.max_pages",
                                format!("a number of pages from 2 to {MAX_PAGES_LIMIT}"),
                            )
                        }
                    },
                };
                let until_older_than = m
                    .until_older_than
                    .as_ref()
                    .map(|u| dur(self.cx, u, "movements.until_older_than"))
                    .transpose()?;
                Some(Pages {
                    next: self.sel(next, "movements.next")?,
                    max_pages,
                    until_older_than,
                })
            }
        };
        Ok(Movements {
            goto,
            steps,
            logged_out,
            source,
            pages,
            http,
            headers,
            external_id,
            received_at,
            amount,
            currency,
            name,
            description,
        })
    }

    /// `read` and `url` of `[movements]`: the endpoint when the list is read over HTTP.
    fn read_http(&self, m: &RawMovements, json: bool, allowed_hosts: &[String]) -> Result<Option<String>, DefError> {
        match m.read.as_ref().map(|r| r.get_ref().as_str()) {
            None | Some("browser") => match &m.url {
                Some(u) => self.cx.err(span_of(u), "movements.url", "only with read = \"http\""),
                None => Ok(None),
            },
            Some("http") => {
                let at = m.read.as_ref().map(span_of).unwrap_or(None);
                if !json {
                    return self.cx.err(
                        at,
                        "movements.read",
                        "read = \"http\" reads a JSON response: give `capture` (+ `list`), not a table",
                    );
                }
                // Nothing of the page is left to drive: the list is one request.
                if m.goto.is_some() || !m.steps.is_empty() || m.next.is_some() || m.logged_out.is_some() {
                    return self.cx.err(
                        at,
                        "movements.read",
                        "with read = \"http\" the list is one request: no `goto`, `steps`, `next` or \
                         `logged_out` (a 401 or 403 is the bank's \"logged out\")",
                    );
                }
                let Some(url) = &m.url else {
                    return self
                        .cx
                        .err(at, "movements.url", "the JSON endpoint to read (\"/path\" or a URL)");
                };
                let probe = self.url_template(url, "movements.url")?;
                let text = &probe;
                let ok = if text.starts_with('/') {
                    true
                } else {
                    url::Url::parse(text).is_ok_and(|u| {
                        matches!(u.scheme(), "http" | "https")
                            && host_allowed(allowed_hosts, u.host_str().unwrap_or_default())
                    })
                };
                if !ok {
                    return self.cx.err(
                        span_of(url),
                        "movements.url",
                        "a path (\"/api/movements\") or an http(s) URL on one of `allowed_hosts`",
                    );
                }
                Ok(Some(url.get_ref().clone()))
            }
            Some(_) => {
                let at = m.read.as_ref().map(span_of).unwrap_or(None);
                self.cx.err(at, "movements.read", "\"browser\" or \"http\"")
            }
        }
    }

    fn field(&self, name: &str, f: &Spanned<RawField>, json: bool, default_parse: &str) -> Result<Field, DefError> {
        let path = format!("movements.fields.{name}");
        let span = span_of(f);
        let r = f.get_ref();
        let from = match (&r.attr, &r.text, &r.json, &r.hash) {
            (Some(a), None, None, None) if !json => FieldFrom::Attr(a.clone()),
            (None, Some(t), None, None) if !json => {
                if !t.get_ref().is_empty() && scraper::Selector::parse(t.get_ref()).is_err() {
                    return self.cx.err(
                        span_of(t),
                        &format!("{path}.text"),
                        format!("not a valid CSS selector: {:?}", t.get_ref()),
                    );
                }
                FieldFrom::Text(t.get_ref().clone())
            }
            (None, None, Some(p), None) if json => {
                if !(p.get_ref().is_empty() || p.get_ref().starts_with('/')) {
                    return self.cx.err(
                        span_of(p),
                        &format!("{path}.json"),
                        "a JSON pointer such as \"/amount\"",
                    );
                }
                FieldFrom::Json(p.get_ref().clone())
            }
            (None, None, None, Some(h)) if name == "external_id" && !h.is_empty() => FieldFrom::Hash(h.clone()),
            _ => {
                let want = if json { "`json`" } else { "`attr` or `text`" };
                return self.cx.err(
                    span,
                    &path,
                    format!("exactly one source: {want} (or `hash` for external_id)"),
                );
            }
        };
        let parse_name = r.parse.as_ref().map(|p| p.get_ref().as_str()).unwrap_or(default_parse);
        let single = |s: &Option<String>, default: char, what: &str| -> Result<Option<char>, DefError> {
            match s {
                None => Ok(Some(default)).map(|c| if default == '\0' { None } else { c }),
                Some(s) if s.chars().count() == 1 => Ok(s.chars().next()),
                Some(_) => self.cx.err(span.clone(), &format!("{path}.{what}"), "one character"),
            }
        };
        let parse = match parse_name {
            "text" => Parse::Text {
                regex: match &r.regex {
                    Some(re) => {
                        if regex_lite::Regex::new(re.get_ref()).is_err() {
                            return self.cx.err(
                                span_of(re),
                                &format!("{path}.regex"),
                                "not a valid regular expression",
                            );
                        }
                        Some(re.get_ref().clone())
                    }
                    None => None,
                },
            },
            "decimal" => Parse::Decimal {
                decimal: single(&r.decimal, '.', "decimal")?.unwrap_or('.'),
                thousands: single(&r.thousands, '\0', "thousands")?,
                negative: match r.negative.as_ref().map(|n| n.get_ref().as_str()) {
                    None | Some("minus") => Negative::Minus,
                    Some("parens") => Negative::Parens,
                    Some("suffix") => Negative::Suffix,
                    Some(_) => {
                        return self.cx.err(
                            r.negative.as_ref().map(|n| n.span()),
                            &format!("{path}.negative"),
                            "\"minus\", \"parens\" or \"suffix\"",
                        )
                    }
                },
            },
            "datetime" | "date" => {
                let format = r.format.clone().unwrap_or_else(|| {
                    if parse_name == "date" {
                        "%Y-%m-%d".into()
                    } else {
                        "rfc3339".into()
                    }
                });
                let zone =
                    match &r.timezone {
                        Some(tz) => match parse_zone(tz.get_ref()) {
                            Some(z) => z,
                            None => return self.cx.err(
                                span_of(tz),
                                &format!("{path}.timezone"),
                                "UTC, a fixed offset such as \"-03:00\" or an IANA zone such as \"America/Montevideo\"",
                            ),
                        },
                        None => Zone::Fixed(chrono::Offset::fix(&chrono::Utc)),
                    };
                if parse_name == "date" {
                    Parse::Date { format, zone }
                } else {
                    Parse::DateTime { format, zone }
                }
            }
            "iso4217" => Parse::Currency {
                map: r.map.clone().unwrap_or_default(),
            },
            _ => {
                return self.cx.err(
                    r.parse.as_ref().map(|p| p.span()),
                    &format!("{path}.parse"),
                    "one of text, decimal, datetime, date, iso4217",
                )
            }
        };
        let empty_none = match r.empty.as_ref().map(|e| e.get_ref().as_str()) {
            None => false,
            Some("none") if name == "name" => true,
            Some(_) => {
                return self.cx.err(
                    r.empty.as_ref().map(|e| e.span()),
                    &format!("{path}.empty"),
                    "only `empty = \"none\"`, on name",
                )
            }
        };
        Ok(Field {
            from,
            parse,
            empty_none,
        })
    }
}

fn fill_value(cx: &Ctx<'_>, with: &Spanned<String>, field: &str) -> Result<FillValue, DefError> {
    let s = with.get_ref().trim();
    if let Some(inner) = s.strip_prefix("{{").and_then(|r| r.strip_suffix("}}")) {
        return match inner.trim() {
            "username" => Ok(FillValue::Username),
            "password" => Ok(FillValue::Password),
            other => match other.strip_prefix("extra.") {
                Some(k) if !k.is_empty() && k.chars().all(|c| c.is_ascii_alphanumeric() || c == '_') => {
                    Ok(FillValue::Extra(k.to_owned()))
                }
                _ => cx.err(
                    span_of(with),
                    field,
                    "templates are {{ username }}, {{ password }} or {{ extra.NAME }}",
                ),
            },
        };
    }
    if with.get_ref().contains("{{") {
        return cx.err(
            span_of(with),
            field,
            "a template fills the whole value: \"{{ password }}\"",
        );
    }
    Ok(FillValue::Literal(with.get_ref().clone()))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn builtin() -> &'static str {
        BUILTIN[0].1
    }

    #[test]
    fn paging_settings_need_next_and_default_to_ten_pages() {
        let no_next = builtin().replacen("next = \"button#next-page\"", "", 1);
        let err = parse("bank.toml", &no_next).expect_err("max_pages without next");
        assert_eq!(err.field, "movements.max_pages", "{err}");
        assert!(err.message.contains("only with `next`"), "{err}");
        let d = parse("bank.toml", &builtin().replacen("max_pages = 20", "", 1)).expect("valid");
        let pages = d.movements.pages.expect("paged");
        assert_eq!((pages.max_pages, pages.until_older_than), (DEFAULT_MAX_PAGES, None));
        let d = parse(
            "bank.toml",
            &builtin().replacen("max_pages = 20", "until_older_than = \"3d\"", 1),
        )
        .expect("valid");
        let pages = d.movements.pages.expect("paged");
        assert_eq!(pages.until_older_than, Some(Duration::from_secs(3 * 86_400)));
        let bare = builtin()
            .replacen("next = \"button#next-page\"", "", 1)
            .replacen("max_pages = 20", "", 1);
        assert_eq!(parse("bank.toml", &bare).expect("valid").movements.pages, None);
    }

    /// The built-in definition switched to `read = "http"` (its browser-only keys removed).
    fn read_http(url: &str) -> String {
        builtin()
            .replacen(
                "goto = \"/js/movements\"",
                &format!("read = \"http\"\nurl = \"{url}\""),
                1,
            )
            .replacen("next = \"button#next-page\"", "", 1)
            .replacen("max_pages = 20", "", 1)
            .replacen("logged_out = { url = \"/js/login$\" }", "", 1)
    }

    #[test]
    fn read_http_takes_a_json_endpoint_on_an_allowed_host_and_nothing_of_the_page() {
        let d = parse("bank.toml", &read_http("/js/api/movements")).expect("valid");
        assert_eq!(d.movements.http.as_deref(), Some("/js/api/movements"));
        assert!(d.movements.headers.is_empty());
        let with_headers = read_http("/x").replacen(
            "url = \"/x\"",
            "url = \"/x\"\nheaders = [\"Authorization\", \"x-api-key\"]",
            1,
        );
        let d = parse("bank.toml", &with_headers).expect("valid");
        assert_eq!(d.movements.headers, ["authorization", "x-api-key"]);
        assert_eq!(parse("bank.toml", builtin()).expect("valid").movements.http, None);
        let absolute = parse("bank.toml", &read_http("http://localhost:3100/js/api/movements")).expect("valid");
        assert_eq!(
            absolute.movements.http.as_deref(),
            Some("http://localhost:3100/js/api/movements")
        );
        let with_next = builtin().replacen("goto = \"/js/movements\"", "read = \"http\"\nurl = \"/x\"", 1);
        let no_url = read_http("/x").replacen("url = \"/x\"", "", 1);
        let url_alone = builtin().replacen("goto = \"/js/movements\"", "goto = \"/js/movements\"\nurl = \"/x\"", 1);
        let table = read_http("/x").replacen(
            "capture = { response = \"/js/api/movements\", status = 200 }",
            "table = \"#movements\"\nrows = \"#movements tbody tr\"",
            1,
        );
        for (text, field, says) in [
            (read_http("https://bank.example/api"), "movements.url", "allowed_hosts"),
            (read_http("ftp://127.0.0.1/api"), "movements.url", "allowed_hosts"),
            (read_http("api/movements"), "movements.url", "a path"),
            (with_next, "movements.read", "one request"),
            (no_url, "movements.url", "JSON endpoint"),
            (url_alone, "movements.url", "only with read"),
            (
                builtin().replacen("max_pages = 20", "max_pages = 20\nheaders = [\"authorization\"]", 1),
                "movements.headers",
                "only with read",
            ),
            (
                read_http("/x").replacen("url = \"/x\"", "url = \"/x\"\nheaders = [\"cookie\"]", 1),
                "movements.headers",
                "not cookie",
            ),
            (
                read_http("/x").replacen("url = \"/x\"", "url = \"/x\"\nheaders = [\"x api\"]", 1),
                "movements.headers",
                "header names",
            ),
            (
                read_http("/x").replacen("url = \"/x\"", "url = \"/x\"\nheaders = []", 1),
                "movements.headers",
                "header names",
            ),
            (table, "movements.read", "JSON response"),
            (
                read_http("/x").replacen("read = \"http\"", "read = \"curl\"", 1),
                "movements.read",
                "\"browser\" or \"http\"",
            ),
        ] {
            let err = parse("bank.toml", &text).expect_err(field);
            assert_eq!(err.field, field, "{err}");
            assert!(err.message.contains(says), "{err}");
            assert!(err.line > 0, "a line: {err}");
        }
    }

    #[test]
    fn the_builtin_definition_is_valid() {
        let d = parse("builtin:sandbox-js.toml", builtin()).expect("valid");
        assert_eq!(d.code, "sandbox-js");
        assert_eq!(d.login.len(), 5);
        assert!(d.otp.is_some());
        assert!(matches!(d.movements.source, Source::Json { .. }));
    }

    /// Each case edits the built-in definition and expects an error naming the line and field.
    #[test]
    fn errors_name_file_line_and_field() {
        let line_of = |needle: &str| builtin().lines().position(|l| l.contains(needle)).expect("needle") + 1;
        let cases: &[(&str, &str, &str, &str)] = &[
            // (replace, with, field, message fragment)
            (
                "fill = \"#login-form input[name=username]\"",
                "fil = \"#login-form input[name=username]\"",
                "fil",
                "unknown field",
            ),
            ("version = \"1.0.0\"", "version = \"one\"", "version", "semver"),
            ("format = 1", "format = 2", "format", "format = 1"),
            ("code = \"sandbox-js\"", "code = \"Sandbox JS\"", "code", "[a-z0-9_-]"),
            (
                "goto = \"/js/login\"",
                "goto = \"https://evil.example/js/login\"",
                "login[0].goto",
                "allowed_hosts",
            ),
            (
                "with = \"{{ password }}\"",
                "with = \"{{ pasword }}\"",
                "login[2].with",
                "templates",
            ),
            (
                "click = \"#login-form button[type=submit]\"",
                "click = \"#login-form >> button\"",
                "login[3].click",
                "CSS selector",
            ),
            (
                "result = \"retry\"",
                "result = \"retry-later\"",
                "outcome[3].result",
                "one of",
            ),
            ("step = \"15s\"", "step = \"fifteen\"", "timeouts.step", "duration"),
            (
                "max_pages = 20",
                "max_pages = 1",
                "movements.max_pages",
                "from 2 to 100",
            ),
            (
                "max_pages = 20",
                "max_pages = 101",
                "movements.max_pages",
                "from 2 to 100",
            ),
            (
                "next = \"button#next-page\"",
                "next = \"button##next\"",
                "movements.next",
                "CSS selector",
            ),
            (
                "amount = { json = \"/amount\", parse = \"decimal\" }",
                "amount = { json = \"/amount\", parse = \"float\" }",
                "movements.fields.amount.parse",
                "one of",
            ),
            (
                "{ when = { visible = \"form#otp-form\" }, then = \"otp\" }",
                "{ when = { visible = \"form#otp-form\" }, then = \"2fa\" }",
                "login[4].branch[1].then",
                "\"otp\"",
            ),
        ];
        for (from, to, field, fragment) in cases {
            assert!(builtin().contains(from), "{from}");
            let text = builtin().replacen(from, to, 1);
            let err = parse("bank.toml", &text).expect_err(to);
            assert_eq!(err.file, "bank.toml");
            assert_eq!(&err.field, field, "{to}: {err}");
            assert!(err.message.contains(fragment), "{to}: {err}");
            assert_eq!(err.line, line_of(from), "{to}: {err}");
        }
    }

    #[test]
    fn structural_errors_name_the_field() {
        let cases: &[(&str, &str, &str)] = &[
            ("[otp]", "[otp_block]", "otp_block"),
            ("input = \"form#otp-form input[name=code]\"\n", "", "otp"),
            (
                "capture = { response = \"/js/api/movements\", status = 200 }",
                "",
                "movements",
            ),
            ("external_id = { json = \"/id\" }\n", "", "movements.fields.external_id"),
        ];
        for (from, to, field) in cases {
            assert!(builtin().contains(from), "{from}");
            let err = parse("b.toml", &builtin().replacen(from, to, 1)).expect_err(from);
            assert_eq!(&err.field, field, "{from}: {err}");
        }
        // Credentials are never templated into a script.
        let text = builtin().replacen(
            "[[logout]]\nclick = \"#logout\"",
            "[[logout]]\neval = \"send('{{ password }}')\"",
            1,
        );
        let err = parse("b.toml", &text).expect_err("eval template");
        assert_eq!(err.field, "logout[0].eval");
    }

    /// `[session] remember`: cookies, localStorage keys or both; bad patterns name the field
    /// and the line.
    #[test]
    fn remember_takes_cookie_and_local_storage_patterns() {
        let line =
            "remember = { cookies = [\"sandbox_device\"], local_storage = [\"sandbox_device*\"], ttl = \"90d\" }";
        assert!(builtin().contains(line));
        let d = parse("bank.toml", builtin()).expect("valid");
        let r = d.remember.expect("remember");
        assert_eq!(r.local_storage, ["sandbox_device*"]);
        assert!(r.keeps_key("sandbox_device_token") && !r.keeps_key("theme"));
        assert!(r.keeps("sandbox_device") && !r.keeps("sandbox_device_token"));
        let only_storage = builtin().replacen(line, "remember = { local_storage = [\"trusted_*\"] }", 1);
        let r = parse("bank.toml", &only_storage)
            .expect("valid")
            .remember
            .expect("remember");
        assert!(r.cookies.is_empty());
        assert_eq!(r.ttl, Duration::from_secs(90 * 86_400));
        let remember_line = builtin()
            .lines()
            .position(|l| l.starts_with("remember ="))
            .expect("line")
            + 1;
        for (with, field, says) in [
            (
                "remember = { ttl = \"90d\" }",
                "session.remember",
                "`cookies`, `local_storage`",
            ),
            (
                "remember = { local_storage = [] }",
                "session.remember.local_storage",
                "localStorage key",
            ),
            (
                "remember = { local_storage = [\"*\"] }",
                "session.remember.local_storage",
                "not only `*`",
            ),
            (
                "remember = { local_storage = [\"\"] }",
                "session.remember.local_storage",
                "not empty",
            ),
            (
                "remember = { local_storage = [\"a\\u0000\"] }",
                "session.remember.local_storage",
                "localStorage",
            ),
            (
                "remember = { cookies = [\"a=b\"] }",
                "session.remember.cookies",
                "cookie names",
            ),
            (
                "remember = { cookies = [\"a b\"] }",
                "session.remember.cookies",
                "cookie names",
            ),
            (
                "remember = { cookies = [\"**\"] }",
                "session.remember.cookies",
                "cookie names",
            ),
            (
                "remember = { cookies = [\"d\"], localstorage = [\"k\"] }",
                "localstorage",
                "unknown field",
            ),
        ] {
            let err = parse("bank.toml", &builtin().replacen(line, with, 1)).expect_err(with);
            assert_eq!(err.field, field, "{with}: {err}");
            assert!(err.message.contains(says), "{with}: {err}");
            assert_eq!(err.line, remember_line, "{with}: {err}");
        }
    }

    /// `eval … as` variables: names, where they may be used, and what is refused.
    #[test]
    fn eval_variables_are_declared_before_use_and_urls_take_only_them() {
        let branch = "[[login]]\nbranch = [";
        assert!(builtin().contains(branch));
        let with_eval = |eval: &str| builtin().replacen(branch, &format!("[[login]]\n{eval}\n\n{branch}"), 1);
        // Valid: a variable set in the login, used by a condition and by the movements URL.
        let ok = with_eval("eval = \"document.title\"\nas = \"title\"")
            .replacen(
                "goto = \"/js/movements\"",
                "goto = \"/js/movements?t={{ vars.title }}\"",
                1,
            )
            .replacen(
                "{ when = { visible = \"form#otp-form\" }, then = \"otp\" }",
                "{ when = { var = \"title\", equals = \"x\" }, then = \"otp\" }",
                1,
            );
        let d = parse("bank.toml", &ok).expect("valid");
        assert!(matches!(&d.login[4].action, Action::Eval { into: Some(n), .. } if n == "title"));
        let Action::Branch(arms) = &d.login[5].action else {
            panic!("branch")
        };
        assert_eq!(
            arms[1].0,
            Cond::Var {
                name: "title".into(),
                equals: Some(serde_json::json!("x"))
            }
        );
        assert_eq!(d.movements.goto.as_deref(), Some("/js/movements?t={{ vars.title }}"));
        let line_of = |text: &str, needle: &str| text.lines().position(|l| l.contains(needle)).expect("needle") + 1;
        let cases: Vec<(String, &str, &str, &str)> = vec![
            (
                with_eval("eval = \"1\"\nas = \"Bad-Name\""),
                "as = \"Bad-Name\"",
                "login[4].as",
                "variable name",
            ),
            (
                with_eval("goto = \"/x\"\nas = \"v\""),
                "as = \"v\"",
                "login[4].as",
                "belongs to an eval",
            ),
            (
                builtin().replacen("{ visible = \"form#otp-form\" }", "{ var = \"nope\" }", 1),
                "var = \"nope\"",
                "login[4].branch[1].when.var",
                "no `eval` step sets",
            ),
            (
                builtin()
                    .replacen("goto = \"/js/login\"", "goto = \"/js/{{ vars.later }}\"", 1)
                    .replacen(
                        branch,
                        &format!("[[login]]\neval = \"1\"\nas = \"later\"\n\n{branch}"),
                        1,
                    ),
                "goto = \"/js/{{ vars.later }}\"",
                "login[0].goto",
                "no earlier `eval` step sets",
            ),
            (
                builtin().replacen("goto = \"/js/login\"", "goto = \"/js/login?u={{ password }}\"", 1),
                "{{ password }}",
                "login[0].goto",
                "{{ vars.NAME }} only",
            ),
            (
                with_eval("eval = \"'h'\"\nas = \"h\"").replacen(
                    "goto = \"/js/movements\"",
                    "goto = \"https://{{ vars.h }}.example/\"",
                    1,
                ),
                "{{ vars.h }}.example",
                "movements.goto",
                "allowed_hosts",
            ),
        ];
        for (text, at, field, says) in cases {
            let err = parse("bank.toml", &text).expect_err(field);
            assert_eq!(err.field, field, "{err}");
            assert!(err.message.contains(says), "{err}");
            assert_eq!(err.line, line_of(&text, at), "{err}");
        }
        // A read's own variables last for that read: the logout cannot use them.
        let read_var = builtin()
            .replacen(
                "goto = \"/js/movements\"",
                "goto = \"/js/movements\"\nsteps = [{ eval = \"1\", as = \"m\" }]",
                1,
            )
            .replacen(
                "[[logout]]\nclick = \"#logout\"",
                "[[logout]]\ngoto = \"/js/{{ vars.m }}\"",
                1,
            );
        let err = parse("bank.toml", &read_var).expect_err("a read's variable in the logout");
        assert_eq!(err.field, "logout[0].goto", "{err}");
        assert!(err.message.contains("no earlier `eval` step sets \"m\""), "{err}");
        let err = parse(
            "bank.toml",
            &builtin().replacen("{ visible = \"form#otp-form\" }", "{ equals = 1 }", 1),
        )
        .expect_err("equals alone");
        assert_eq!(err.field, "login[4].branch[1].when.equals", "{err}");
    }

    #[test]
    fn templates_expand_percent_encoded_and_refuse_what_is_not_a_scalar() {
        let vars: BTreeMap<String, serde_json::Value> = [
            ("s".to_owned(), serde_json::json!("a b/c?d=e&f+g")),
            ("n".to_owned(), serde_json::json!(2)),
            ("t".to_owned(), serde_json::json!(true)),
            ("o".to_owned(), serde_json::json!({"a": 1})),
            ("z".to_owned(), serde_json::Value::Null),
        ]
        .into_iter()
        .collect();
        assert_eq!(
            expand("/p/{{ vars.s }}?n={{vars.n}}&t={{ vars.t }}", &vars).expect("expands"),
            "/p/a%20b%2Fc%3Fd%3De%26f%2Bg?n=2&t=true"
        );
        for (t, says) in [
            ("/{{ vars.o }}", "not a string"),
            ("/{{ vars.z }}", "not set"),
            ("/{{ vars.missing }}", "not set"),
        ] {
            assert!(expand(t, &vars).expect_err(t).contains(says), "{t}");
        }
        assert_eq!(
            template_vars("/a/{{ vars.x }}/{{ vars.y_2 }}").expect("ok"),
            ["x", "y_2"]
        );
        for bad in [
            "/{{ username }}",
            "/{{ vars.X }}",
            "/{{ vars.x",
            "/x }}",
            "/{{ extra.k }}",
        ] {
            assert!(template_vars(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn keep_alive_is_reads_or_a_timer_for_the_watch_rules() {
        let watch = "watch = [{ when = { visible = \"#session-timeout\" }, click = \"button#stay\" }]";
        assert!(builtin().contains(watch));
        let with = |k: &str| builtin().replacen(watch, &format!("{watch}\nkeep_alive = \"{k}\""), 1);
        assert_eq!(parse("b.toml", builtin()).expect("valid").keep_alive, None);
        assert_eq!(parse("b.toml", &with("reads")).expect("valid").keep_alive, None);
        assert_eq!(
            parse("b.toml", &with("4m")).expect("valid").keep_alive,
            Some(Duration::from_secs(240))
        );
        let no_watch = with("4m").replacen(watch, "", 1);
        let http = with("4m")
            .replacen("goto = \"/js/movements\"", "read = \"http\"\nurl = \"/x\"", 1)
            .replacen("next = \"button#next-page\"", "", 1)
            .replacen("max_pages = 20", "", 1)
            .replacen("logged_out = { url = \"/js/login$\" }", "", 1);
        for (text, says) in [
            (with("often"), "a duration"),
            (with("50ms"), "from 100ms to 1h"),
            (with("2h"), "from 100ms to 1h"),
            (no_watch, "give [session] watch"),
            (http, "keep_alive = \"reads\""),
        ] {
            let err = parse("b.toml", &text).expect_err(says);
            assert_eq!(err.field, "session.keep_alive", "{err}");
            assert!(err.message.contains(says), "{err}");
            let line = text.lines().position(|l| l.starts_with("keep_alive")).expect("line") + 1;
            assert_eq!(err.line, line, "{err}");
        }
    }

    #[test]
    fn hosts_and_durations() {
        let hosts = vec!["bank.example".to_owned(), "*.cdn.example".to_owned()];
        assert!(host_allowed(&hosts, "bank.example"));
        assert!(host_allowed(&hosts, "BANK.example."));
        assert!(host_allowed(&hosts, "a.cdn.example"));
        assert!(!host_allowed(&hosts, "evilbank.example"));
        assert!(!host_allowed(&hosts, "cdn.example.evil"));
        assert_eq!(parse_duration("500ms"), Some(Duration::from_millis(500)));
        assert_eq!(parse_duration("2m"), Some(Duration::from_secs(120)));
        assert_eq!(parse_duration("0s"), None);
        assert_eq!(parse_duration("5"), None);
        assert_eq!(parse_offset("-03:00").map(|o| o.local_minus_utc()), Some(-3 * 3600));
        assert_eq!(parse_offset("America/Montevideo"), None);
        assert_eq!(
            parse_zone("America/Montevideo"),
            Some(Zone::Iana(chrono_tz::America::Montevideo))
        );
        assert_eq!(
            parse_zone("-03:00"),
            parse_offset("-03:00").map(Zone::Fixed),
            "offsets stay fixed"
        );
        assert_eq!(parse_zone("Mars/Olympus_Mons"), None);
        assert_eq!(parse_zone("-3"), None);
    }
}
