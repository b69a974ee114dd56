//! Reading the customer's pending-orders response (docs/reconciliation.md §3.3–§3.5): one page of JSON into raw
//! items, then item validation into [`Order`]s and per-item [`Issue`]s.
//!
//! Money never passes through a binary float: every item stays a [`RawValue`] (its exact JSON
//! text) until validation, and amounts are read from that text by [`parse_decimal_text`], our
//! own parser of the JSON number grammar (`rust_decimal`'s `FromStr` accepts `_` separators,
//! which the spec refuses).
//!
//! Parsing and validation are split so the poller can gather every page of a poll first and
//! validate once: duplicate `external_id`s are a property of the whole response, not a page.
//!
//! Decisions where the spec is silent (also in the report of this module's commit):
//! - equal amounts have one canonical text: trailing zeros are stripped before the scale check
//!   and the canonical text (`"1.50000"` is valid and becomes `"1.50"`);
//! - a required field that is `null` is `missing_field`; a `null` or blank `reference` is absent;
//! - an integer `external_id` may carry a sign (`-0` is `"0"`); a float one is `bad_type`;
//! - a key given twice in one item makes the item invalid (`duplicate_field`): JSON leaves the
//!   winner undefined, and money must not depend on a parser's choice;
//! - an empty-string `next_cursor` ends the pages like `null`.

use std::collections::HashSet;

use rust_decimal::Decimal;
use serde::de::{Deserializer, IgnoredAny, MapAccess, Visitor};
use serde::{Deserialize, Serialize};
use serde_json::value::RawValue;

/// Most item problems kept in a poll's `issues` (docs/reconciliation.md §2 `conciliation_polls.issues`); all are counted.
pub const MAX_ISSUES: usize = 50;
/// Longest `external_id`, in characters (docs/reconciliation.md §2).
pub const MAX_EXTERNAL_ID_CHARS: usize = 128;
/// Longest order `name`, in characters after trimming (docs/reconciliation.md §3.5).
pub const MAX_NAME_CHARS: usize = 200;
/// Longest `reference`, in characters after trimming (docs/reconciliation.md §3.5).
pub const MAX_REFERENCE_CHARS: usize = 64;
/// Most decimals an amount may carry once trailing zeros are stripped (docs/reconciliation.md §2).
pub const MAX_AMOUNT_SCALE: u32 = 4;
/// Largest accepted amount: 10^15 (docs/reconciliation.md §3.5).
pub const MAX_AMOUNT: Decimal = Decimal::from_parts(0xA4C6_8000, 0x38D7E, 0, false, 0);

/// Why a page as a whole was refused; the poll fails and changes nothing (docs/reconciliation.md §3.4).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PageError {
    /// Not UTF-8, or not one well-formed JSON document.
    #[error("the response is not valid JSON")]
    InvalidJson,
    /// Well-formed JSON, but neither an array nor an object with an array `data`.
    #[error("the response has an unexpected shape: {0}")]
    InvalidShape(&'static str),
}

impl PageError {
    /// The poll failure code (`conciliation_polls.error`).
    pub fn code(&self) -> &'static str {
        match self {
            PageError::InvalidJson => "invalid_json",
            PageError::InvalidShape(_) => "invalid_shape",
        }
    }
}

/// One page of a pending-orders response: its items still as JSON text, and the cursor of the
/// next page if the customer paginates.
#[derive(Debug)]
pub struct Page {
    pub items: Vec<Box<RawValue>>,
    pub next_cursor: Option<String>,
}

/// A valid pending order.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Order {
    pub external_id: String,
    /// Normalized (no trailing zeros); compare with `==`, which ignores the scale anyway.
    pub amount: Decimal,
    /// [`canonical_amount`] of `amount`: what is stored and sent (`"1500.00"`).
    pub amount_text: String,
    /// Three ASCII uppercase letters.
    pub currency: String,
    /// Trimmed, as sent otherwise.
    pub name: String,
    pub reference: Option<String>,
}

/// One invalid item, as the poll log records it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Issue {
    /// 0-based position in the response (across pages, in page order).
    pub index: usize,
    /// The item's `external_id` when it could be read: such an item still counts as present.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub external_id: Option<String>,
    pub code: &'static str,
}

