//! The dashboard API's OpenAPI document (issue 12): committed = generated, served, covering every
//! route of the router with the same method, and describing what the real server answers.

use reqwest::{Method, StatusCode};
use serde_json::{json, Value};

use crate::harness::{Res, TestApp};

const COMMITTED: &str = include_str!("../../../../docs/openapi-dashboard.json");
const ROUTE_TABLE: &str = include_str!("../../src/http/mod.rs");

fn doc() -> Value {
    serde_json::from_str(COMMITTED).expect("docs/openapi-dashboard.json is JSON")
}

#[tokio::test]
async fn committed_dashboard_openapi_matches_the_code_and_is_served() {
    let generated = reconbanker::http::openapi::openapi_json();
    assert_eq!(
        COMMITTED.trim(),
        generated.trim(),
        "docs/openapi-dashboard.json is stale: regenerate it with \
         `cargo run -q -- openapi --dashboard > docs/openapi-dashboard.json`"
    );
    let app = TestApp::spawn().await;
    // Unauthenticated, like /v1/openapi.json.
    let r = app.send(Method::GET, "/openapi.json", &[], None).await;
    assert_eq!(r.status, StatusCode::OK);
    assert_eq!(r.header("content-type"), Some("application/json"));
    assert_eq!(r.body, doc());
    assert_eq!(r.body["openapi"], "3.1.0");
    let schemes = &r.body["components"]["securitySchemes"];
    assert_eq!(schemes["DashboardJwt"]["scheme"], "bearer");
    assert_eq!(schemes["RealtimeTicket"]["in"], "query");
    assert_eq!(schemes["RealtimeTicket"]["name"], "ticket");
    // The /v1 document stays where it was, and the dashboard one describes no /v1 route.
    let v1 = app.send(Method::GET, "/v1/openapi.json", &[], None).await;
    assert_eq!(v1.status, StatusCode::OK);
    assert_ne!(v1.body, r.body);
    let paths = r.body["paths"].as_object().expect("paths");
    assert!(paths.keys().all(|p| !p.starts_with("/v1")), "{:?}", paths.keys());
}

/// `(METHOD, path)` of every `.route(...)` in the route table (`src/http/mod.rs`), read the way
/// `layers.rs` reads sources: the path literal, then each `get(`/`post(`/`put(`/`delete(` of
/// the method router up to the call's closing parenthesis.
fn routed() -> Vec<(String, String)> {
    let mut out = Vec::new();
    // The table, not the file's unit tests (their routers are not the app's).
    let mut rest = ROUTE_TABLE.split("\n#[cfg(test)]").next().unwrap_or(ROUTE_TABLE);
    while let Some(i) = rest.find(".route(") {
        let call = &rest[i + ".route(".len()..];
        // The call's extent: up to its matching `)`.
        let mut depth = 1;
        let mut end = call.len();
        for (j, c) in call.char_indices() {
            match c {
                '(' => depth += 1,
                ')' => {
                    depth -= 1;
                    if depth == 0 {
                        end = j;
                        break;
                    }
                }
                _ => {}
            }
        }
        let body = &call[..end];
        rest = &call[end..];
        let path = body
            .split('"')
            .nth(1)
            .unwrap_or_else(|| panic!("a route without a path literal: {body}"));
        let mut found = 0;
        for method in ["get", "post", "put", "delete", "patch"] {
            let word = format!("{method}(");
            let mut from = 0;
            while let Some(k) = body[from..].find(&word) {
                let at = from + k;
                let before = body[..at].chars().next_back();
                // `get(` as a word (`routing::delete(` and `.post(` count; `forget(` does not).
                if !before.is_some_and(|c| c.is_ascii_alphanumeric() || c == '_') {
                    out.push((method.to_uppercase(), path.to_owned()));
                    found += 1;
                }
                from = at + word.len();
            }
        }
        assert!(found > 0, "no method found for route {path}: {body}");
    }
    out
}

fn documented() -> Vec<(String, String)> {
    let d = doc();
    let mut out = Vec::new();
    for (path, item) in d["paths"].as_object().expect("paths") {
        for method in item.as_object().expect("path item").keys() {
            if ["get", "post", "put", "delete", "patch"].contains(&method.as_str()) {
                out.push((method.to_uppercase(), path.clone()));
            }
        }
    }
    out
}

fn is_documentable(path: &str) -> bool {
    !(path == "/v1" || path.starts_with("/v1/") || path == "/openapi.json")
}

