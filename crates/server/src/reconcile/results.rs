//! The bodies of the result and passthrough webhooks (docs/reconciliation.md §6, §7), frozen
//! into the outbox when the event happens. Amounts are JSON numbers written from the stored
//! decimal text with at least two decimals (`1500.00`), never through a float; the documented
//! fields come first, then ours, then the account's extra fields (which may not override any).

use crate::domain::exact_json::ExactObject;
use serde::Serialize;
use serde_json::value::RawValue;

use super::orders::{canonical_amount, parse_signed_decimal};
use crate::domain::account_config::RESERVED_EXTRA_FIELDS;

/// An amount as a JSON number with at least two decimals, from exact decimal text. `None` when
/// the text is not a decimal (a bank's amount that never parsed): such a body is not built.
pub(crate) fn amount_number(text: &str) -> Option<Box<RawValue>> {
    let d = parse_signed_decimal(text.trim())?;
    RawValue::from_string(canonical_amount(d)).ok()
}

/// The bank's view of the payer, in a `matched` result.
#[derive(Serialize)]
pub(crate) struct MovementBody<'a> {
    pub id: String,
    pub amount: Box<RawValue>,
    pub currency: &'a str,
    pub name: Option<&'a str>,
    pub received_at: String,
}

/// `matched`, `ambiguous` or `expired` for one request.
#[derive(Serialize)]
pub(crate) struct ResultBody<'a> {
    pub external_id: &'a str,
    pub status: &'a str,
    pub amount: Box<RawValue>,
    pub currency: &'a str,
    /// The order's name, as the docs and the reference send it.
    pub name: &'a str,
    pub request_id: String,
    pub occurred_at: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub movement: Option<MovementBody<'a>>,
    #[serde(flatten, serialize_with = "without_reserved")]
    pub extra: &'a ExactObject,
}

/// The account's extra fields less the reserved keys: the config already refuses them; this
/// keeps an old stored config from repeating (and, for most parsers, overriding) a key we set.
fn without_reserved<S: serde::Serializer>(extra: &&ExactObject, s: S) -> Result<S::Ok, S::Error> {
    s.collect_map(
        extra
            .iter()
            .filter(|(k, _)| !RESERVED_EXTRA_FIELDS.contains(&k.as_str())),
    )
}

/// Serializes a body.
pub(crate) fn to_json<T: Serialize>(body: &T) -> String {
    serde_json::to_string(body).unwrap_or_else(|_| "{}".into())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::exact_json::ExactJson;

    #[test]
    fn amounts_are_numbers_with_two_decimals_at_least() {
        let n = |t: &str| amount_number(t).map(|r| r.get().to_owned());
        assert_eq!(n("1500").as_deref(), Some("1500.00"));
        assert_eq!(n("1500.5").as_deref(), Some("1500.50"));
        assert_eq!(n("12.345").as_deref(), Some("12.345"));
        assert_eq!(n("-12.34").as_deref(), Some("-12.34"));
        assert_eq!(n("0.0001").as_deref(), Some("0.0001"));
        assert_eq!(n("ten"), None);
        assert_eq!(n("1,500.00"), None);
    }

    #[test]
    fn the_documented_fields_come_first_and_extras_last() {
        let mut extra = ExactObject::new();
        extra.insert("shop".into(), ExactJson::string("eu-1"));
        extra.insert(
            "order_total".into(),
            ExactJson::parse("12345678901234567890.10").expect("json"),
        );
        let body = ResultBody {
            external_id: "ORDER-1234",
            status: "matched",
            amount: amount_number("1500").expect("amount"),
            currency: "UYU",
            name: "Juan Perez",
            request_id: "r1".into(),
            occurred_at: "2026-05-13T15:31:02.123Z".into(),
            movement: Some(MovementBody {
                id: "m1".into(),
                amount: amount_number("1500.00").expect("amount"),
                currency: "UYU",
                name: Some("JUAN PEREZ"),
                received_at: "2026-05-13T15:30:00.000Z".into(),
            }),
            extra: &extra,
        };
        assert_eq!(
            to_json(&body),
            r#"{"external_id":"ORDER-1234","status":"matched","amount":1500.00,"currency":"UYU","name":"Juan Perez","request_id":"r1","occurred_at":"2026-05-13T15:31:02.123Z","movement":{"id":"m1","amount":1500.00,"currency":"UYU","name":"JUAN PEREZ","received_at":"2026-05-13T15:30:00.000Z"},"order_total":12345678901234567890.10,"shop":"eu-1"}"#
        );
        let ambiguous = ResultBody {
            status: "ambiguous",
            movement: None,
            extra: &ExactObject::new(),
            ..body
        };
        let text = to_json(&ambiguous);
        assert!(!text.contains("movement"), "{text}");
        // A reserved key in an old stored config is left out, never repeated.
        let mut old = ExactObject::new();
        old.insert("status".into(), ExactJson::string("paid"));
        old.insert("request_id".into(), ExactJson::string("x"));
        old.insert("shop".into(), ExactJson::string("eu-1"));
        let text = to_json(&ResultBody {
            extra: &old,
            ..ambiguous
        });
        assert!(
            text.ends_with(r#","status":"ambiguous","amount":1500.00,"currency":"UYU","name":"Juan Perez","request_id":"r1","occurred_at":"2026-05-13T15:31:02.123Z","shop":"eu-1"}"#),
            "{text}"
        );
        assert!(text.starts_with(r#"{"external_id":"ORDER-1234","status":"ambiguous","amount":1500.00,"#));
    }
}