/// The outcome of validating a whole response.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Validated {
    /// Valid items, in response order, one per `external_id`.
    pub orders: Vec<Order>,
    /// The first [`MAX_ISSUES`] invalid items.
    pub issues: Vec<Issue>,
    /// How many items were invalid in all (may exceed `issues.len()`).
    pub invalid: usize,
    /// The readable `external_id`s first listed by an invalid item, once each, in first-seen
    /// order: with the valid orders' ids, the ids present in the list (an order absent from both
    /// may be cancelled, nothing else may). Not a copy of every order's id: a 50,000-order poll
    /// held one (about 3 MB) until its pass's end.
    pub also_present: Vec<String>,
}

/// Parses one page (docs/reconciliation.md §3.3): UTF-8 with an optional BOM, one JSON document whose top level is
/// an array of items or an object with an array `data` and an optional `next_cursor`.
pub fn parse_page(body: &[u8]) -> Result<Page, PageError> {
    let body = body.strip_prefix(b"\xEF\xBB\xBF").unwrap_or(body);
    let text = std::str::from_utf8(body).map_err(|_| PageError::InvalidJson)?;
    // Syntax first, so every later failure is about the shape, never the syntax.
    let doc: &RawValue = serde_json::from_str(text).map_err(|_| PageError::InvalidJson)?;
    match first_byte(doc) {
        b'[' => Ok(Page {
            items: items_of(doc)?,
            next_cursor: None,
        }),
        b'{' => {
            let envelope: Envelope<'_> =
                serde_json::from_str(doc.get()).map_err(|_| PageError::InvalidShape("the object cannot be read"))?;
            let data = envelope
                .data
                .ok_or(PageError::InvalidShape("the object has no `data` array"))?;
            if first_byte(data) != b'[' {
                return Err(PageError::InvalidShape("`data` is not an array"));
            }
            let next_cursor = match envelope.next_cursor {
                None => None,
                Some(raw) if first_byte(raw) == b'"' => {
                    let cursor: String = serde_json::from_str(raw.get())
                        .map_err(|_| PageError::InvalidShape("`next_cursor` cannot be read"))?;
                    Some(cursor).filter(|c| !c.is_empty())
                }
                Some(_) => return Err(PageError::InvalidShape("`next_cursor` is neither a string nor null")),
            };
            Ok(Page {
                items: items_of(data)?,
                next_cursor,
            })
        }
        _ => Err(PageError::InvalidShape(
            "the top level is neither an array nor an object",
        )),
    }
}

#[derive(Deserialize)]
struct Envelope<'a> {
    #[serde(borrow, default)]
    data: Option<&'a RawValue>,
    #[serde(borrow, default)]
    next_cursor: Option<&'a RawValue>,
}

fn items_of(array: &RawValue) -> Result<Vec<Box<RawValue>>, PageError> {
    serde_json::from_str(array.get()).map_err(|_| PageError::InvalidShape("the item array cannot be read"))
}

/// The first byte of a JSON value's text (`RawValue` text carries no leading whitespace, but be
/// tolerant anyway); 0 for an empty text, which no valid `RawValue` has.
fn first_byte(raw: &RawValue) -> u8 {
    raw.get().trim_start().bytes().next().unwrap_or(0)
}

/// Validates every item of a response (docs/reconciliation.md §3.5). `items` are all the pages' items in order.
pub fn validate(items: &[Box<RawValue>]) -> Validated {
    let mut out = Validated::default();
    let mut seen: HashSet<String> = HashSet::with_capacity(items.len());
    for (index, item) in items.iter().enumerate() {
        let (external_id, result) = validate_item(item);
        let result = match &external_id {
            Some(id) if !seen.insert(id.clone()) => Err("duplicate_external_id"),
            Some(id) => {
                if result.is_err() {
                    out.also_present.push(id.clone());
                }
                result
            }
            None => result,
        };
        match result {
            Ok(order) => out.orders.push(order),
            Err(code) => {
                out.invalid += 1;
                if out.issues.len() < MAX_ISSUES {
                    out.issues.push(Issue {
                        index,
                        external_id,
                        code,
                    });
                }
            }
        }
    }
    out
}

/// The raw fields of one item; unknown keys are skipped unread.
#[derive(Default)]
struct ItemFields<'a> {
    external_id: Option<&'a RawValue>,
    amount: Option<&'a RawValue>,
    currency: Option<&'a RawValue>,
    name: Option<&'a RawValue>,
    reference: Option<&'a RawValue>,
    duplicate: Option<&'static str>,
}