#[test]
fn every_dashboard_route_is_documented_with_its_method() {
    let routes = routed();
    // The parser itself: it must see the table (a change of style would otherwise pass silently).
    assert!(routes.len() >= 44, "only {} routes read from mod.rs", routes.len());
    assert!(routes.contains(&("DELETE".into(), "/accounts/{id}/movements/{movement_id}/ignore".into())));
    assert!(routes.contains(&("GET".into(), "/v1/events".into())));
    let documented = documented();
    let missing: Vec<_> = routes
        .iter()
        .filter(|(_, p)| is_documentable(p))
        .filter(|r| !documented.contains(r))
        .collect();
    assert!(
        missing.is_empty(),
        "routes missing from the dashboard document: {missing:?}"
    );
    let extra: Vec<_> = documented.iter().filter(|d| !routes.contains(d)).collect();
    assert!(extra.is_empty(), "documented operations that are not routed: {extra:?}");
    // Operation ids are unique (the fuzzing stage excludes operations by id).
    let d = doc();
    let mut ids: Vec<&str> = d["paths"]
        .as_object()
        .expect("paths")
        .values()
        .flat_map(|item| item.as_object().expect("item").values())
        .map(|op| op["operationId"].as_str().expect("every operation has an id"))
        .collect();
    let n = ids.len();
    ids.sort_unstable();
    ids.dedup();
    assert_eq!(ids.len(), n, "duplicate operation ids");
}

/// Black-box: each documented operation reaches a handler (not the JSON 404 / 405 fallbacks).
#[tokio::test]
async fn every_documented_operation_is_served() {
    let app = TestApp::spawn().await;
    for (method, path) in documented() {
        let concrete = path
            .replace("{id}", "00000000-0000-4000-8000-000000000000")
            .replace("{movement_id}", "00000000-0000-4000-8000-000000000001")
            .replace("{delivery_id}", "00000000-0000-4000-8000-000000000002");
        let m = Method::from_bytes(method.as_bytes()).expect("method");
        let r = app.send(m, &concrete, &[], None).await;
        assert_ne!(r.status, StatusCode::METHOD_NOT_ALLOWED, "{method} {path}: {}", r.text);
        assert!(
            !(r.status == StatusCode::NOT_FOUND && r.body["error"] == "No such route"),
            "{method} {path} is not routed: {}",
            r.text
        );
    }
}

// --- the documented response schemas against real answers ----------------------------------

/// Resolves a local `$ref` (`#/components/schemas/X`).
fn resolve<'a>(doc: &'a Value, schema: &'a Value) -> &'a Value {
    match schema.get("$ref").and_then(Value::as_str) {
        Some(r) => {
            let pointer = r.strip_prefix('#').expect("local ref");
            resolve(doc, doc.pointer(pointer).unwrap_or_else(|| panic!("dangling {r}")))
        }
        None => schema,
    }
}

fn type_matches(t: &str, v: &Value) -> bool {
    match t {
        "null" => v.is_null(),
        "boolean" => v.is_boolean(),
        "string" => v.is_string(),
        "integer" => v.is_i64() || v.is_u64(),
        "number" => v.is_number(),
        "array" => v.is_array(),
        "object" => v.is_object(),
        other => panic!("unknown type {other}"),
    }
}

