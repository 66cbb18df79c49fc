//! The canonical event schema (`docs/schema/event.schema.json`, embedded at build time) as a
//! type checker for events.
//!
//! [`conform`] walks an event against the schema. Every field the schema lists must have the
//! schema's JSON type; `null` counts as absent. Fields the schema does not list are kept
//! unchecked (the schema is open). Two lossless coercions are applied, as JSON Schema and ECS
//! allow: a single value where the schema has an array becomes a one-element array, and an
//! integral float (`22.0`) in an integer field becomes an integer. IP fields are rewritten in
//! canonical text form ([`canonical::canonical_ip`]).

use std::collections::BTreeMap;
use std::sync::OnceLock;

use serde_json::{Map, Value};
use vigil_model::time::{epoch_millis, parse_rfc3339};

use crate::json::type_name;
use crate::{Reject, canonical};

/// The schema's source text.
const EVENT_SCHEMA_JSON: &str = include_str!("../../docs/schema/event.schema.json");

/// A leaf's scalar type.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Scalar {
    /// Any string.
    Keyword,
    /// An IP address as a string.
    Ip,
    /// RFC 3339 text.
    Date,
    /// RFC 3339 text or epoch milliseconds (`@timestamp`).
    DateOrMillis,
    /// A whole number.
    Integer,
    /// Any number.
    Number,
    /// `true` or `false`.
    Boolean,
}

impl Scalar {
    fn name(self) -> &'static str {
        match self {
            Scalar::Keyword => "string",
            Scalar::Ip => "ip",
            Scalar::Date => "date",
            Scalar::DateOrMillis => "date or epoch milliseconds",
            Scalar::Integer => "integer",
            Scalar::Number => "number",
            Scalar::Boolean => "boolean",
        }
    }
}

/// A schema node.
#[derive(Clone, Debug)]
pub(crate) enum Node {
    /// An object with the listed children.
    Object(BTreeMap<String, Node>),
    /// An open object whose values are all strings (`labels`).
    StringMap,
    /// A scalar, or an array of scalars.
    Leaf {
        /// Type of the value (of the elements, for arrays).
        ty: Scalar,
        /// Whether the value is an array.
        array: bool,
    },
}

/// The embedded schema's root object.
pub(crate) fn root() -> &'static BTreeMap<String, Node> {
    static ROOT: OnceLock<BTreeMap<String, Node>> = OnceLock::new();
    ROOT.get_or_init(|| {
        // Covered by a unit test: a failure here means the build shipped a broken schema.
        let v: Value = serde_json::from_str(EVENT_SCHEMA_JSON).expect("embedded schema is JSON");
        match read_node(&v, "") {
            Ok(Node::Object(children)) => children,
            Ok(_) => panic!("embedded schema: the root is not an object"),
            Err(path) => panic!("embedded schema: field `{path}` has an unsupported shape"),
        }
    })
}

fn read_node(v: &Value, path: &str) -> Result<Node, String> {
    if let Some(props) = v.get("properties").and_then(Value::as_object) {
        let mut children = BTreeMap::new();
        for (name, child) in props {
            let p = if path.is_empty() {
                name.clone()
            } else {
                format!("{path}.{name}")
            };
            children.insert(name.clone(), read_node(child, &p)?);
        }
        return Ok(Node::Object(children));
    }
    if v.get("additionalProperties")
        .and_then(|a| a.get("type"))
        .and_then(Value::as_str)
        == Some("string")
    {
        return Ok(Node::StringMap);
    }
    let format = v.get("format").and_then(Value::as_str);
    let scalar = |t: &str| match (t, format) {
        ("string", Some("ip")) => Some(Scalar::Ip),
        ("string", Some("date-time")) => Some(Scalar::Date),
        ("string", _) => Some(Scalar::Keyword),
        ("integer", _) => Some(Scalar::Integer),
        ("number", _) => Some(Scalar::Number),
        ("boolean", _) => Some(Scalar::Boolean),
        _ => None,
    };
    let leaf = match v.get("type") {
        Some(Value::String(t)) if t == "array" => match read_node(&v["items"], path)? {
            Node::Leaf { ty, array: false } => Some(Node::Leaf { ty, array: true }),
            _ => None,
        },
        Some(Value::String(t)) => scalar(t).map(|ty| Node::Leaf { ty, array: false }),
        Some(Value::Array(ts))
            if format == Some("date-time")
                && ts
                    .iter()
                    .all(|t| matches!(t.as_str(), Some("string" | "integer"))) =>
        {
            Some(Node::Leaf {
                ty: Scalar::DateOrMillis,
                array: false,
            })
        }
        _ => None,
    };
    leaf.ok_or_else(|| path.to_owned())
}

