//! Projected JSON decoding: parse one line and keep only the fields the loaded rules reference
//! (plus `@timestamp`, `tenant_id` and `event.id`), borrowing strings from the line where they
//! have no escapes. Everything else is skipped by the parser without being materialized.
//!
//! Nested objects and flat dotted keys address the same path: `{"user":{"name":"a"}}` and
//! `{"user.name":"a"}` both give `user.name`. Arrays give one value per scalar element.

use std::fmt;

use serde::de::{DeserializeSeed, Deserializer, IgnoredAny, MapAccess, SeqAccess, Visitor};
use vigil_dsl::{EventView, FieldId, Test, ValueRef};

/// A trie over dotted field paths; each path that is a leaf owns a slot.
#[derive(Clone, Debug)]
pub struct FieldTrie {
    nodes: Vec<Node>,
    /// Number of slots.
    slots: usize,
}

#[derive(Clone, Debug, Default)]
struct Node {
    children: Vec<(Box<str>, u32)>,
    slot: Option<u16>,
}

impl FieldTrie {
    /// A trie where `paths[i]` gets slot `i`.
    pub fn new(paths: &[String]) -> FieldTrie {
        let mut t = FieldTrie {
            nodes: vec![Node::default()],
            slots: paths.len(),
        };
        for (slot, path) in paths.iter().enumerate() {
            let mut node = 0u32;
            for seg in path.split('.') {
                node = match t.nodes[node as usize]
                    .children
                    .iter()
                    .find(|(k, _)| &**k == seg)
                {
                    Some(&(_, n)) => n,
                    None => {
                        let n = t.nodes.len() as u32;
                        t.nodes.push(Node::default());
                        t.nodes[node as usize].children.push((seg.into(), n));
                        n
                    }
                };
            }
            t.nodes[node as usize].slot = u16::try_from(slot).ok();
        }
        t
    }

    fn child(&self, node: u32, key: &str) -> Option<u32> {
        let children = &self.nodes[node as usize].children;
        if let Some(&(_, n)) = children
            .iter()
            .find(|(k, _)| k.len() == key.len() && &**k == key)
        {
            return Some(n);
        }
        if !key.contains('.') {
            return None;
        }
        let mut n = node;
        for seg in key.split('.') {
            n = self.nodes[n as usize]
                .children
                .iter()
                .find(|(k, _)| &**k == seg)?
                .1;
        }
        Some(n)
    }
}

/// One decoded value.
#[derive(Clone, Debug, PartialEq)]
pub enum Val<'a> {
    /// A string without escapes, borrowed from the line.
    Str(&'a str),
    /// A string that had escapes.
    Owned(String),
    /// A number.
    Num(f64),
    /// A boolean.
    Bool(bool),
    /// `null`.
    Null,
}

impl<'a> Val<'a> {
    fn as_ref(&self) -> ValueRef<'_> {
        match self {
            Val::Str(s) => ValueRef::Str(s),
            Val::Owned(s) => ValueRef::Str(s),
            Val::Num(n) => ValueRef::Num(*n),
            Val::Bool(b) => ValueRef::Bool(*b),
            Val::Null => ValueRef::Null,
        }
    }

    /// The string value, if this is a string.
    pub fn as_str(&self) -> Option<&str> {
        match self {
            Val::Str(s) => Some(s),
            Val::Owned(s) => Some(s),
            _ => None,
        }
    }
}

/// The values of one decoded line, by slot.
#[derive(Debug, Default)]
pub struct Decoded<'a> {
    /// Sorted by slot (stably: a slot's values keep their order in the line).
    vals: Vec<(u16, Val<'a>)>,
    /// Per slot, the range of its values in `vals` (empty when it has none).
    spans: Vec<(u32, u32)>,
}

impl<'a> Decoded<'a> {
    /// Reuses another line's allocation for a new line (the vector is emptied first).
    pub fn recycle<'b>(self) -> Decoded<'b> {
        let mut v = self.vals;
        v.clear();
        // An empty vector maps to an empty vector; collecting in place keeps the allocation.
        Decoded {
            vals: v.into_iter().map(|_| (0, Val::Null)).collect(),
            spans: self.spans,
        }
    }