impl<'de> Deserialize<'de> for ItemFields<'de> {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct ItemVisitor;
        impl<'de> Visitor<'de> for ItemVisitor {
            type Value = ItemFields<'de>;
            fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
                f.write_str("an order object")
            }
            fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Self::Value, A::Error> {
                let mut fields = ItemFields::default();
                while let Some(key) = map.next_key::<String>()? {
                    let (name, slot) = match key.as_str() {
                        "external_id" => ("external_id", &mut fields.external_id),
                        "amount" => ("amount", &mut fields.amount),
                        "currency" => ("currency", &mut fields.currency),
                        "name" => ("name", &mut fields.name),
                        "reference" => ("reference", &mut fields.reference),
                        _ => {
                            map.next_value::<IgnoredAny>()?;
                            continue;
                        }
                    };
                    let value = map.next_value::<&'de RawValue>()?;
                    if slot.is_some() {
                        fields.duplicate.get_or_insert(name);
                    } else {
                        *slot = Some(value);
                    }
                }
                Ok(fields)
            }
        }
        deserializer.deserialize_map(ItemVisitor)
    }
}

/// Validates one item: its readable `external_id` (if any) and the order or an issue code.
fn validate_item(item: &RawValue) -> (Option<String>, Result<Order, &'static str>) {
    if first_byte(item) != b'{' {
        return (None, Err("not_an_object"));
    }
    let Ok(fields) = serde_json::from_str::<ItemFields<'_>>(item.get()) else {
        // Unreachable for text serde_json already accepted as an object; refuse, never guess.
        return (None, Err("not_an_object"));
    };
    let external_id = match fields.duplicate {
        Some("external_id") => return (None, Err("duplicate_field")),
        _ => read_external_id(fields.external_id),
    };
    let external_id = match external_id {
        Ok(id) => id,
        Err(code) => return (None, Err(code)),
    };
    let order = (|| {
        if fields.duplicate.is_some() {
            return Err("duplicate_field");
        }
        let amount = read_amount(fields.amount)?;
        Ok(Order {
            external_id: external_id.clone(),
            amount_text: canonical_amount(amount),
            amount,
            currency: read_currency(fields.currency)?,
            name: read_name(fields.name)?,
            reference: read_reference(fields.reference)?,
        })
    })();
    (Some(external_id), order)
}

/// A required field's text, or `missing_field` when it is absent or `null`.
fn required(raw: Option<&RawValue>) -> Result<&str, &'static str> {
    match raw.map(|r| r.get().trim()) {
        None | Some("null") => Err("missing_field"),
        Some(text) => Ok(text),
    }
}

/// A JSON string's content, or `bad_type` for any other JSON value.
fn string_of(text: &str) -> Result<String, &'static str> {
    if !text.starts_with('"') {
        return Err("bad_type");
    }
    serde_json::from_str(text).map_err(|_| "bad_type")
}

fn read_external_id(raw: Option<&RawValue>) -> Result<String, &'static str> {
    let text = required(raw)?;
    let id = match text.as_bytes().first() {
        Some(b'"') => string_of(text)?.trim().to_owned(),
        Some(b'-' | b'0'..=b'9') => {
            // Integers only: an id written as `12.0` or `1e3` is a float the customer's system
            // may have rounded; refusing beats registering the wrong id.
            if text.bytes().any(|b| matches!(b, b'.' | b'e' | b'E')) {
                return Err("bad_type");
            }
            if text == "-0" {
                "0".to_owned()
            } else {
                text.to_owned()
            }
        }
        _ => return Err("bad_type"),
    };
    // A control character (a NUL above all: PostgreSQL text cannot hold one) is never stored:
    // the order could not be found by its id, nor kept on every backend.
    if id.is_empty() || id.chars().count() > MAX_EXTERNAL_ID_CHARS || id.chars().any(char::is_control) {
        return Err("bad_external_id");
    }
    Ok(id)
}

fn read_amount(raw: Option<&RawValue>) -> Result<Decimal, &'static str> {
    let text = required(raw)?;
    let value = match text.as_bytes().first() {
        Some(b'"') => parse_decimal_text(&string_of(text)?),
        Some(b'-' | b'0'..=b'9') => parse_decimal_text(text),
        _ => return Err("bad_type"),
    };
    match value {
        Some(d) if d > Decimal::ZERO && d <= MAX_AMOUNT && d.scale() <= MAX_AMOUNT_SCALE => Ok(d),
        _ => Err("bad_amount"),
    }
}