/// The JSON Schema subset utoipa emits (`$ref`, `type` (one or a list), `properties`,
/// `required`, `additionalProperties: false`, `items`, `enum`, `oneOf`, `allOf`, `minimum`):
/// every violation, with where it is.
fn violations(doc: &Value, schema: &Value, v: &Value, at: &str, out: &mut Vec<String>) {
    let schema = resolve(doc, schema);
    if let Some(all) = schema.get("allOf").and_then(Value::as_array) {
        for s in all {
            violations(doc, s, v, at, out);
        }
    }
    if let Some(one) = schema.get("oneOf").and_then(Value::as_array) {
        let ok = one
            .iter()
            .filter(|s| {
                let mut e = Vec::new();
                violations(doc, s, v, at, &mut e);
                e.is_empty()
            })
            .count();
        if ok != 1 {
            out.push(format!("{at}: matches {ok} of the oneOf alternatives: {v}"));
        }
    }
    match schema.get("type") {
        Some(Value::String(t)) if !type_matches(t, v) => out.push(format!("{at}: not a {t}: {v}")),
        Some(Value::Array(ts)) if !ts.iter().any(|t| type_matches(t.as_str().unwrap_or(""), v)) => {
            out.push(format!("{at}: not one of {ts:?}: {v}"))
        }
        _ => {}
    }
    if let Some(values) = schema.get("enum").and_then(Value::as_array) {
        if !values.contains(v) {
            out.push(format!("{at}: {v} not in {values:?}"));
        }
    }
    if let (Some(min), Some(n)) = (schema.get("minimum").and_then(Value::as_f64), v.as_f64()) {
        if n < min {
            out.push(format!("{at}: {n} < minimum {min}"));
        }
    }
    if let Some(obj) = v.as_object() {
        let props = schema.get("properties").and_then(Value::as_object);
        for name in schema.get("required").and_then(Value::as_array).into_iter().flatten() {
            let name = name.as_str().expect("required name");
            if !obj.contains_key(name) {
                out.push(format!("{at}: required `{name}` missing"));
            }
        }
        for (k, item) in obj {
            match props.and_then(|p| p.get(k)) {
                Some(s) => violations(doc, s, item, &format!("{at}.{k}"), out),
                None if schema.get("additionalProperties") == Some(&Value::Bool(false)) => {
                    out.push(format!("{at}: unexpected `{k}`"))
                }
                None => {}
            }
        }
    }
    if let (Some(items), Some(arr)) = (schema.get("items"), v.as_array()) {
        for (i, item) in arr.iter().enumerate() {
            violations(doc, items, item, &format!("{at}[{i}]"), out);
        }
    }
}

/// Asserts the answer is one the document lists for the operation, with its content type
/// and a body matching its schema; returns the body.
#[track_caller]
fn conforms(method: &str, path: &str, r: &Res) -> Value {
    let d = doc();
    let op = &d["paths"][path][method.to_lowercase()];
    assert!(op.is_object(), "{method} {path} is not documented");
    let status = r.status.as_u16().to_string();
    let response = resolve(&d, &op["responses"][&status]);
    assert!(
        response.is_object(),
        "{method} {path} answered {status}, which the document does not list: {}",
        r.text
    );
    match response.get("content").and_then(Value::as_object) {
        None => assert!(
            r.text.is_empty(),
            "{method} {path} {status}: a body where none is documented"
        ),
        Some(content) => {
            let (ct, media) = content.iter().next().expect("a content type");
            let got = r.header("content-type").unwrap_or("");
            assert!(
                got.starts_with(ct.as_str()),
                "{method} {path} {status}: content type {got}, documented {ct}"
            );
            let mut errors = Vec::new();
            violations(&d, &media["schema"], &r.body, "$", &mut errors);
            assert!(
                errors.is_empty(),
                "{method} {path} {status}: {errors:#?}\nbody: {}",
                r.text
            );
        }
    }
    r.body.clone()
}

/// The validator itself must refuse what the document forbids.
#[test]
fn the_schema_check_can_fail() {
    let d = doc();
    let key = json!({"$ref": "#/components/schemas/KeyOut"});
    let mut e = Vec::new();
    violations(&d, &key, &json!({"id": "x", "name": 3}), "$", &mut e);
    assert!(e.iter().any(|m| m.contains("`prefix` missing")), "{e:?}");
    assert!(e.iter().any(|m| m.contains("$.name: not a string")), "{e:?}");
    let mut e = Vec::new();
    let otp = &d["paths"]["/accounts/{id}/otp"]["get"]["responses"]["200"]["content"]["application/json"]["schema"];
    violations(&d, otp, &json!({"id": "x"}), "$", &mut e);
    assert!(!e.is_empty(), "a half pending request is neither null nor a PendingOut");
    let mut e = Vec::new();
    violations(&d, otp, &Value::Null, "$", &mut e);
    assert!(e.is_empty(), "{e:?}");
}