    /// The values of a slot.
    fn values(&self, slot: u16) -> &[(u16, Val<'a>)] {
        match self.spans.get(usize::from(slot)) {
            Some(&(from, to)) => &self.vals[from as usize..to as usize],
            None => &[],
        }
    }

    /// The values of a slot.
    pub(crate) fn refs(&self, slot: u16) -> impl Iterator<Item = ValueRef<'_>> {
        self.values(slot).iter().map(|(_, v)| v.as_ref())
    }

    /// The first value of a slot.
    pub fn first(&self, slot: u16) -> Option<&Val<'a>> {
        self.values(slot).first().map(|(_, v)| v)
    }

    /// Decodes `line` into `self` (which must be empty) with `trie`.
    pub fn decode(&mut self, trie: &FieldTrie, line: &'a [u8]) -> Result<(), DecodeError> {
        let mut de = sonic_rs::Deserializer::from_slice(line);
        de.deserialize_map(ObjSeed {
            trie,
            node: 0,
            out: &mut self.vals,
        })
        .map_err(DecodeError)?;
        de.end().map_err(DecodeError)?;
        // Index the values by slot, so that a rule's tests read a field without a scan. Lines
        // carry few projected values, and the stable sort is an insertion sort for them.
        self.vals.sort_by_key(|(s, _)| *s);
        self.spans.clear();
        self.spans.resize(trie.slots, (0, 0));
        let mut from = 0;
        for (i, (s, _)) in self.vals.iter().enumerate() {
            if self.vals.get(i + 1).is_none_or(|(next, _)| next != s) {
                self.spans[usize::from(*s)] = (from, i as u32 + 1);
                from = i as u32 + 1;
            }
        }
        Ok(())
    }
}

impl EventView for Decoded<'_> {
    fn any_value(&self, field: FieldId, f: &mut dyn FnMut(ValueRef<'_>) -> bool) -> bool {
        self.values(field.0).iter().any(|(_, v)| f(v.as_ref()))
    }

    fn passes(&self, field: FieldId, t: &Test) -> bool {
        let vs = self.values(field.0);
        match t {
            Test::Exists => !vs.is_empty(),
            t => vs.iter().any(|(_, v)| t.test(v.as_ref())),
        }
    }
}

/// Why a line is not a JSON object.
#[derive(Debug)]
pub struct DecodeError(sonic_rs::Error);

impl fmt::Display for DecodeError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // The parser adds an excerpt with a caret on further lines; a reject's line already
        // carries the input, so keep the one-line message.
        let msg = self.0.to_string();
        f.write_str(msg.lines().next().unwrap_or("invalid JSON"))
    }
}

impl std::error::Error for DecodeError {}

struct ObjSeed<'t, 'v, 'a> {
    trie: &'t FieldTrie,
    node: u32,
    out: &'v mut Vec<(u16, Val<'a>)>,
}

impl<'a> DeserializeSeed<'a> for ObjSeed<'_, '_, 'a> {
    type Value = ();
    fn deserialize<D: Deserializer<'a>>(self, d: D) -> Result<(), D::Error> {
        d.deserialize_any(self)
    }
}

impl<'a> Visitor<'a> for ObjSeed<'_, '_, 'a> {
    type Value = ();

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a JSON object")
    }

    fn visit_map<A: MapAccess<'a>>(self, mut map: A) -> Result<(), A::Error> {
        while let Some(key) = map.next_key_seed(KeySeed)? {
            let key: &str = match &key {
                Key::Borrowed(k) => k,
                Key::Owned(k) => k,
            };
            match self.trie.child(self.node, key) {
                Some(n) => {
                    let node = &self.trie.nodes[n as usize];
                    map.next_value_seed(LeafSeed {
                        trie: self.trie,
                        slot: node.slot,
                        node: (!node.children.is_empty()).then_some(n),
                        out: self.out,
                    })?;
                }
                None => {
                    map.next_value::<IgnoredAny>()?;
                }
            }
        }
        Ok(())
    }

    // A path that is expected to be an object holds something else: nothing to extract.
    fn visit_bool<E>(self, _: bool) -> Result<(), E> {
        Ok(())
    }
    fn visit_i64<E>(self, _: i64) -> Result<(), E> {
        Ok(())
    }
    fn visit_u64<E>(self, _: u64) -> Result<(), E> {
        Ok(())
    }
    fn visit_f64<E>(self, _: f64) -> Result<(), E> {
        Ok(())
    }
    fn visit_str<E>(self, _: &str) -> Result<(), E> {
        Ok(())
    }
    fn visit_unit<E>(self) -> Result<(), E> {
        Ok(())
    }
    fn visit_seq<A: SeqAccess<'a>>(self, mut seq: A) -> Result<(), A::Error> {
        while seq.next_element::<IgnoredAny>()?.is_some() {}
        Ok(())
    }
}

