//! JSON a user gives us to send on, kept exactly as given: a webhook's extra fields and a
//! poll's body. A `serde_json::Value` holds a number as a 64-bit integer or a binary float, so
//! `12345678901234567890123` or `1234567890123456.78` would go out changed (money among them).
//! [`ExactJson`] keeps the value's text instead, with the whitespace between tokens removed.

use std::collections::BTreeMap;
use std::fmt;

use serde::{Deserialize, Deserializer, Serialize, Serializer};
use serde_json::value::RawValue;

/// One JSON value as its compact text (every number with the digits it was given).
#[derive(Clone)]
pub struct ExactJson(Box<RawValue>);

/// A JSON object of exact values, its keys in order (as a `serde_json::Map` orders them).
pub type ExactObject = BTreeMap<String, ExactJson>;

impl ExactJson {
    /// The value's compact text.
    pub fn get(&self) -> &str {
        self.0.get()
    }

    /// Parses one JSON value; `None` when `text` is not exactly one.
    pub fn parse(text: &str) -> Option<Self> {
        serde_json::from_str::<Box<RawValue>>(text).ok().map(Self::compact)
    }

    /// JSON `null`.
    pub fn null() -> Self {
        Self(Self::null_raw())
    }

    /// A JSON string holding `text`.
    pub fn string(text: &str) -> Self {
        // A string always serializes.
        Self(serde_json::value::to_raw_value(text).unwrap_or_else(|_| Self::null_raw()))
    }

    pub fn is_object(&self) -> bool {
        self.get().starts_with('{')
    }

    pub fn is_string(&self) -> bool {
        self.get().starts_with('"')
    }

    /// The text of a JSON string value; `None` for any other value.
    pub fn as_str(&self) -> Option<String> {
        if self.is_string() {
            serde_json::from_str(self.get()).ok()
        } else {
            None
        }
    }

    /// The members of a JSON object value; `None` for any other value.
    pub fn as_object(&self) -> Option<ExactObject> {
        if self.is_object() {
            serde_json::from_str(self.get()).ok()
        } else {
            None
        }
    }

    /// An object of these members.
    pub fn object(members: &ExactObject) -> Self {
        // Keys are strings and values already JSON: it always serializes.
        Self(serde_json::value::to_raw_value(members).unwrap_or_else(|_| Self::null_raw()))
    }

    /// The value indented for a person to edit (numbers still as given).
    pub fn pretty(&self) -> String {
        let mut out = Vec::new();
        let mut ser = serde_json::Serializer::with_formatter(&mut out, serde_json::ser::PrettyFormatter::new());
        match pretty_tree(self.get()).and_then(|t| t.serialize(&mut ser).ok()) {
            Some(()) => String::from_utf8(out).unwrap_or_else(|_| self.get().to_owned()),
            None => self.get().to_owned(),
        }
    }

    fn compact(raw: Box<RawValue>) -> Self {
        let text = raw.get();
        if !text.bytes().any(|b| b.is_ascii_whitespace()) {
            return Self(raw);
        }
        // Valid JSON: whitespace outside strings separates tokens and can go.
        let mut out = String::with_capacity(text.len());
        let (mut in_string, mut escaped) = (false, false);
        for c in text.chars() {
            if in_string {
                out.push(c);
                match c {
                    _ if escaped => escaped = false,
                    '\\' => escaped = true,
                    '"' => in_string = false,
                    _ => {}
                }
            } else if c == '"' {
                in_string = true;
                out.push(c);
            } else if !matches!(c, ' ' | '\t' | '\n' | '\r') {
                out.push(c);
            }
        }
        RawValue::from_string(out).map(Self).unwrap_or(Self(raw))
    }

    fn null_raw() -> Box<RawValue> {
        RawValue::NULL.to_owned()
    }
}

/// A value whose objects and arrays can be indented, its scalars kept as text.
enum Pretty {
    Scalar(Box<RawValue>),
    Array(Vec<Pretty>),
    Object(Vec<(String, Pretty)>),
}

fn pretty_tree(text: &str) -> Option<Pretty> {
    if text.starts_with('[') {
        let items: Vec<Box<RawValue>> = serde_json::from_str(text).ok()?;
        items
            .iter()
            .map(|i| pretty_tree(i.get()))
            .collect::<Option<_>>()
            .map(Pretty::Array)
    } else if text.starts_with('{') {
        let Members(members) = serde_json::from_str(text).ok()?;
        members
            .into_iter()
            .map(|(k, v)| pretty_tree(v.get()).map(|t| (k, t)))
            .collect::<Option<_>>()
            .map(Pretty::Object)
    } else {
        RawValue::from_string(text.to_owned()).ok().map(Pretty::Scalar)
    }
}