/// The type of the leaf at a dotted path: (scalar, is an array).
pub(crate) fn leaf(path: &str) -> Option<(Scalar, bool)> {
    let mut node = root();
    let mut parts = path.split('.').peekable();
    while let Some(part) = parts.next() {
        match (node.get(part)?, parts.peek()) {
            (Node::Object(children), Some(_)) => node = children,
            (Node::Leaf { ty, array }, None) => return Some((*ty, *array)),
            _ => return None,
        }
    }
    None
}

/// Checks `event` against the schema, applying the lossless coercions and writing IPs in
/// canonical form. `event` must be an object.
pub(crate) fn conform(event: &mut Value) -> Result<(), Reject> {
    match event {
        Value::Object(obj) => conform_object(obj, root(), ""),
        other => Err(violation(&"", "object", other)),
    }
}

fn conform_object(
    obj: &mut Map<String, Value>,
    schema: &BTreeMap<String, Node>,
    prefix: &str,
) -> Result<(), Reject> {
    for (key, value) in obj.iter_mut() {
        let Some(node) = schema.get(key) else {
            continue;
        };
        if value.is_null() {
            continue;
        }
        // Built only for nested objects and errors: most fields are fine leaves.
        let at = At { prefix, key };
        match node {
            Node::Object(children) => match value {
                Value::Object(child) => conform_object(child, children, &at.to_string())?,
                other => return Err(violation(&at, "object", other)),
            },
            Node::StringMap => match value {
                Value::Object(child) => {
                    for (k, v) in child.iter() {
                        if !matches!(v, Value::String(_) | Value::Null) {
                            return Err(violation(&format!("{at}.{k}"), "string", v));
                        }
                    }
                }
                other => return Err(violation(&at, "object", other)),
            },
            Node::Leaf { ty, array: false } => conform_scalar(value, *ty, &at)?,
            Node::Leaf { ty, array: true } => {
                if !value.is_array() {
                    *value = Value::Array(vec![value.take()]);
                }
                if let Value::Array(items) = value {
                    for item in items {
                        conform_scalar(item, *ty, &at)?;
                    }
                }
            }
        }
    }
    Ok(())
}

/// A field's dotted path, joined when it is shown.
struct At<'a> {
    prefix: &'a str,
    key: &'a str,
}

impl std::fmt::Display for At<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        if self.prefix.is_empty() {
            f.write_str(self.key)
        } else {
            write!(f, "{}.{}", self.prefix, self.key)
        }
    }
}

fn conform_scalar(v: &mut Value, ty: Scalar, path: &At<'_>) -> Result<(), Reject> {
    let ok = match (ty, &*v) {
        (Scalar::Keyword, Value::String(_)) => true,
        (Scalar::Ip, Value::String(s)) => {
            let Some(ip) = canonical::canonical_ip(s) else {
                return Err(Reject::new(
                    "schema_violation",
                    format!("{path}: `{s}` is not an IP address"),
                ));
            };
            *v = Value::String(ip);
            true
        }
        (Scalar::Date, Value::String(s)) => {
            if parse_rfc3339(s).is_none() {
                return Err(Reject::new(
                    "schema_violation",
                    format!("{path}: `{s}` is not an RFC 3339 timestamp"),
                ));
            }
            true
        }
        (Scalar::DateOrMillis, Value::String(s)) => parse_rfc3339(s).is_some(),
        (Scalar::DateOrMillis, Value::Number(n)) => {
            n.is_i64() || n.as_f64().and_then(epoch_millis).is_some()
        }
        (Scalar::Integer, Value::Number(n)) => {
            if n.is_i64() || n.is_u64() {
                true
            } else if let Some(i) = n.as_f64().and_then(epoch_millis) {
                *v = Value::from(i);
                true
            } else {
                false
            }
        }
        (Scalar::Number, Value::Number(_)) => true,
        (Scalar::Boolean, Value::Bool(_)) => true,
        _ => false,
    };
    if ok {
        Ok(())
    } else {
        Err(violation(path, ty.name(), v))
    }
}

fn violation(path: &dyn std::fmt::Display, expected: &str, found: &Value) -> Reject {
    let path = path.to_string();
    let path = if path.is_empty() { "event" } else { &path };
    Reject::new(
        "schema_violation",
        format!("{path}: expected {expected}, found {}", type_name(found)),
    )
}

/// Every field of the schema: its dotted path and its kind (a typed leaf, or an open map of
/// strings such as `labels`), sorted by path.
pub fn fields() -> Vec<(String, Field)> {
    fn walk(m: &BTreeMap<String, Node>, prefix: &str, out: &mut Vec<(String, Field)>) {
        for (k, n) in m {
            let p = if prefix.is_empty() {
                k.clone()
            } else {
                format!("{prefix}.{k}")
            };
            match n {
                Node::Object(c) => walk(c, &p, out),
                Node::StringMap => out.push((p, Field::StringMap)),
                Node::Leaf { ty, array } => out.push((
                    p,
                    Field::Leaf {
                        ty: *ty,
                        array: *array,
                    },
                )),
            }
        }
    }
    let mut out = Vec::new();
    walk(root(), "", &mut out);
    out
}