struct LeafSeed<'t, 'v, 'a> {
    trie: &'t FieldTrie,
    slot: Option<u16>,
    node: Option<u32>,
    out: &'v mut Vec<(u16, Val<'a>)>,
}

impl<'a> LeafSeed<'_, '_, 'a> {
    fn push(&mut self, v: Val<'a>) {
        if let Some(s) = self.slot {
            self.out.push((s, v));
        }
    }
}

impl<'a> DeserializeSeed<'a> for LeafSeed<'_, '_, 'a> {
    type Value = ();
    fn deserialize<D: Deserializer<'a>>(self, d: D) -> Result<(), D::Error> {
        d.deserialize_any(self)
    }
}

impl<'a> Visitor<'a> for LeafSeed<'_, '_, 'a> {
    type Value = ();

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("any JSON value")
    }

    fn visit_borrowed_str<E>(mut self, v: &'a str) -> Result<(), E> {
        self.push(Val::Str(v));
        Ok(())
    }
    fn visit_str<E>(mut self, v: &str) -> Result<(), E> {
        self.push(Val::Owned(v.to_owned()));
        Ok(())
    }
    fn visit_bool<E>(mut self, v: bool) -> Result<(), E> {
        self.push(Val::Bool(v));
        Ok(())
    }
    fn visit_i64<E>(mut self, v: i64) -> Result<(), E> {
        self.push(Val::Num(v as f64));
        Ok(())
    }
    fn visit_u64<E>(mut self, v: u64) -> Result<(), E> {
        self.push(Val::Num(v as f64));
        Ok(())
    }
    fn visit_f64<E>(mut self, v: f64) -> Result<(), E> {
        self.push(Val::Num(v));
        Ok(())
    }
    fn visit_unit<E>(mut self) -> Result<(), E> {
        self.push(Val::Null);
        Ok(())
    }
    fn visit_seq<A: SeqAccess<'a>>(self, mut seq: A) -> Result<(), A::Error> {
        // Arrays contribute each scalar element; nested arrays are flattened.
        while seq
            .next_element_seed(LeafSeed {
                trie: self.trie,
                slot: self.slot,
                node: None,
                out: &mut *self.out,
            })?
            .is_some()
        {}
        Ok(())
    }
    fn visit_map<A: MapAccess<'a>>(self, map: A) -> Result<(), A::Error> {
        match self.node {
            Some(node) => ObjSeed {
                trie: self.trie,
                node,
                out: self.out,
            }
            .visit_map(map),
            None => IgnoredAny.visit_map(map).map(|_| ()),
        }
    }
}

enum Key<'a> {
    Borrowed(&'a str),
    Owned(String),
}

struct KeySeed;

impl<'a> DeserializeSeed<'a> for KeySeed {
    type Value = Key<'a>;
    fn deserialize<D: Deserializer<'a>>(self, d: D) -> Result<Key<'a>, D::Error> {
        d.deserialize_str(self)
    }
}

