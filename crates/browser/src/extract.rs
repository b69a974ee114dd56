//! Field parsers and JSON pointers (CONNECTORS §7): pure functions, table-tested. Amounts stay
//! decimal strings end to end (never a float); JSON numbers are read from the response's text.

use std::collections::HashMap;

use chrono::{DateTime, NaiveDate, NaiveDateTime, SecondsFormat, Utc};
use serde_json::value::RawValue;
use sha2::{Digest, Sha256};

use crate::def::{Field, FieldFrom, Movements, Negative, Parse, Zone};

/// One movement as the bank shows it, every field parsed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Movement {
    pub external_id: String,
    /// An exact decimal string: optional `-`, digits, optionally `.` and digits.
    pub amount: String,
    /// ISO 4217.
    pub currency: String,
    pub name: Option<String>,
    pub description: String,
    /// RFC 3339, UTC, whole seconds.
    pub received_at: String,
}

/// `text` trimmed with inner whitespace collapsed.
pub fn collapse(text: &str) -> String {
    text.split_whitespace().collect::<Vec<_>>().join(" ")
}

/// Parses an amount as the bank writes it into an exact decimal string.
pub fn parse_decimal(raw: &str, decimal: char, thousands: Option<char>, negative: &Negative) -> Result<String, String> {
    let mut s: String = raw.chars().filter(|c| !c.is_whitespace() && *c != '\u{a0}').collect();
    let mut neg = false;
    match negative {
        Negative::Parens => {
            if let Some(inner) = s.strip_prefix('(').and_then(|r| r.strip_suffix(')')) {
                neg = true;
                s = inner.to_owned();
            }
        }
        Negative::Suffix => {
            if let Some(inner) = s.strip_suffix('-') {
                neg = true;
                s = inner.to_owned();
            }
        }
        Negative::Minus => {}
    }
    if let Some(rest) = s.strip_prefix('-') {
        if neg {
            return Err(format!("{raw:?} is negative twice"));
        }
        neg = true;
        s = rest.to_owned();
    } else if let Some(rest) = s.strip_prefix('+') {
        s = rest.to_owned();
    }
    if let Some(t) = thousands {
        s = s.replace(t, "");
    }
    let mut parts = s.splitn(2, decimal);
    let int = parts.next().unwrap_or("");
    let frac = parts.next();
    let digits = |p: &str| !p.is_empty() && p.chars().all(|c| c.is_ascii_digit());
    if !digits(int) || frac.is_some_and(|f| !digits(f)) {
        return Err(format!("{raw:?} is not an amount"));
    }
    let int = int.trim_start_matches('0');
    let int = if int.is_empty() { "0" } else { int };
    let mut out = String::new();
    let zero = int == "0" && frac.is_none_or(|f| f.chars().all(|c| c == '0'));
    if neg && !zero {
        out.push('-');
    }
    out.push_str(int);
    if let Some(f) = frac {
        out.push('.');
        out.push_str(f);
    }
    // A last check by an exact decimal type (no float anywhere).
    out.parse::<rust_decimal::Decimal>()
        .map_err(|_| format!("{raw:?} is out of range"))?;
    Ok(out)
}

/// Parses a date-time (`format` = `rfc3339` or a chrono format, read in `zone` when it carries
/// no offset) into RFC 3339 UTC whole seconds.
pub fn parse_datetime(raw: &str, format: &str, zone: Zone) -> Result<String, String> {
    let raw = raw.trim();
    let utc: DateTime<Utc> = if format == "rfc3339" {
        DateTime::parse_from_rfc3339(raw)
            .map_err(|_| format!("{raw:?} is not an RFC 3339 date-time"))?
            .with_timezone(&Utc)
    } else if let Ok(dt) = DateTime::parse_from_str(raw, format) {
        dt.with_timezone(&Utc)
    } else {
        let naive =
            NaiveDateTime::parse_from_str(raw, format).map_err(|_| format!("{raw:?} does not match {format:?}"))?;
        zone.to_utc(&naive)
            .ok_or_else(|| format!("{raw:?} is not a valid local time"))?
    };
    Ok(utc.to_rfc3339_opts(SecondsFormat::Secs, true))
}

