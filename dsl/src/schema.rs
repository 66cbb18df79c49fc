//! The canonical event schema, loaded from `docs/schema/event.schema.json` (embedded at build
//! time), as the checker sees it: a map from dotted field path to type.
//!
//! A rule may reference a field listed in the schema or any field under `labels.*`
//! (custom, string-valued); everything else is a typo until the schema says otherwise.

use std::collections::BTreeMap;
use std::sync::OnceLock;

use serde_json::Value;

/// The schema's source text.
pub const EVENT_SCHEMA_JSON: &str = include_str!("../../docs/schema/event.schema.json");

/// The scalar type of a field.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum FieldType {
    /// A string compared as is (ECS `keyword` and `text`).
    Keyword,
    /// An IP address in canonical text form.
    Ip,
    /// A date (RFC 3339 text).
    Date,
    /// An integer.
    Integer,
    /// A floating-point number.
    Number,
    /// `true` or `false`.
    Boolean,
}

impl FieldType {
    /// The name used in diagnostics.
    pub fn name(self) -> &'static str {
        match self {
            FieldType::Keyword => "string",
            FieldType::Ip => "ip",
            FieldType::Date => "date",
            FieldType::Integer => "integer",
            FieldType::Number => "number",
            FieldType::Boolean => "boolean",
        }
    }

    /// Whether values are JSON strings.
    pub fn is_textual(self) -> bool {
        matches!(self, FieldType::Keyword | FieldType::Ip | FieldType::Date)
    }

    /// Whether values are JSON numbers.
    pub fn is_numeric(self) -> bool {
        matches!(self, FieldType::Integer | FieldType::Number)
    }
}

/// What the schema says about one field.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct FieldInfo {
    /// Scalar type (of the elements, for arrays).
    pub ty: FieldType,
    /// Whether the field holds an array.
    pub array: bool,
}

/// The canonical schema as a flat field table.
#[derive(Clone, Debug)]
pub struct Schema {
    fields: BTreeMap<String, FieldInfo>,
}

/// Why the schema file could not be read.
#[derive(Debug, thiserror::Error)]
pub enum SchemaError {
    /// Not JSON.
    #[error("event schema is not valid JSON")]
    Json(#[source] serde_json::Error),
    /// A node of an unsupported shape.
    #[error("event schema field `{0}` has an unsupported shape")]
    Shape(String),
}

impl Schema {
    /// The embedded canonical schema.
    pub fn canonical() -> &'static Schema {
        static SCHEMA: OnceLock<Schema> = OnceLock::new();
        SCHEMA.get_or_init(|| {
            // The embedded file is covered by a test; failing here means the build shipped a
            // broken schema, which no caller can recover from.
            Schema::from_json(EVENT_SCHEMA_JSON)
                .unwrap_or_else(|e| panic!("embedded event schema: {e}"))
        })
    }

    /// Reads a schema in the shape of `docs/schema/event.schema.json`.
    pub fn from_json(text: &str) -> Result<Schema, SchemaError> {
        let root: Value = serde_json::from_str(text).map_err(SchemaError::Json)?;
        let mut fields = BTreeMap::new();
        walk(&root, "", &mut fields)?;
        Ok(Schema { fields })
    }

    /// Looks up a field path; `labels.*` fields are strings.
    pub fn field(&self, path: &str) -> Option<FieldInfo> {
        if let Some(rest) = path.strip_prefix("labels.") {
            return (!rest.is_empty()).then_some(FieldInfo {
                ty: FieldType::Keyword,
                array: false,
            });
        }
        self.fields.get(path).copied()
    }

    /// Every field path, sorted.
    pub fn paths(&self) -> impl Iterator<Item = &str> {
        self.fields.keys().map(String::as_str)
    }
}

fn walk(
    node: &Value,
    prefix: &str,
    out: &mut BTreeMap<String, FieldInfo>,
) -> Result<(), SchemaError> {
    let Some(props) = node.get("properties").and_then(Value::as_object) else {
        return Ok(());
    };
    for (name, child) in props {
        let path = if prefix.is_empty() {
            name.clone()
        } else {
            format!("{prefix}.{name}")
        };
        if child.get("properties").is_some() {
            walk(child, &path, out)?;
        } else if child
            .get("additionalProperties")
            .is_some_and(Value::is_object)
        {
            // `labels`: open string-valued object, handled by `Schema::field`.
        } else {
            let info = leaf(child).ok_or_else(|| SchemaError::Shape(path.clone()))?;
            out.insert(path, info);
        }
    }
    Ok(())
}

fn leaf(node: &Value) -> Option<FieldInfo> {
    let ty = node.get("type")?;
    let format = node.get("format").and_then(Value::as_str);
    let scalar = |t: &str| match (t, format) {
        ("string", Some("ip")) => Some(FieldType::Ip),
        ("string", Some("date-time")) => Some(FieldType::Date),
        ("string", _) => Some(FieldType::Keyword),
        ("integer", _) => Some(FieldType::Integer),
        ("number", _) => Some(FieldType::Number),
        ("boolean", _) => Some(FieldType::Boolean),
        _ => None,
    };
    match ty {
        Value::String(t) if t == "array" => {
            let item = leaf(node.get("items")?)?;
            Some(FieldInfo {
                ty: item.ty,
                array: true,
            })
        }
        Value::String(t) => Some(FieldInfo {
            ty: scalar(t)?,
            array: false,
        }),
        // `@timestamp` is a date that also accepts epoch milliseconds.
        Value::Array(_) if format == Some("date-time") => Some(FieldInfo {
            ty: FieldType::Date,
            array: false,
        }),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn embedded_schema_loads() {
        let s = Schema::canonical();
        assert!(s.paths().count() > 100);
        assert_eq!(s.field("user.name").map(|f| f.ty), Some(FieldType::Keyword));
        assert_eq!(s.field("source.ip").map(|f| f.ty), Some(FieldType::Ip));
        assert_eq!(
            s.field("source.port").map(|f| f.ty),
            Some(FieldType::Integer)
        );
        assert_eq!(
            s.field("event.category"),
            Some(FieldInfo {
                ty: FieldType::Keyword,
                array: true
            })
        );
        assert_eq!(s.field("@timestamp").map(|f| f.ty), Some(FieldType::Date));
        assert_eq!(
            s.field("labels.team").map(|f| f.ty),
            Some(FieldType::Keyword)
        );
        assert_eq!(s.field("labels."), None);
        assert_eq!(s.field("user.nmae"), None);
        assert_eq!(s.field("user"), None);
    }

    #[test]
    fn unsupported_shapes_are_errors() {
        let bad = r#"{"properties": {"x": {"type": "null"}}}"#;
        assert!(matches!(Schema::from_json(bad), Err(SchemaError::Shape(p)) if p == "x"));
    }
}
