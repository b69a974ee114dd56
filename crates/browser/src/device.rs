//! Remember-device state (CONNECTORS §4, `[session] remember`): what a successful login keeps
//! for the next — the bank's trusted-device cookies and `localStorage` keys — as the JSON the
//! engine seals with the master key, and how the next login puts it back before the bank looks.
//!
//! The JSON is `{"cookies": [...], "local_storage": {"origin", "until", "items": [[key, value]]}}`;
//! a plain list of cookies (what earlier versions kept) is read as cookies alone. Every value in
//! it is a secret (it lets a login skip the second factor): never logged, never in an error.

use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::def::{host_allowed, BankDef, Remember};
use crate::page::{ContextLease, KeptCookie, PageError};

/// What one login keeps for the next.
#[derive(Default, Serialize, Deserialize)]
pub(crate) struct DeviceState {
    #[serde(default)]
    pub(crate) cookies: Vec<KeptCookie>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub(crate) local_storage: Option<KeptStorage>,
}

/// `localStorage` keys of one origin (the one the login ended on).
#[derive(Serialize, Deserialize)]
pub(crate) struct KeptStorage {
    pub(crate) origin: String,
    /// Seconds since the epoch after which the keys are not given back (`remember.ttl`).
    pub(crate) until: f64,
    pub(crate) items: Vec<(String, String)>,
}

#[derive(Deserialize)]
#[serde(untagged)]
enum AnyState {
    State(DeviceState),
    Cookies(Vec<KeptCookie>),
}

/// Kept state as the next login reads it; state that does not parse is no state (the bank
/// then asks for a code, as it would on a new device).
pub(crate) fn parse(text: &str) -> DeviceState {
    match serde_json::from_str::<AnyState>(text) {
        Ok(AnyState::State(s)) => s,
        Ok(AnyState::Cookies(cookies)) => DeviceState {
            cookies,
            local_storage: None,
        },
        Err(_) => DeviceState::default(),
    }
}

fn unix_now() -> f64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs_f64())
        .unwrap_or(0.0)
}

/// The script that puts the kept keys back: run before the bank's own scripts in every new
/// document of the kept origin (and only there); a key the page already holds is left alone, so
/// a token the bank rotates during the login is not overwritten. Keys and values are JSON
/// literals (data, never code).
fn restore_script(origin: &str, items: &[(String, String)]) -> String {
    format!(
        "(function (origin, items) {{\n  if (location.origin !== origin) return;\n  try {{\n    \
         items.forEach(function (kv) {{ if (window.localStorage.getItem(kv[0]) === null) \
         window.localStorage.setItem(kv[0], kv[1]); }});\n  }} catch (e) {{}}\n}})({}, {});",
        Value::String(origin.to_owned()),
        serde_json::to_string(items).unwrap_or_else(|_| "[]".into()),
    )
}

/// Puts the kept state back in a fresh context before its first page: the cookies the
/// definition keeps and that have not expired, and a script that sets the kept `localStorage`
/// keys on their origin. Returns the script's id (removed once the login is over).
pub(crate) async fn restore(
    lease: &ContextLease,
    def: &BankDef,
    remember: &Remember,
    text: &str,
) -> Result<Option<String>, PageError> {
    let now = unix_now();
    let state = parse(text);
    let cookies: Vec<KeptCookie> = state
        .cookies
        .into_iter()
        .filter(|c| remember.keeps(&c.name) && c.expires > now)
        .collect();
    lease.set_cookies(&cookies).await?;
    let Some(storage) = state.local_storage else {
        return Ok(None);
    };
    let items: Vec<(String, String)> = storage
        .items
        .into_iter()
        .filter(|(k, _)| remember.keeps_key(k))
        .collect();
    let allowed = url::Url::parse(&storage.origin)
        .is_ok_and(|u| host_allowed(&def.allowed_hosts, u.host_str().unwrap_or_default()));
    if items.is_empty() || storage.until <= now || !allowed {
        return Ok(None);
    }
    lease
        .add_init_script(restore_script(&storage.origin, &items))
        .await
        .map(Some)
}

/// Reads the page's `localStorage` (its origin and every key) without a helper round trip.
const READ_STORAGE: &str = "(function () {\n  var items = [];\n  try {\n    \
    for (var i = 0; i < window.localStorage.length; i++) {\n      \
    var k = window.localStorage.key(i);\n      items.push([k, window.localStorage.getItem(k)]);\n    }\n  \
    } catch (e) {}\n  return { origin: location.origin, items: items };\n})()";

/// What a successful login keeps: the cookies and the `localStorage` keys of the page's origin
/// that `remember` names, each kept at most its `ttl`, as the JSON the next login takes back;
/// `None` when there is nothing (or it cannot be read: the next login then asks for a code,
/// nothing worse).
pub(crate) async fn keep(lease: &ContextLease, def: &BankDef, remember: &Remember) -> Option<String> {
    let until = unix_now() + remember.ttl.as_secs_f64();
    let cookies: Vec<KeptCookie> = if remember.cookies.is_empty() {
        Vec::new()
    } else {
        lease
            .cookies()
            .await
            .ok()?
            .into_iter()
            .filter(|c| remember.keeps(&c.name))
            .map(|mut c| {
                c.expires = if c.expires > 0.0 { c.expires.min(until) } else { until };
                c
            })
            .collect()
    };
    let local_storage = if remember.local_storage.is_empty() {
        None
    } else {
        let v = lease.eval(READ_STORAGE.to_owned()).await.ok()?;
        let origin = v["origin"].as_str().unwrap_or_default().to_owned();
        let allowed =
            url::Url::parse(&origin).is_ok_and(|u| host_allowed(&def.allowed_hosts, u.host_str().unwrap_or_default()));
        let items: Vec<(String, String)> = v["items"]
            .as_array()
            .map(|list| {
                list.iter()
                    .filter_map(|kv| Some((kv[0].as_str()?.to_owned(), kv[1].as_str()?.to_owned())))
                    .filter(|(k, _)| remember.keeps_key(k))
                    .collect()
            })
            .unwrap_or_default();
        (allowed && !items.is_empty()).then_some(KeptStorage { origin, until, items })
    };
    if cookies.is_empty() && local_storage.is_none() {
        return None;
    }
    serde_json::to_string(&DeviceState { cookies, local_storage }).ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn kept_state_reads_the_current_shape_the_old_cookie_list_and_nothing_else() {
        let old = r#"[{"name":"d","value":"v","domain":"h","path":"/","secure":false,"http_only":true,"expires":5.0}]"#;
        let s = parse(old);
        assert_eq!(s.cookies.len(), 1);
        assert!(s.local_storage.is_none());
        let new = r#"{"cookies":[],"local_storage":{"origin":"http://h","until":9.0,"items":[["k","v"]]}}"#;
        let s = parse(new);
        assert!(s.cookies.is_empty());
        assert_eq!(s.local_storage.expect("kept").items, [("k".to_owned(), "v".to_owned())]);
        for junk in ["{not json", "42", "\"x\"", "{\"cookies\": 3}"] {
            let s = parse(junk);
            assert!(s.cookies.is_empty() && s.local_storage.is_none(), "{junk}");
        }
    }

    #[test]
    fn the_restore_script_holds_the_values_as_json_literals() {
        let script = restore_script("http://h", &[("k\"');".into(), "v</script>\n".into())]);
        assert!(script.contains(r#"[["k\"');","v</script>\n"]]"#), "{script}");
        assert!(script.contains("\"http://h\""), "{script}");
    }
}