fn read_currency(raw: Option<&RawValue>) -> Result<String, &'static str> {
    let currency = string_of(required(raw)?)?.trim().to_ascii_uppercase();
    // ASCII uppercasing only: `to_uppercase` would turn a stray `ß` into `SS`.
    if currency.len() == 3 && currency.bytes().all(|b| b.is_ascii_uppercase()) {
        Ok(currency)
    } else {
        Err("bad_currency")
    }
}

fn read_name(raw: Option<&RawValue>) -> Result<String, &'static str> {
    let name = string_of(required(raw)?)?;
    let name = name.trim();
    let chars = name.chars().count();
    if (1..=MAX_NAME_CHARS).contains(&chars)
        && name.chars().any(char::is_alphanumeric)
        && !name.chars().any(char::is_control)
    {
        Ok(name.to_owned())
    } else {
        Err("bad_name")
    }
}

fn read_reference(raw: Option<&RawValue>) -> Result<Option<String>, &'static str> {
    let Ok(text) = required(raw) else {
        return Ok(None);
    };
    let reference = string_of(text)?;
    let reference = reference.trim();
    match reference.chars().count() {
        // Many systems send `""` for "no reference"; that is not worth refusing the order over.
        0 => Ok(None),
        1..=MAX_REFERENCE_CHARS if !reference.chars().any(char::is_control) => Ok(Some(reference.to_owned())),
        _ => Err("bad_reference"),
    }
}

/// The canonical text of an amount: trailing zeros stripped, then at least 2 decimals
/// (`1500` → `"1500.00"`, `12.3450` → `"12.345"`, `0.0001` → `"0.0001"`). Also the text of the
/// JSON numbers in webhook bodies.
pub fn canonical_amount(d: Decimal) -> String {
    let mut d = d.normalize();
    if d.scale() < 2 {
        d.rescale(2);
    }
    d.to_string()
}

/// Parses an unsigned exact decimal written in the JSON number grammar without its sign:
/// `digits[.digits][(e|E)[+|-]digits]` (leading zeros tolerated, for strings). Nothing else:
/// no sign, spaces, grouping separators, `_`, hex, `NaN` or `Infinity`. The result is normalized
/// (no trailing zeros), so `1.50000` has scale 1. `None` when malformed or beyond `Decimal`'s
/// range (28 digits).
pub fn parse_decimal_text(s: &str) -> Option<Decimal> {
    if s.starts_with('-') {
        return None;
    }
    parse_signed_decimal(s)
}