impl<'a> Visitor<'a> for KeySeed {
    type Value = Key<'a>;
    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("an object key")
    }
    fn visit_borrowed_str<E>(self, v: &'a str) -> Result<Key<'a>, E> {
        Ok(Key::Borrowed(v))
    }
    fn visit_str<E>(self, v: &str) -> Result<Key<'a>, E> {
        Ok(Key::Owned(v.to_owned()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn trie() -> FieldTrie {
        FieldTrie::new(&[
            "user.name".into(),
            "event.category".into(),
            "source.port".into(),
            "@timestamp".into(),
            "process.code_signature.trusted".into(),
        ])
    }

    fn decode(line: &str) -> Vec<(u16, Val<'_>)> {
        let t = trie();
        let mut d = Decoded::default();
        d.decode(&t, line.as_bytes()).unwrap();
        d.vals
    }

    #[test]
    fn extracts_only_referenced_fields() {
        let v = decode(
            r#"{"@timestamp":"2026-01-01T00:00:00Z","user":{"name":"alice","id":"7"},"event":{"category":["authentication","iam"],"x":{"y":[1,2]}},"source":{"port":22},"other":[{"a":1}]}"#,
        );
        assert_eq!(
            v,
            // By slot; a slot's values in line order.
            vec![
                (0, Val::Str("alice")),
                (1, Val::Str("authentication")),
                (1, Val::Str("iam")),
                (2, Val::Num(22.0)),
                (3, Val::Str("2026-01-01T00:00:00Z")),
            ]
        );
    }

    #[test]
    fn flat_dotted_keys_are_the_same_path() {
        assert_eq!(decode(r#"{"user.name":"bob"}"#), vec![(0, Val::Str("bob"))]);
        assert_eq!(
            decode(r#"{"process":{"code_signature.trusted":false}}"#),
            vec![(4, Val::Bool(false))]
        );
    }

    #[test]
    fn a_path_given_twice_keeps_both_values_first_one_first() {
        let t = trie();
        let mut d = Decoded::default();
        let line = r#"{"user.name":"a","source":{"port":1},"user":{"name":"b"},"x":2}"#;
        d.decode(&t, line.as_bytes()).unwrap();
        assert_eq!(d.first(0), Some(&Val::Str("a")));
        assert_eq!(d.first(2), Some(&Val::Num(1.0)));
        assert_eq!(d.first(1), None);
        let mut seen = Vec::new();
        d.any_value(FieldId(0), &mut |v| {
            seen.push(format!("{v:?}"));
            false
        });
        assert_eq!(seen, [r#"Str("a")"#, r#"Str("b")"#]);
        // A reused buffer forgets the previous line's index.
        let mut d = d.recycle();
        d.decode(&t, br#"{"source":{"port":3}}"#).unwrap();
        assert_eq!((d.first(0), d.first(2)), (None, Some(&Val::Num(3.0))));
    }

    #[test]
    fn escaped_strings_are_owned_and_unescaped() {
        assert_eq!(
            decode(r#"{"user":{"name":"C:\\Users\\a\u00e9"}}"#),
            vec![(0, Val::Owned("C:\\Users\\aé".into()))]
        );
    }

    #[test]
    fn wrong_shapes_are_skipped_not_errors() {
        assert_eq!(decode(r#"{"user":"alice","event":7,"source":[1]}"#), vec![]);
        assert_eq!(decode(r#"{"user":{"name":{"first":"a"}}}"#), vec![]);
        assert_eq!(decode(r#"{"user":{"name":null}}"#), vec![(0, Val::Null)]);
    }

    #[test]
    fn invalid_json_is_an_error() {
        let t = trie();
        for bad in [
            "",
            "{",
            "[1]",
            "\"x\"",
            "{\"a\":1} trailing",
            "{\"a\":}",
            "\u{0}",
        ] {
            let mut d = Decoded::default();
            assert!(d.decode(&t, bad.as_bytes()).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn invalid_utf8_in_a_referenced_string_is_an_error() {
        let t = trie();
        let mut d = Decoded::default();
        assert!(d.decode(&t, b"{\"user\":{\"name\":\"a\xff\"}}").is_err());
    }

    #[test]
    fn recycling_keeps_capacity() {
        let t = trie();
        let line = br#"{"user":{"name":"a"},"source":{"port":1}}"#.to_vec();
        let mut d = Decoded::default();
        d.decode(&t, &line).unwrap();
        let cap = d.vals.capacity();
        let d2: Decoded<'_> = d.recycle();
        assert_eq!(d2.vals.capacity(), cap);
        assert!(d2.vals.is_empty());
    }
}
