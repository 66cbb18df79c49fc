//! ECS: the canonical format itself. The event is kept as it is — unknown fields included —
//! after flat dotted keys (`"user.name"`) are expanded into nested objects; the shared checks
//! then validate every field the schema lists. `@timestamp` is RFC 3339 or epoch
//! milliseconds; `event.id` is kept.

use serde_json::{Map, Value};
use vigil_model::time::parse_rfc3339;

use super::Parsed;
use crate::json::{self, number_millis};
use crate::{Reject, canonical};

/// Parses one ECS event.
pub(crate) fn parse(record: Value) -> Result<Parsed, Reject> {
    let Value::Object(obj) = record else {
        unreachable!("decoded as an object")
    };
    let timestamp = match obj.get("@timestamp") {
        None | Some(Value::Null) => {
            return Err(Reject::new("missing_timestamp", "event has no @timestamp"));
        }
        Some(Value::String(s)) => parse_rfc3339(s),
        Some(v @ Value::Number(_)) => number_millis(v),
        Some(_) => None,
    }
    .ok_or_else(|| {
        Reject::new(
            "invalid_timestamp",
            "@timestamp is neither RFC 3339 nor epoch milliseconds",
        )
    })?;
    let obj = expand(obj, "")?;
    let event = Value::Object(obj);
    let case_insensitive = canonical::ecs_case_insensitive(&event);
    Ok(Parsed {
        event,
        timestamp,
        case_insensitive,
    })
}

/// ECS `event.id`, nested or as a flat key.
pub(crate) fn source_id(record: &Value) -> Option<String> {
    json::get_str(record, "event.id")
        .or_else(|| record.get("event.id").and_then(Value::as_str))
        .filter(|s| !s.is_empty())
        .map(str::to_owned)
}

/// Expands dotted keys into nested objects, at every level but inside `labels` (whose keys are
/// free-form). Keys with an empty segment (`"a..b"`, `".a"`) are kept as they are. A value that
/// would land on a different value already there is a `schema_violation`.
fn expand(mut obj: Map<String, Value>, prefix: &str) -> Result<Map<String, Value>, Reject> {
    if !obj.keys().any(|k| is_dotted(k)) {
        // Nothing to merge at this level (the usual case): expand the children in place.
        for (key, value) in obj.iter_mut() {
            if let Value::Object(m) = value {
                let path = join(prefix, key);
                if path != "labels" {
                    *m = expand(std::mem::take(m), &path)?;
                }
            }
        }
        return Ok(obj);
    }
    let mut out = Map::new();
    // Nested keys first, so that a flat key is merged into (not replaced by) its object.
    let (flat, nested): (Vec<_>, Vec<_>) = obj.into_iter().partition(|(k, _)| is_dotted(k));
    for (key, value) in nested.into_iter().chain(flat) {
        let path = join(prefix, &key);
        let value = match value {
            Value::Object(m) if path != "labels" => Value::Object(expand(m, &path)?),
            v => v,
        };
        if is_dotted(&key) {
            insert_path(&mut out, &key, value, prefix)?;
        } else {
            merge(&mut out, key, value, &path)?;
        }
    }
    Ok(out)
}

fn is_dotted(k: &str) -> bool {
    k.contains('.') && k.split('.').all(|s| !s.is_empty())
}

fn join(prefix: &str, key: &str) -> String {
    if prefix.is_empty() {
        key.to_owned()
    } else {
        format!("{prefix}.{key}")
    }
}

fn insert_path(
    out: &mut Map<String, Value>,
    key: &str,
    value: Value,
    prefix: &str,
) -> Result<(), Reject> {
    let mut cur = out;
    let mut done = prefix.to_owned();
    let mut parts = key.split('.').peekable();
    while let Some(part) = parts.next() {
        done = join(&done, part);
        if parts.peek().is_none() {
            return merge(cur, part.to_owned(), value, &done);
        }
        let slot = cur.entry(part).or_insert_with(|| Value::Object(Map::new()));
        cur = match slot {
            Value::Object(m) => m,
            _ => return Err(conflict(&done)),
        };
    }
    Ok(())
}

fn merge(
    out: &mut Map<String, Value>,
    key: String,
    value: Value,
    path: &str,
) -> Result<(), Reject> {
    match out.get_mut(&key) {
        None => {
            out.insert(key, value);
            Ok(())
        }
        Some(existing) if *existing == value => Ok(()),
        Some(Value::Object(existing)) => match value {
            Value::Object(m) => {
                for (k, v) in m {
                    let p = join(path, &k);
                    merge(existing, k, v, &p)?;
                }
                Ok(())
            }
            _ => Err(conflict(path)),
        },
        Some(_) => Err(conflict(path)),
    }
}

fn conflict(path: &str) -> Reject {
    Reject::new(
        "schema_violation",
        format!("`{path}` is given twice (as a flat dotted key and nested) with different values"),
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn ex(v: Value) -> Result<Value, String> {
        let Value::Object(m) = v else { panic!() };
        expand(m, "").map(Value::Object).map_err(|r| r.to_string())
    }

    #[test]
    fn expands_flat_keys() {
        assert_eq!(
            ex(
                json!({"user.name": "a", "user": {"domain": "d"}, "event.id": "x", "labels": {"a.b": "c"}})
            ),
            Ok(
                json!({"user": {"name": "a", "domain": "d"}, "event": {"id": "x"}, "labels": {"a.b": "c"}})
            )
        );
        assert_eq!(
            ex(json!({"x": {"y.z": 1}, "a..b": 2, "same.v": 1, "same": {"v": 1}})),
            Ok(json!({"x": {"y": {"z": 1}}, "a..b": 2, "same": {"v": 1}}))
        );
    }

    #[test]
    fn rejects_conflicts() {
        assert_eq!(
            ex(json!({"user.name": "a", "user": {"name": "b"}})),
            Err("schema_violation: `user.name` is given twice (as a flat dotted key and nested) with different values".into())
        );
        assert_eq!(
            ex(json!({"user.name": "a", "user": "b"})),
            Err("schema_violation: `user` is given twice (as a flat dotted key and nested) with different values".into())
        );
    }
}