/// A date (no time) is the start of that day in the bank's zone: midnight, or — on a day whose
/// midnight a summer-time change skips (Chile, Cuba, Lebanon move their clocks at 00:00) — the
/// first whole hour that exists. A date is never invalid for its zone.
pub fn parse_date(raw: &str, format: &str, zone: Zone) -> Result<String, String> {
    let raw = raw.trim();
    let date = NaiveDate::parse_from_str(raw, format).map_err(|_| format!("{raw:?} does not match {format:?}"))?;
    let utc = (0..=3)
        .filter_map(|hour| date.and_hms_opt(hour, 0, 0))
        .find_map(|naive| zone.to_utc(&naive))
        .ok_or_else(|| format!("{raw:?} has no start of day in its zone"))?;
    Ok(utc.to_rfc3339_opts(SecondsFormat::Secs, true))
}

/// A currency: mapped first (`"US$" = "USD"`), then it must be three upper-case letters.
pub fn parse_currency(raw: &str, map: &std::collections::BTreeMap<String, String>) -> Result<String, String> {
    let t = collapse(raw);
    let code = map.get(&t).cloned().unwrap_or(t);
    if code.len() == 3 && code.chars().all(|c| c.is_ascii_uppercase()) {
        Ok(code)
    } else {
        Err(format!("{raw:?} is not an ISO 4217 currency (add it to `map`)"))
    }
}

/// Applies a field's parser to its raw text. `None` stays `None` only for optional fields.
pub fn apply(field: &Field, raw: Option<&str>) -> Result<Option<String>, String> {
    let Some(raw) = raw else {
        return if field.empty_none {
            Ok(None)
        } else {
            Err("missing".into())
        };
    };
    let value = match &field.parse {
        Parse::Text { regex } => {
            let text = collapse(raw);
            match regex {
                Some(re) => {
                    let re = regex_lite::Regex::new(re).map_err(|e| e.to_string())?;
                    let caps = re
                        .captures(&text)
                        .ok_or_else(|| format!("{text:?} does not match the regex"))?;
                    caps.get(1)
                        .or_else(|| caps.get(0))
                        .map(|m| m.as_str().to_owned())
                        .unwrap_or_default()
                }
                None => text,
            }
        }
        Parse::Decimal {
            decimal,
            thousands,
            negative,
        } => parse_decimal(raw, *decimal, *thousands, negative)?,
        Parse::DateTime { format, zone } => parse_datetime(raw, format, *zone)?,
        Parse::Date { format, zone } => parse_date(raw, format, *zone)?,
        Parse::Currency { map } => parse_currency(raw, map)?,
    };
    if field.empty_none && value.is_empty() {
        return Ok(None);
    }
    Ok(Some(value))
}

/// The value at a JSON pointer (RFC 6901) inside `raw`, as text: strings unquoted, numbers
/// exactly as written, `null` as `None`.
pub fn json_text(raw: &RawValue, pointer: &str) -> Result<Option<String>, String> {
    let Some(v) = json_at(raw, pointer)? else {
        return Ok(None);
    };
    let text = v.get().trim();
    if text == "null" {
        return Ok(None);
    }
    if text.starts_with('"') {
        return serde_json::from_str::<String>(text)
            .map(Some)
            .map_err(|e| e.to_string());
    }
    if text.starts_with('{') || text.starts_with('[') {
        return Err(format!("{pointer:?} is not a scalar"));
    }
    Ok(Some(text.to_owned()))
}

/// The raw value at a JSON pointer, `None` when a key is absent.
pub fn json_at<'a>(raw: &'a RawValue, pointer: &str) -> Result<Option<&'a RawValue>, String> {
    if pointer.is_empty() {
        return Ok(Some(raw));
    }
    let mut cur = raw;
    for token in pointer.split('/').skip(1) {
        let key = token.replace("~1", "/").replace("~0", "~");
        let text = cur.get().trim_start();
        if text.starts_with('{') {
            let map: HashMap<String, &RawValue> = serde_json::from_str(cur.get()).map_err(|e| e.to_string())?;
            match map.get(&key) {
                Some(v) => cur = v,
                None => return Ok(None),
            }
        } else if text.starts_with('[') {
            let list: Vec<&RawValue> = serde_json::from_str(cur.get()).map_err(|e| e.to_string())?;
            let i: usize = key.parse().map_err(|_| format!("{key:?} is not an array index"))?;
            match list.get(i) {
                Some(v) => cur = v,
                None => return Ok(None),
            }
        } else {
            return Ok(None);
        }
    }
    Ok(Some(cur))
}