/// An object's members in the order written.
struct Members(Vec<(String, Box<RawValue>)>);

impl<'de> Deserialize<'de> for Members {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct Visit;
        impl<'de> serde::de::Visitor<'de> for Visit {
            type Value = Members;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a JSON object")
            }
            fn visit_map<A: serde::de::MapAccess<'de>>(self, mut map: A) -> Result<Members, A::Error> {
                let mut out = Vec::new();
                while let Some(member) = map.next_entry()? {
                    out.push(member);
                }
                Ok(Members(out))
            }
        }
        d.deserialize_map(Visit)
    }
}

impl Serialize for Pretty {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        match self {
            Pretty::Scalar(raw) => raw.serialize(s),
            Pretty::Array(items) => s.collect_seq(items),
            Pretty::Object(members) => s.collect_map(members.iter().map(|(k, v)| (k, v))),
        }
    }
}

impl PartialEq for ExactJson {
    fn eq(&self, other: &Self) -> bool {
        self.get() == other.get()
    }
}

impl fmt::Debug for ExactJson {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.get())
    }
}

impl Serialize for ExactJson {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        self.0.serialize(s)
    }
}

impl<'de> Deserialize<'de> for ExactJson {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        Box::<RawValue>::deserialize(d).map(Self::compact)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn numbers_keep_every_digit() {
        for text in [
            "12345678901234567890123",
            "1234567890123456.78",
            "0.10",
            "1e400",
            "-0",
            "[1.50,{\"a\":2.000}]",
        ] {
            let v = ExactJson::parse(text).expect("json");
            assert_eq!(v.get(), text);
            let out = serde_json::to_string(&v).expect("serializes");
            assert_eq!(out, text);
        }
    }

    #[test]
    fn whitespace_between_tokens_goes_and_inside_strings_stays() {
        let v = ExactJson::parse(" {\n \"a b\" : [ 1 ,\t\"x \\\" y\" ] , \"c\":\"\\\\\" } ").expect("json");
        assert_eq!(v.get(), r#"{"a b":[1,"x \" y"],"c":"\\"}"#);
    }

    #[test]
    fn not_one_json_value_is_refused() {
        for text in ["", "{", "1 2", "{\"a\":}", "nul"] {
            assert!(ExactJson::parse(text).is_none(), "{text:?}");
        }
    }

    #[test]
    fn an_object_round_trips_with_exact_members() {
        let v = ExactJson::parse(r#"{"z": 1.10, "a": {"n": 99999999999999999999}}"#).expect("json");
        let members = v.as_object().expect("object");
        assert_eq!(members["z"].get(), "1.10");
        assert_eq!(members["a"].get(), r#"{"n":99999999999999999999}"#);
        assert_eq!(
            ExactJson::object(&members).get(),
            r#"{"a":{"n":99999999999999999999},"z":1.10}"#
        );
        assert!(ExactJson::parse("[1]").expect("json").as_object().is_none());
    }

    #[test]
    fn strings() {
        let v = ExactJson::string("a \"b\"");
        assert!(v.is_string());
        assert_eq!(v.as_str().as_deref(), Some("a \"b\""));
        assert_eq!(ExactJson::parse("1").expect("json").as_str(), None);
    }

    #[test]
    fn pretty_text_keeps_the_members_order() {
        let v = ExactJson::parse(r#"{"z":1,"a":{"y":2,"b":3}}"#).expect("json");
        assert_eq!(
            v.pretty(),
            "{\n  \"z\": 1,\n  \"a\": {\n    \"y\": 2,\n    \"b\": 3\n  }\n}"
        );
    }

    #[test]
    fn pretty_text_keeps_numbers() {
        let v = ExactJson::parse(r#"{"fee":1234567890123456.78,"tags":[1.0,"x"]}"#).expect("json");
        let p = v.pretty();
        assert_eq!(
            p,
            "{\n  \"fee\": 1234567890123456.78,\n  \"tags\": [\n    1.0,\n    \"x\"\n  ]\n}"
        );
        assert_eq!(ExactJson::parse(&p).expect("json"), v);
    }
}
