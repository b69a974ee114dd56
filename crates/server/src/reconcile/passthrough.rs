//! Passthrough (docs/reconciliation.md §7): the frozen body of a movement's `bank_movement`
//! webhook. The store decides, in the transaction that stores a movement, whether it is
//! forwarded (owner in passthrough mode, not the account's first read, a non-blank name) and
//! calls [`on_store`] for the body; the resend endpoint calls [`on_request`].
//!
//! The body is exactly the documented `{id, amount, currency, name, received_at}`, then the
//! account's `webhook_extra_fields` (never overriding one of those keys). `amount` is a JSON
//! number written from the bank's decimal text with at least two decimals, signed as the bank
//! reports it (money out is negative); `received_at` is the bank's instant in UTC with
//! milliseconds (the bank's text as it is when it is not RFC 3339 with an offset).

use crate::domain::exact_json::{ExactJson, ExactObject};
use reconbanker_store::MovementRow;
use serde::Serialize;
use serde_json::value::RawValue;
use std::collections::BTreeMap;

use super::results::{self, amount_number};
use crate::domain::account_config::{Settings, RESERVED_EXTRA_FIELDS};
use crate::support::time::ts;

/// The documented body of a forwarded movement.
#[derive(Serialize)]
struct BankMovementBody<'a> {
    id: String,
    amount: Box<RawValue>,
    currency: &'a str,
    name: &'a str,
    received_at: String,
    #[serde(flatten)]
    extra: BTreeMap<&'a str, &'a ExactJson>,
}

/// The body of `m`'s webhook with these extra fields; `None` when it has no name or its amount
/// is not a decimal.
pub(crate) fn body(m: &MovementRow, extra: &ExactObject) -> Option<String> {
    let name = m.name.as_deref().filter(|n| !n.trim().is_empty())?;
    let body = BankMovementBody {
        id: m.id.to_string(),
        amount: amount_number(&m.amount)?,
        currency: &m.currency,
        name,
        received_at: received_at(&m.received_at),
        // The config refuses reserved keys; an older stored config still never overrides one.
        extra: extra
            .iter()
            .filter(|(k, _)| !RESERVED_EXTRA_FIELDS.contains(&k.as_str()))
            .map(|(k, v)| (k.as_str(), v))
            .collect(),
    };
    Some(results::to_json(&body))
}

/// The bank's date as an instant in UTC with milliseconds, or its text when it does not parse.
fn received_at(text: &str) -> String {
    chrono::DateTime::parse_from_rfc3339(text.trim())
        .map(|t| ts(t.with_timezone(&chrono::Utc)))
        .unwrap_or_else(|_| text.to_owned())
}

/// The account's settings from the JSON the store read (defaults when it has no config);
/// `None`, logged, when unreadable.
fn settings_of(m: &MovementRow, settings: Option<&str>) -> Option<Settings> {
    let Some(text) = settings else {
        return Some(Settings::default());
    };
    match serde_json::from_str(text) {
        Ok(s) => Some(s),
        Err(e) => {
            tracing::error!(error = %e, account = %m.account_id, movement = %m.id,
                "account config unreadable; movement not forwarded");
            None
        }
    }
}

/// The body of a movement forwarded as it is stored: none when the account has
/// `silent_ingestion` on.
pub(crate) fn on_store(m: &MovementRow, settings: Option<&str>) -> Option<String> {
    let settings = settings_of(m, settings)?;
    if settings.silent_ingestion {
        return None;
    }
    body(m, &settings.webhook_extra_fields)
}

/// The body of a movement sent by hand (the resend endpoint): a human asked for it, so
/// `silent_ingestion` does not hold it back.
pub(crate) fn on_request(m: &MovementRow, settings: Option<&str>) -> Option<String> {
    let settings = settings_of(m, settings)?;
    body(m, &settings.webhook_extra_fields)
}

#[cfg(test)]
mod tests {
    use reconbanker_store::{now, AccountId, MovementId};

    use super::*;

    fn movement(amount: &str, name: Option<&str>, received_at: &str) -> MovementRow {
        MovementRow {
            id: MovementId::new(),
            account_id: AccountId::new(),
            external_id: "tx-1".into(),
            amount: amount.into(),
            currency: "UYU".into(),
            name: name.map(str::to_owned),
            description: "Transferencia".into(),
            received_at: received_at.into(),
            read_at: now(),
        }
    }

    #[test]
    fn the_body_is_the_documented_five_fields_then_the_extras() {
        let m = movement("1500", Some("JUAN PEREZ"), "2026-05-13T12:30:00-03:00");
        let mut extra = ExactObject::new();
        extra.insert("shop".into(), ExactJson::string("eu-1"));
        extra.insert("amount".into(), ExactJson::parse("1").expect("json"));
        extra.insert("fee".into(), ExactJson::parse("1234567890123456.78").expect("json"));
        assert_eq!(
            body(&m, &extra).as_deref(),
            Some(
                format!(
                    r#"{{"id":"{}","amount":1500.00,"currency":"UYU","name":"JUAN PEREZ","received_at":"2026-05-13T15:30:00.000Z","fee":1234567890123456.78,"shop":"eu-1"}}"#,
                    m.id
                )
                .as_str()
            )
        );
    }

    #[test]
    fn debits_are_negative_and_odd_dates_are_kept_as_read() {
        let m = movement("-12.3", Some("ACME"), "13/05/2026");
        let text = body(&m, &ExactObject::new()).expect("a body");
        assert!(text.contains(r#""amount":-12.30,"#), "{text}");
        assert!(text.contains(r#""received_at":"13/05/2026""#), "{text}");
    }

    #[test]
    fn no_name_or_no_decimal_is_no_body() {
        assert_eq!(body(&movement("1.00", None, "x"), &ExactObject::new()), None);
        assert_eq!(body(&movement("1.00", Some("  "), "x"), &ExactObject::new()), None);
        assert_eq!(body(&movement("ten", Some("A"), "x"), &ExactObject::new()), None);
    }

    #[test]
    fn silent_ingestion_holds_back_only_what_is_stored() {
        let m = movement("5", Some("ANA"), "2026-05-13T15:30:00Z");
        let silent = r#"{"silent_ingestion": true}"#;
        assert_eq!(on_store(&m, Some(silent)), None);
        assert!(on_request(&m, Some(silent)).is_some());
        assert!(on_store(&m, None).is_some());
        assert_eq!(on_store(&m, Some("not json")), None);
    }
}