#[tokio::test]
async fn documented_schemas_match_what_the_server_answers() {
    let app = TestApp::spawn().await;
    let creds = json!({"email": "schema@example.com", "password": "correct horse battery", "name": "Ana"});
    let r = app
        .json(Method::POST, "/auth/register", None, Some(creds.clone()))
        .await;
    assert_eq!(r.status, StatusCode::CREATED);
    conforms("POST", "/auth/register", &r);
    let r = app
        .json(Method::POST, "/auth/register", None, Some(creds.clone()))
        .await;
    assert_eq!(r.status, StatusCode::CONFLICT);
    conforms("POST", "/auth/register", &r);
    let r = app
        .json(
            Method::POST,
            "/auth/login",
            None,
            Some(json!({"email": "schema@example.com", "password": "correct horse battery"})),
        )
        .await;
    assert_eq!(r.status, StatusCode::OK);
    let token = conforms("POST", "/auth/login", &r)["token"]
        .as_str()
        .expect("token")
        .to_owned();
    let t = Some(token.as_str());
    // Error bodies: a validation error with details, a wrong password, no token, an unknown id.
    let r = app
        .json(
            Method::POST,
            "/auth/login",
            None,
            Some(json!({"email": "x@example.com", "nope": 1})),
        )
        .await;
    assert_eq!(r.status, StatusCode::BAD_REQUEST);
    assert!(conforms("POST", "/auth/login", &r)["details"].is_array());
    let r = app
        .json(
            Method::POST,
            "/auth/login",
            None,
            Some(json!({"email": "schema@example.com", "password": "wrong password!"})),
        )
        .await;
    assert_eq!(r.status, StatusCode::UNAUTHORIZED);
    conforms("POST", "/auth/login", &r);
    let r = app.json(Method::GET, "/accounts", None, None).await;
    assert_eq!(r.status, StatusCode::UNAUTHORIZED);
    conforms("GET", "/accounts", &r);
    let r = app.json(Method::GET, "/accounts?limit=0", t, None).await;
    assert_eq!(r.status, StatusCode::BAD_REQUEST);
    conforms("GET", "/accounts", &r);

    let r = app.json(Method::GET, "/me", t, None).await;
    conforms("GET", "/me", &r);
    let r = app.json(Method::GET, "/banks", t, None).await;
    let bank = conforms("GET", "/banks", &r)[0]["id"]
        .as_str()
        .expect("a bank")
        .to_owned();
    let r = app.json(Method::GET, &format!("/banks/{bank}"), t, None).await;
    conforms("GET", "/banks/{id}", &r);

    let r = app
        .json(
            Method::POST,
            "/accounts",
            t,
            Some(json!({"bankId": bank, "name": "Main"})),
        )
        .await;
    assert_eq!(r.status, StatusCode::CREATED);
    let account = conforms("POST", "/accounts", &r)["id"].as_str().expect("id").to_owned();
    let r = app.json(Method::GET, "/accounts", t, None).await;
    assert_eq!(conforms("GET", "/accounts", &r).as_array().map(Vec::len), Some(1));
    let r = app.json(Method::GET, &format!("/accounts/{account}"), t, None).await;
    conforms("GET", "/accounts/{id}", &r);
    let r = app
        .json(Method::GET, "/accounts/00000000-0000-4000-8000-000000000000", t, None)
        .await;
    assert_eq!(r.status, StatusCode::NOT_FOUND);
    conforms("GET", "/accounts/{id}", &r);
    let r = app
        .json(
            Method::PUT,
            &format!("/accounts/{account}/config"),
            t,
            Some(json!({"login_mode": "assisted", "bank_username": "u", "bank_password": "p", "auth_token": "tok"})),
        )
        .await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.text);
    conforms("PUT", "/accounts/{id}/config", &r);
    let r = app
        .json(Method::GET, &format!("/accounts/{account}/otp"), t, None)
        .await;
    assert_eq!(conforms("GET", "/accounts/{id}/otp", &r), Value::Null);

    let r = app
        .json(
            Method::POST,
            "/me/api-keys",
            t,
            Some(json!({"name": "k", "scopes": ["status:read"], "account_ids": [account]})),
        )
        .await;
    assert_eq!(r.status, StatusCode::CREATED);
    assert!(conforms("POST", "/me/api-keys", &r)["key"].is_string());
    let r = app
        .json(Method::POST, "/me/api-keys", t, Some(json!({"name": "k"})))
        .await;
    assert_eq!(r.status, StatusCode::BAD_REQUEST);
    conforms("POST", "/me/api-keys", &r);
    let r = app.json(Method::GET, "/me/api-keys", t, None).await;
    conforms("GET", "/me/api-keys", &r);

    for path in ["/health", "/ready"] {
        let r = app.send(Method::GET, path, &[], None).await;
        conforms("GET", path, &r);
    }
    let r = app.json(Method::POST, "/realtime/ticket", t, None).await;
    conforms("POST", "/realtime/ticket", &r);
}
