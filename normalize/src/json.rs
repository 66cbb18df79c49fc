//! Small helpers for reading source records and building nested events by dotted path.

use serde_json::{Map, Value};
use vigil_model::time::epoch_millis;

/// The value at a dotted path of nested objects (`"a.b.c"`), if every step is an object.
pub(crate) fn get<'a>(v: &'a Value, path: &str) -> Option<&'a Value> {
    path.split('.')
        .try_fold(v, |v, key| v.as_object()?.get(key))
}

/// The value at a dotted path of an object.
pub(crate) fn get_in<'a>(obj: &'a Map<String, Value>, path: &str) -> Option<&'a Value> {
    match path.split_once('.') {
        None => obj.get(path),
        Some((first, rest)) => get(obj.get(first)?, rest),
    }
}

/// The non-empty string at a dotted path of an object.
pub(crate) fn get_str_in<'a>(obj: &'a Map<String, Value>, path: &str) -> Option<&'a str> {
    get_in(obj, path)
        .and_then(Value::as_str)
        .filter(|s| !s.is_empty())
}

/// The non-empty string at a dotted path.
pub(crate) fn get_str<'a>(v: &'a Value, path: &str) -> Option<&'a str> {
    get(v, path)
        .and_then(Value::as_str)
        .filter(|s| !s.is_empty())
}

/// A JSON value that is neither absent nor `null`.
pub(crate) fn present<'a>(v: &'a Value, path: &str) -> Option<&'a Value> {
    get(v, path).filter(|v| !v.is_null())
}

/// The object `key` of `obj`, created (or replacing a `null` or a scalar) when needed.
pub(crate) fn child_object<'a>(
    obj: &'a mut Map<String, Value>,
    key: &str,
) -> &'a mut Map<String, Value> {
    let slot = obj.entry(key).or_insert_with(|| Value::Object(Map::new()));
    object_mut(slot)
}

/// `v` as an object, replacing it with an empty object if it is not one.
pub(crate) fn object_mut(v: &mut Value) -> &mut Map<String, Value> {
    if !v.is_object() {
        *v = Value::Object(Map::new());
    }
    match v {
        Value::Object(m) => m,
        _ => unreachable!("just made an object"),
    }
}

/// Sets the value at a dotted path, creating intermediate objects.
pub(crate) fn set(obj: &mut Map<String, Value>, path: &str, value: impl Into<Value>) {
    let mut cur = obj;
    let mut parts = path.split('.').peekable();
    while let Some(key) = parts.next() {
        if parts.peek().is_none() {
            cur.insert(key.to_owned(), value.into());
            return;
        }
        cur = child_object(cur, key);
    }
}

/// Copies the value at `from` of `src` to the dotted path `to`, unless it is absent, `null`
/// or an empty string. Types are not converted: the schema check reports a wrong one.
pub(crate) fn copy(obj: &mut Map<String, Value>, to: &str, src: &Value, from: &str) {
    if let Some(v) = present(src, from)
        && v.as_str() != Some("")
    {
        set(obj, to, v.clone());
    }
}

/// Epoch milliseconds from a JSON number (whole, exact in a double).
pub(crate) fn number_millis(v: &Value) -> Option<i64> {
    match v {
        Value::Number(n) => n.as_i64().or_else(|| n.as_f64().and_then(epoch_millis)),
        _ => None,
    }
}

/// An integer from a JSON number or a decimal string (as sources such as evtx write them).
pub(crate) fn loose_int(v: &Value) -> Option<i64> {
    match v {
        Value::Number(n) => n.as_i64(),
        Value::String(s) => s.trim().parse().ok(),
        _ => None,
    }
}

/// The name of a JSON value's type, for messages.
pub(crate) fn type_name(v: &Value) -> &'static str {
    match v {
        Value::Null => "null",
        Value::Bool(_) => "boolean",
        Value::Number(n) if n.is_f64() => "number",
        Value::Number(_) => "integer",
        Value::String(_) => "string",
        Value::Array(_) => "array",
        Value::Object(_) => "object",
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn get_and_set_by_path() {
        let mut m = Map::new();
        set(&mut m, "a.b.c", 1);
        set(&mut m, "a.d", "x");
        let v = Value::Object(m);
        assert_eq!(v, json!({"a": {"b": {"c": 1}, "d": "x"}}));
        assert_eq!(get(&v, "a.b.c"), Some(&json!(1)));
        assert_eq!(get_str(&v, "a.d"), Some("x"));
        assert_eq!(get(&v, "a.d.e"), None);
    }

    #[test]
    fn copy_skips_null_and_empty() {
        let src = json!({"a": null, "b": "", "c": 5});
        let mut m = Map::new();
        copy(&mut m, "x.a", &src, "a");
        copy(&mut m, "x.b", &src, "b");
        copy(&mut m, "x.c", &src, "c");
        copy(&mut m, "x.d", &src, "d");
        assert_eq!(Value::Object(m), json!({"x": {"c": 5}}));
    }

    #[test]
    fn numbers() {
        assert_eq!(
            number_millis(&json!(1_796_032_800_123_i64)),
            Some(1_796_032_800_123)
        );
        assert_eq!(
            number_millis(&json!(1_796_032_800_123.0)),
            Some(1_796_032_800_123)
        );
        assert_eq!(number_millis(&json!(1.5)), None);
        assert_eq!(number_millis(&json!("1")), None);
        assert_eq!(loose_int(&json!("49211")), Some(49211));
        assert_eq!(loose_int(&json!(3)), Some(3));
        assert_eq!(loose_int(&json!("-")), None);
    }
}