/// A field of the schema.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Field {
    /// A scalar, or an array of scalars.
    Leaf {
        /// The scalar's type.
        ty: Scalar,
        /// Whether the value is an array.
        array: bool,
    },
    /// An open object whose values are strings.
    StringMap,
}

/// Every leaf path of the schema with its node, sorted (for tests and documentation).
#[cfg(test)]
pub(crate) fn leaves() -> Vec<(String, Scalar, bool)> {
    fields()
        .into_iter()
        .filter_map(|(p, f)| match f {
            Field::Leaf { ty, array } => Some((p, ty, array)),
            Field::StringMap => None,
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn check(mut v: Value) -> Result<Value, String> {
        conform(&mut v).map(|()| v).map_err(|r| r.to_string())
    }

    #[test]
    fn embedded_schema_loads() {
        let leaves = leaves();
        assert!(leaves.len() > 100);
        let find = |p: &str| {
            leaves
                .iter()
                .find(|(q, _, _)| q == p)
                .map(|(_, t, a)| (*t, *a))
        };
        assert_eq!(find("source.ip"), Some((Scalar::Ip, false)));
        assert_eq!(find("host.ip"), Some((Scalar::Ip, true)));
        assert_eq!(find("source.port"), Some((Scalar::Integer, false)));
        assert_eq!(find("event.category"), Some((Scalar::Keyword, true)));
        assert_eq!(find("@timestamp"), Some((Scalar::DateOrMillis, false)));
        assert_eq!(
            find("aws.cloudtrail.mfa_authenticated"),
            Some((Scalar::Boolean, false))
        );
        assert_eq!(find("event.risk_score"), Some((Scalar::Number, false)));
        assert_eq!(find("event.created"), Some((Scalar::Date, false)));
    }

    #[test]
    fn accepts_well_typed_and_unknown_fields() {
        let v = json!({
            "@timestamp": 1_796_032_800_123_i64,
            "event": {"category": ["authentication"], "risk_score": 1.5, "created": "2026-11-30T10:00:00Z"},
            "source": {"ip": "10.0.0.1", "port": 22},
            "labels": {"env": "prod"},
            "custom": {"anything": [1, "x"]},
            "user": {"name": null},
        });
        assert_eq!(check(v.clone()), Ok(v));
    }

    #[test]
    fn rejects_wrong_types() {
        for (v, msg) in [
            (
                json!({"source": {"port": "22"}}),
                "source.port: expected integer, found string",
            ),
            (
                json!({"source": {"port": 22.5}}),
                "source.port: expected integer, found number",
            ),
            (
                json!({"source": "10.0.0.1"}),
                "source: expected object, found string",
            ),
            (
                json!({"user": {"name": ["a"]}}),
                "user.name: expected string, found array",
            ),
            (
                json!({"event": {"category": [1]}}),
                "event.category: expected string, found integer",
            ),
            (
                json!({"labels": {"n": 5}}),
                "labels.n: expected string, found integer",
            ),
            (
                json!({"labels": "x"}),
                "labels: expected object, found string",
            ),
            (
                json!({"aws": {"cloudtrail": {"mfa_authenticated": "true"}}}),
                "aws.cloudtrail.mfa_authenticated: expected boolean, found string",
            ),
            (
                json!({"source": {"ip": "10.0.0.256"}}),
                "source.ip: `10.0.0.256` is not an IP address",
            ),
            (
                json!({"host": {"ip": ["10.0.0.1", "nope"]}}),
                "host.ip: `nope` is not an IP address",
            ),
            (
                json!({"event": {"created": "yesterday"}}),
                "event.created: `yesterday` is not an RFC 3339 timestamp",
            ),
            (
                json!({"@timestamp": true}),
                "@timestamp: expected date or epoch milliseconds, found boolean",
            ),
        ] {
            assert_eq!(check(v), Err(format!("schema_violation: {msg}")));
        }
        assert_eq!(
            check(json!([])),
            Err("schema_violation: event: expected object, found array".into())
        );
    }

    #[test]
    fn coerces_losslessly() {
        let v = json!({
            "event": {"category": "authentication"},
            "source": {"port": 22.0, "ip": "::FFFF:10.0.0.1"},
            "host": {"ip": "2001:DB8::1"},
        });
        assert_eq!(
            check(v),
            Ok(json!({
                "event": {"category": ["authentication"]},
                "source": {"port": 22, "ip": "10.0.0.1"},
                "host": {"ip": ["2001:db8::1"]},
            }))
        );
    }
}