/// The array at `pointer` in `body`.
pub fn json_list<'a>(body: &'a RawValue, pointer: &str) -> Result<Vec<&'a RawValue>, String> {
    let at = json_at(body, pointer)?.ok_or_else(|| format!("no value at {pointer:?}"))?;
    serde_json::from_str(at.get()).map_err(|_| format!("the value at {pointer:?} is not an array"))
}

/// Raw field values of one row, in the order external_id, received_at, amount, currency, name,
/// description (hash-based ids have `None` here).
pub type RawRow = [Option<String>; 6];

/// Builds movements from raw rows: parsers applied, hashed ids computed with the occurrence
/// index among identical rows (two identical same-day transfers stay two movements).
pub fn build(m: &Movements, rows: Vec<RawRow>) -> Result<Vec<Movement>, String> {
    let mut out = Vec::with_capacity(rows.len());
    let mut occurrences: HashMap<String, u32> = HashMap::new();
    for (i, row) in rows.into_iter().enumerate() {
        let at = |what: &str, e: String| format!("row {i}: movements.fields.{what}: {e}");
        let [id, received_at, amount, currency, name, description] = row;
        let received_at = apply(&m.received_at, received_at.as_deref())
            .map_err(|e| at("received_at", e))?
            .unwrap_or_default();
        let amount = apply(&m.amount, amount.as_deref())
            .map_err(|e| at("amount", e))?
            .unwrap_or_default();
        let currency = apply(&m.currency, currency.as_deref())
            .map_err(|e| at("currency", e))?
            .unwrap_or_default();
        let name = match &m.name {
            Some(f) => apply(f, name.as_deref()).map_err(|e| at("name", e))?,
            None => None,
        };
        let description = match &m.description {
            Some(f) => apply(f, description.as_deref())
                .map_err(|e| at("description", e))?
                .unwrap_or_default(),
            None => String::new(),
        };
        let external_id = match &m.external_id.from {
            FieldFrom::Hash(of) => {
                let mut key = String::new();
                for f in of {
                    let v = match f.as_str() {
                        "received_at" => received_at.as_str(),
                        "amount" => amount.as_str(),
                        "currency" => currency.as_str(),
                        "name" => name.as_deref().unwrap_or(""),
                        _ => description.as_str(),
                    };
                    key.push_str(v);
                    key.push('\u{1f}');
                }
                let n = occurrences.entry(key.clone()).or_insert(0);
                *n += 1;
                let digest = Sha256::digest(format!("{key}{n}").as_bytes());
                format!("h-{}", &hex::encode(digest)[..32])
            }
            _ => apply(&m.external_id, id.as_deref())
                .map_err(|e| at("external_id", e))?
                .filter(|s| !s.is_empty())
                .ok_or_else(|| at("external_id", "empty".into()))?,
        };
        out.push(Movement {
            external_id,
            amount,
            currency,
            name,
            description,
            received_at,
        });
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn decimals_are_exact_strings() {
        type Case<'a> = (&'a str, char, Option<char>, Negative, Result<&'a str, ()>);
        let cases: &[Case] = &[
            ("-12.34", '.', None, Negative::Minus, Ok("-12.34")),
            ("1.234,56", ',', Some('.'), Negative::Minus, Ok("1234.56")),
            ("(1,500.00)", '.', Some(','), Negative::Parens, Ok("-1500.00")),
            ("15.00-", '.', None, Negative::Suffix, Ok("-15.00")),
            (" 007.50 ", '.', None, Negative::Minus, Ok("7.50")),
            ("-0.00", '.', None, Negative::Minus, Ok("0.00")),
            (
                "0.1000000000000000055511151231257827",
                '.',
                None,
                Negative::Minus,
                Ok("0.1000000000000000055511151231257827"),
            ),
            ("12.", '.', None, Negative::Minus, Err(())),
            ("1e3", '.', None, Negative::Minus, Err(())),
            ("$12", '.', None, Negative::Minus, Err(())),
            ("", '.', None, Negative::Minus, Err(())),
            ("--1", '.', None, Negative::Minus, Err(())),
        ];
        for (raw, dec, th, neg, want) in cases {
            let got = parse_decimal(raw, *dec, *th, neg);
            match want {
                Ok(w) => assert_eq!(got.as_deref(), Ok(*w), "{raw}"),
                Err(()) => assert!(got.is_err(), "{raw} -> {got:?}"),
            }
        }
    }

    #[test]
    fn dates_land_in_utc() {
        let uy = crate::def::parse_zone("-03:00").expect("offset");
        let utc = crate::def::parse_zone("UTC").expect("offset");
        assert_eq!(
            parse_datetime("2025-01-01T08:00:00Z", "rfc3339", utc).as_deref(),
            Ok("2025-01-01T08:00:00Z")
        );
        assert_eq!(
            parse_datetime("2025-01-01T08:00:00.9-03:00", "rfc3339", utc).as_deref(),
            Ok("2025-01-01T11:00:00Z")
        );
        assert_eq!(
            parse_datetime("01/02/2025 21:30", "%d/%m/%Y %H:%M", uy).as_deref(),
            Ok("2025-02-02T00:30:00Z")
        );
        assert_eq!(
            parse_date("01/02/2025", "%d/%m/%Y", uy).as_deref(),
            Ok("2025-02-01T03:00:00Z")
        );
        assert!(parse_datetime("yesterday", "rfc3339", utc).is_err());
    }

    #[test]
    fn a_date_whose_midnight_is_skipped_starts_at_the_first_hour_that_exists() {
        // Chile moves its clocks from 24:00 on the first Saturday of September to 01:00.
        let santiago = crate::def::parse_zone("America/Santiago").expect("zone");
        let f = "%Y-%m-%d %H:%M";
        assert!(
            parse_datetime("2026-09-06 00:00", f, santiago).is_err(),
            "midnight never happened"
        );
        assert_eq!(
            parse_date("2026-09-06", "%Y-%m-%d", santiago).as_deref(),
            Ok("2026-09-06T04:00:00Z"),
            "01:00 at UTC-3"
        );
        // The day before is an ordinary midnight at UTC-4.
        assert_eq!(
            parse_date("2026-09-05", "%Y-%m-%d", santiago).as_deref(),
            Ok("2026-09-05T04:00:00Z")
        );
    }

    #[test]
    fn iana_zones_follow_summer_time() {
        let ny = crate::def::parse_zone("America/New_York").expect("zone");
        let f = "%Y-%m-%d %H:%M";
        // Winter (UTC-5) and summer (UTC-4).
        assert_eq!(
            parse_datetime("2026-01-15 12:00", f, ny).as_deref(),
            Ok("2026-01-15T17:00:00Z")
        );
        assert_eq!(
            parse_datetime("2026-07-01 12:00", f, ny).as_deref(),
            Ok("2026-07-01T16:00:00Z")
        );
        // 02:30 on the spring-forward day never happened.
        assert!(parse_datetime("2026-03-08 02:30", f, ny).is_err());
        // 01:30 on the fall-back day happened twice: the earlier (still summer time).
        assert_eq!(
            parse_datetime("2026-11-01 01:30", f, ny).as_deref(),
            Ok("2026-11-01T05:30:00Z")
        );
        // A date is midnight there, in the offset of that day.
        assert_eq!(
            parse_date("2026-07-01", "%Y-%m-%d", ny).as_deref(),
            Ok("2026-07-01T04:00:00Z")
        );
        // An offset in the text wins over the zone.
        assert_eq!(
            parse_datetime("2026-07-01T12:00:00+00:00", "rfc3339", ny).as_deref(),
            Ok("2026-07-01T12:00:00Z")
        );
    }

    #[test]
    fn currencies_map_then_check() {
        let map = [("US$".to_owned(), "USD".to_owned()), ("$".to_owned(), "UYU".to_owned())]
            .into_iter()
            .collect();
        assert_eq!(parse_currency("US$", &map).as_deref(), Ok("USD"));
        assert_eq!(parse_currency(" EUR ", &map).as_deref(), Ok("EUR"));
        assert!(parse_currency("€", &map).is_err());
    }

    #[test]
    fn json_pointers_keep_numbers_exact() {
        let body: Box<RawValue> =
            serde_json::from_str(r#"{"data":{"items":[{"a/b":1.10,"s":"x\"y","n":null,"o":{}}]}}"#).expect("json");
        let list = json_list(&body, "/data/items").expect("list");
        assert_eq!(list.len(), 1);
        assert_eq!(json_text(list[0], "/a~1b"), Ok(Some("1.10".into())));
        assert_eq!(json_text(list[0], "/s"), Ok(Some("x\"y".into())));
        assert_eq!(json_text(list[0], "/n"), Ok(None));
        assert_eq!(json_text(list[0], "/missing"), Ok(None));
        assert!(json_text(list[0], "/o").is_err());
        assert!(json_list(&body, "/data").is_err());
    }
}