/// Like [`parse_decimal_text`], with an optional leading `-` (bank movements: money out is
/// negative). `-0` is zero.
pub fn parse_signed_decimal(s: &str) -> Option<Decimal> {
    let bytes = s.as_bytes();
    let (negative, rest) = match bytes.split_first() {
        Some((b'-', rest)) => (true, rest),
        _ => (false, bytes),
    };
    let int_len = rest.iter().take_while(|b| b.is_ascii_digit()).count();
    if int_len == 0 {
        return None;
    }
    let (int_digits, mut rest) = rest.split_at(int_len);
    let mut frac_digits: &[u8] = &[];
    if let Some((b'.', after)) = rest.split_first() {
        let len = after.iter().take_while(|b| b.is_ascii_digit()).count();
        if len == 0 {
            return None;
        }
        (frac_digits, rest) = after.split_at(len);
    }
    let mut exponent: i64 = 0;
    if let Some((b'e' | b'E', after)) = rest.split_first() {
        let (exp_negative, after) = match after.split_first() {
            Some((b'-', a)) => (true, a),
            Some((b'+', a)) => (false, a),
            _ => (false, after),
        };
        let len = after.iter().take_while(|b| b.is_ascii_digit()).count();
        if len == 0 || len != after.len() {
            return None;
        }
        // Saturate: any exponent this large is out of range whatever the digits are.
        for &b in after {
            exponent = (exponent * 10 + i64::from(b - b'0')).min(1_000_000);
        }
        if exp_negative {
            exponent = -exponent;
        }
        rest = &[];
    }
    if !rest.is_empty() {
        return None;
    }
    // value = digits × 10^(exponent − frac_len), with the digits' zeros trimmed on both ends.
    let digits: Vec<u8> = int_digits.iter().chain(frac_digits).copied().collect();
    let start = digits.iter().position(|&b| b != b'0');
    let Some(start) = start else {
        return Some(Decimal::ZERO);
    };
    let end = digits.iter().rposition(|&b| b != b'0').map_or(digits.len(), |p| p + 1);
    let significant = &digits[start..end];
    exponent += (digits.len() - end) as i64 - frac_digits.len() as i64;
    const MAX_DIGITS: i64 = 28;
    let (zeros, scale) = if exponent >= 0 { (exponent, 0) } else { (0, -exponent) };
    if significant.len() as i64 + zeros > MAX_DIGITS + 1 || scale > MAX_DIGITS {
        return None;
    }
    let mut mantissa: i128 = 0;
    for &b in significant {
        mantissa = mantissa * 10 + i128::from(b - b'0');
    }
    for _ in 0..zeros {
        mantissa *= 10;
    }
    if negative {
        mantissa = -mantissa;
    }
    // Beyond 96 bits of mantissa (about 7.9 × 10^28) this refuses rather than rounds.
    let scale = u32::try_from(scale).ok()?;
    Decimal::try_from_i128_with_scale(mantissa, scale).ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn dec(s: &str) -> Decimal {
        parse_signed_decimal(s).unwrap_or_else(|| panic!("test decimal {s}"))
    }

    fn page(body: &str) -> Result<Page, PageError> {
        parse_page(body.as_bytes())
    }

    fn validated(body: &str) -> Validated {
        match parse_page(body.as_bytes()) {
            Ok(p) => validate(&p.items),
            Err(e) => panic!("test body refused: {e}"),
        }
    }

    /// The outcome of one item with `amount` written as `amount_json`.
    fn amount_outcome(amount_json: &str) -> Result<String, &'static str> {
        let body = format!(r#"[{{"external_id":"A","amount":{amount_json},"currency":"UYU","name":"Juan"}}]"#);
        let v = validated(&body);
        match (v.orders.first(), v.issues.first()) {
            (Some(o), None) => Ok(o.amount_text.clone()),
            (None, Some(i)) => Err(i.code),
            other => panic!("unexpected outcome for {amount_json}: {other:?}"),
        }
    }

    #[test]
    fn max_amount_is_ten_to_the_fifteen() {
        assert_eq!(MAX_AMOUNT, Decimal::from(1_000_000_000_000_000u64));
    }

    #[test]
    fn accepted_amount_forms() {
        for (json, text) in [
            ("1500", "1500.00"),
            ("1500.0", "1500.00"),
            ("1500.00", "1500.00"),
            (r#""1500.00""#, "1500.00"),
            (r#""1500""#, "1500.00"),
            ("1.5e3", "1500.00"),
            ("1.5E+3", "1500.00"),
            ("1E2", "100.00"),
            ("15e-1", "1.50"),
            (r#""1.5e3""#, "1500.00"),
            ("12.345", "12.345"),
            ("1500.005", "1500.005"),
            ("0.0001", "0.0001"),
            ("1.50000", "1.50"),
            ("1500.12340000", "1500.1234"),
            ("1000000000000000", "1000000000000000.00"),
            ("1e15", "1000000000000000.00"),
            (r#""0001500.5""#, "1500.50"),
        ] {
            assert_eq!(amount_outcome(json), Ok(text.to_owned()), "{json}");
        }
    }

    #[test]
    fn refused_amount_forms() {
        for (json, code) in [
            ("1500.00001", "bad_amount"),
            ("0.00001", "bad_amount"),
            ("-1", "bad_amount"),
            ("-1500.00", "bad_amount"),
            ("0", "bad_amount"),
            ("0.0", "bad_amount"),
            (r#""0""#, "bad_amount"),
            ("1e16", "bad_amount"),
            ("1000000000000000.01", "bad_amount"),
            ("1e999999999999999", "bad_amount"),
            ("1e-999999999999999", "bad_amount"),
            (r#""1,500.00""#, "bad_amount"),
            (r#""1.500,00""#, "bad_amount"),
            (r#""1_500""#, "bad_amount"),
            (r#"" 1500""#, "bad_amount"),
            (r#""1500 ""#, "bad_amount"),
            (r#""1 500""#, "bad_amount"),
            (r#""+1500""#, "bad_amount"),
            (r#""-1500""#, "bad_amount"),
            (r#""""#, "bad_amount"),
            (r#""0x10""#, "bad_amount"),
            (r#""NaN""#, "bad_amount"),
            (r#""Infinity""#, "bad_amount"),
            (r#"".5""#, "bad_amount"),
            (r#""5.""#, "bad_amount"),
            (r#""1e""#, "bad_amount"),
            (r#""$1500""#, "bad_amount"),
            (r#""1500 UYU""#, "bad_amount"),
            ("true", "bad_type"),
            ("[1500]", "bad_type"),
            (r#"{"value":1500}"#, "bad_type"),
            ("null", "missing_field"),
        ] {
            assert_eq!(amount_outcome(json), Err(code), "{json}");
        }
    }

    #[test]
    fn decimal_parser_is_exact() {
        assert_eq!(parse_decimal_text("1500"), parse_decimal_text("1500.00"));
        assert_ne!(parse_decimal_text("1500.005"), parse_decimal_text("1500.01"));
        assert_eq!(dec("0.1") + dec("0.2"), dec("0.3"));
        assert_eq!(parse_decimal_text("-5"), None);
        assert_eq!(parse_signed_decimal("-5.10"), Some(Decimal::new(-51, 1)));
        assert_eq!(parse_signed_decimal("-0"), Some(Decimal::ZERO));
        assert_eq!(parse_signed_decimal("--5"), None);
        assert_eq!(parse_signed_decimal("-"), None);
        assert_eq!(parse_signed_decimal(""), None);
        assert_eq!(dec("1.50000").scale(), 1);
        assert_eq!(dec("1500.00").scale(), 0);
        // 28 significant digits fit; a 30-digit integer does not.
        assert!(parse_decimal_text("1234567890123456789012345678").is_some());
        assert_eq!(parse_decimal_text("123456789012345678901234567890"), None);
        assert_eq!(parse_decimal_text("0.00000000000000000000000000001"), None);
        assert_eq!(parse_decimal_text("000.000e5"), Some(Decimal::ZERO));
    }

    #[test]
    fn canonical_amount_has_at_least_two_decimals() {
        for (input, text) in [
            ("1500", "1500.00"),
            ("1500.5", "1500.50"),
            ("12.345", "12.345"),
            ("0.0001", "0.0001"),
            ("-25.1", "-25.10"),
            ("1.2300", "1.23"),
        ] {
            assert_eq!(canonical_amount(dec(input)), text, "{input}");
        }
        // Whatever scale the decimal carries.
        assert_eq!(canonical_amount(Decimal::new(150_000, 2)), "1500.00");
        assert_eq!(canonical_amount(Decimal::new(1_500_000_000, 6)), "1500.00");
    }

    #[test]
    fn external_ids() {
        let outcome = |id_json: &str| {
            let body = format!(r#"[{{"external_id":{id_json},"amount":1,"currency":"UYU","name":"Juan"}}]"#);
            let v = validated(&body);
            match (v.orders.first(), v.issues.first()) {
                (Some(o), None) => Ok(o.external_id.clone()),
                (None, Some(i)) => Err(i.code),
                other => panic!("unexpected outcome for {id_json}: {other:?}"),
            }
        };
        assert_eq!(outcome(r#""ORDER-1""#), Ok("ORDER-1".into()));
        assert_eq!(outcome(r#""  ORDER-1 ""#), Ok("ORDER-1".into()));
        assert_eq!(outcome("1234"), Ok("1234".into()));
        assert_eq!(outcome("0"), Ok("0".into()));
        assert_eq!(outcome("-7"), Ok("-7".into()));
        assert_eq!(outcome("-0"), Ok("0".into()));
        assert_eq!(
            outcome("12345678901234567890123456789"),
            Ok("12345678901234567890123456789".into())
        );
        assert_eq!(outcome(&format!("\"{}\"", "x".repeat(128))), Ok("x".repeat(128)));
        assert_eq!(outcome(&format!("\"{}\"", "é".repeat(128))), Ok("é".repeat(128)));
        assert_eq!(outcome(&format!("\"{}\"", "x".repeat(129))), Err("bad_external_id"));
        assert_eq!(outcome(r#""""#), Err("bad_external_id"));
        assert_eq!(outcome(r#""   ""#), Err("bad_external_id"));
        assert_eq!(outcome(r#""a\u0000b""#), Err("bad_external_id"));
        assert_eq!(outcome(r#""tab\tid""#), Err("bad_external_id"));
        assert_eq!(outcome(r#""x\u007fy""#), Err("bad_external_id"));
        assert_eq!(outcome("12.0"), Err("bad_type"));
        assert_eq!(outcome("1e3"), Err("bad_type"));
        assert_eq!(outcome("true"), Err("bad_type"));
        assert_eq!(outcome(r#"["A"]"#), Err("bad_type"));
        assert_eq!(outcome("null"), Err("missing_field"));
    }

    #[test]
    fn other_fields() {
        let outcome = |fields: &str| {
            let body = format!(r#"[{{"external_id":"A","amount":"10.00",{fields}}}]"#);
            let v = validated(&body);
            match (v.orders.first(), v.issues.first()) {
                (Some(o), None) => Ok((o.currency.clone(), o.name.clone(), o.reference.clone())),
                (None, Some(i)) => Err(i.code),
                other => panic!("unexpected outcome for {fields}: {other:?}"),
            }
        };
        let ok = |c: &str, n: &str, r: Option<&str>| Ok((c.to_owned(), n.to_owned(), r.map(str::to_owned)));
        assert_eq!(
            outcome(r#""currency":" uyu ","name":" Juan Pérez ""#),
            ok("UYU", "Juan Pérez", None)
        );
        assert_eq!(
            outcome(r#""currency":"USD","name":"ACME","reference":" INV-77 ","extra":{"x":[1.5]}"#),
            ok("USD", "ACME", Some("INV-77"))
        );
        assert_eq!(
            outcome(r#""currency":"USD","name":"7","reference":null"#),
            ok("USD", "7", None)
        );
        assert_eq!(
            outcome(r#""currency":"USD","name":"7","reference":"  ""#),
            ok("USD", "7", None)
        );
        let long_name = "n".repeat(200);
        assert_eq!(
            outcome(&format!(r#""currency":"USD","name":"{long_name}""#)),
            ok("USD", &long_name, None)
        );
        let max_ref = "r".repeat(64);
        assert_eq!(
            outcome(&format!(r#""currency":"USD","name":"A","reference":"{max_ref}""#)),
            ok("USD", "A", Some(&max_ref))
        );
        for (fields, code) in [
            (r#""name":"Juan""#, "missing_field"),
            (r#""currency":null,"name":"Juan""#, "missing_field"),
            (r#""currency":"UYU""#, "missing_field"),
            (r#""currency":"US","name":"Juan""#, "bad_currency"),
            (r#""currency":"USDT","name":"Juan""#, "bad_currency"),
            (r#""currency":"U5D","name":"Juan""#, "bad_currency"),
            (r#""currency":"ßUD","name":"Juan""#, "bad_currency"),
            (r#""currency":840,"name":"Juan""#, "bad_type"),
            (r#""currency":"UYU","name":"   ""#, "bad_name"),
            (r#""currency":"UYU","name":"-- . --""#, "bad_name"),
            (r#""currency":"UYU","name":"Juan\u0000Perez""#, "bad_name"),
            (r#""currency":"UYU","name":"Juan\nPerez""#, "bad_name"),
            (
                r#""currency":"UYU","name":"Juan","reference":"ref\u0000""#,
                "bad_reference",
            ),
            (
                r#""currency":"UYU","name":"Juan","reference":"a\u0001b""#,
                "bad_reference",
            ),
            (r#""currency":"UYU","name":42"#, "bad_type"),
            (r#""currency":"UYU","name":"Juan","reference":7"#, "bad_type"),
            (r#""currency":"UYU","name":"Juan","currency":"USD""#, "duplicate_field"),
        ] {
            assert_eq!(outcome(fields), Err(code), "{fields}");
        }
        assert_eq!(
            outcome(&format!(r#""currency":"UYU","name":"{}""#, "n".repeat(201))),
            Err("bad_name")
        );
        assert_eq!(
            outcome(&format!(
                r#""currency":"UYU","name":"J","reference":"{}""#,
                "r".repeat(65)
            )),
            Err("bad_reference")
        );
    }

    #[test]
    fn duplicates_poison_items_and_presence() {
        let body = r#"[
            {"external_id":"A","amount":1,"currency":"UYU","name":"Juan"},
            7,
            {"external_id":"B","amount":"1,00","currency":"UYU","name":"Ana"},
            {"external_id":"A","amount":2,"currency":"UYU","name":"Juan"},
            {"amount":3,"currency":"UYU","name":"Sin Id"},
            {"external_id":"C","amount":3,"currency":"UYU","name":"Carla"},
            {"external_id":"B","amount":4,"currency":"UYU","name":"Ana"},
            {"external_id":"D","external_id":"E","amount":1,"currency":"UYU","name":"Dup"},
            {"external_id":"F","amount":1,"amount":2,"currency":"UYU","name":"Dup"},
            null,
            "G"
        ]"#;
        let v = validated(body);
        let ids: Vec<&str> = v.orders.iter().map(|o| o.external_id.as_str()).collect();
        assert_eq!(ids, ["A", "C"]);
        assert_eq!(v.orders[0].amount_text, "1.00");
        // B and F are present through their invalid first items; A and C as orders.
        assert_eq!(v.also_present, ["B", "F"]);
        let issue = |index: usize, id: Option<&str>, code: &'static str| Issue {
            index,
            external_id: id.map(str::to_owned),
            code,
        };
        assert_eq!(
            v.issues,
            [
                issue(1, None, "not_an_object"),
                issue(2, Some("B"), "bad_amount"),
                issue(3, Some("A"), "duplicate_external_id"),
                issue(4, None, "missing_field"),
                // The first B was invalid: it still counts, the second is the duplicate.
                issue(6, Some("B"), "duplicate_external_id"),
                issue(7, None, "duplicate_field"),
                issue(8, Some("F"), "duplicate_field"),
                issue(9, None, "not_an_object"),
                issue(10, None, "not_an_object"),
            ]
        );
        assert_eq!(v.invalid, 9);
    }

    #[test]
    fn issues_are_capped_but_counted() {
        let items: Vec<String> = (0..120)
            .map(|i| format!(r#"{{"external_id":{i},"amount":0}}"#))
            .collect();
        let v = validated(&format!("[{}]", items.join(",")));
        assert_eq!(v.invalid, 120);
        assert_eq!(v.issues.len(), MAX_ISSUES);
        assert_eq!(v.issues[49].index, 49);
        assert_eq!(v.also_present.len(), 120);
        assert!(v.orders.is_empty());
    }

    #[test]
    fn page_shapes() {
        let item = r#"{"external_id":"A","amount":1,"currency":"UYU","name":"Juan"}"#;
        let p = page(&format!("[{item}]")).map_err(|e| e.code());
        assert!(matches!(&p, Ok(p) if p.items.len() == 1 && p.next_cursor.is_none()));
        let p = page(&format!(r#"{{"data":[{item},{item}],"meta":{{"total":2.5}}}}"#));
        assert!(matches!(&p, Ok(p) if p.items.len() == 2 && p.next_cursor.is_none()));
        let p = page(&format!(r#"{{"data":[{item}],"next_cursor":"abc"}}"#));
        assert!(matches!(&p, Ok(p) if p.next_cursor.as_deref() == Some("abc")));
        let p = page(r#"{"data":[],"next_cursor":null}"#);
        assert!(matches!(&p, Ok(p) if p.items.is_empty() && p.next_cursor.is_none()));
        let p = page(r#"{"data":[],"next_cursor":""}"#);
        assert!(matches!(&p, Ok(p) if p.next_cursor.is_none()));
        assert!(matches!(page(" [ ] "), Ok(p) if p.items.is_empty()));
        // A BOM is tolerated.
        let mut with_bom = b"\xEF\xBB\xBF".to_vec();
        with_bom.extend_from_slice(format!("[{item}]").as_bytes());
        assert!(matches!(parse_page(&with_bom), Ok(p) if p.items.len() == 1));

        let code = |body: &[u8]| parse_page(body).map(|_| ()).map_err(|e| e.code());
        for body in [
            &b"{\"data\":{\"external_id\":\"A\"}}"[..],
            b"{\"data\":null}",
            b"{\"items\":[]}",
            b"{}",
            b"{\"data\":[],\"next_cursor\":5}",
            b"{\"data\":[],\"data\":[]}",
            b"42",
            b"\"orders\"",
            b"null",
            b"true",
        ] {
            assert_eq!(code(body), Err("invalid_shape"), "{}", String::from_utf8_lossy(body));
        }
        for body in [
            &b""[..],
            b"   ",
            b"[1,]",
            b"[1] [2]",
            b"{\"data\":[}",
            b"\xEF\xBB\xBF",
            b"[\"\xFF\"]",
            b"<html>502</html>",
            b"\xEF\xBB\xBF\xEF\xBB\xBF[]",
        ] {
            assert_eq!(code(body), Err("invalid_json"), "{}", String::from_utf8_lossy(body));
        }
    }

    #[test]
    fn amounts_never_go_through_a_float() {
        // 0.1 + 0.2 style values and 17 significant digits survive exactly.
        assert_eq!(amount_outcome("123456789012345.67"), Ok("123456789012345.67".into()));
        assert_eq!(amount_outcome("99999999999999.9999"), Ok("99999999999999.9999".into()));
        assert_eq!(amount_outcome("0.3"), Ok("0.30".into()));
    }
}
