//! Short strings, and packed lists of them, that need no heap allocation in the common case:
//! the tenant and the group values every [`Hit`](crate::Hit) carries.
//!
//! A broad rule set makes about four hits per event; with a `String` for the tenant and one per
//! group value, allocating and freeing them was a tenth of the engine's time (2026-12-03
//! profile of the 66-rule mix). Both types serialize exactly as `String` and `Vec<String>` do,
//! so records and snapshots keep their encoding.

use std::fmt;
use std::ops::Deref;

use serde::de::{SeqAccess, Visitor};
use serde::ser::SerializeSeq;
use serde::{Deserialize, Deserializer, Serialize, Serializer};

/// Bytes that fit are stored inline: a tenant id, a user, host or address.
const INLINE: usize = 22;

/// Bytes, inline up to [`INLINE`] and on the heap past it (24 bytes either way); equal when
/// their contents are.
#[derive(Clone)]
enum Bytes {
    Inline { len: u8, buf: [u8; INLINE] },
    Heap(Box<[u8]>),
}

impl Bytes {
    fn new(b: &[u8]) -> Bytes {
        if b.len() <= INLINE {
            let mut buf = [0; INLINE];
            buf[..b.len()].copy_from_slice(b);
            Bytes::Inline {
                len: b.len() as u8,
                buf,
            }
        } else {
            Bytes::Heap(b.into())
        }
    }

    fn as_slice(&self) -> &[u8] {
        match self {
            Bytes::Inline { len, buf } => &buf[..usize::from(*len)],
            Bytes::Heap(b) => b,
        }
    }

    fn heap_bytes(&self) -> usize {
        match self {
            Bytes::Inline { .. } => 0,
            Bytes::Heap(b) => b.len(),
        }
    }
}

impl Default for Bytes {
    fn default() -> Self {
        Bytes::new(&[])
    }
}

impl PartialEq for Bytes {
    fn eq(&self, other: &Self) -> bool {
        match (self, other) {
            // Inline bytes past `len` are zero: the arrays compare whole, in a few word
            // compares (the windows compare a hit's tenant per hit) rather than a `memcmp`.
            (Bytes::Inline { len: a, buf: x }, Bytes::Inline { len: b, buf: y }) => {
                a == b && x == y
            }
            _ => self.as_slice() == other.as_slice(),
        }
    }
}

impl Eq for Bytes {}

/// An immutable string, inline when short.
#[derive(Clone, PartialEq, Eq)]
pub struct SmallStr(Bytes);

impl SmallStr {
    /// The string.
    pub fn as_str(&self) -> &str {
        // Only ever built from a `&str`.
        std::str::from_utf8(self.0.as_slice()).unwrap_or_default()
    }
}

impl From<&str> for SmallStr {
    fn from(s: &str) -> Self {
        SmallStr(Bytes::new(s.as_bytes()))
    }
}

impl Deref for SmallStr {
    type Target = str;
    fn deref(&self) -> &str {
        self.as_str()
    }
}

impl PartialEq<&str> for SmallStr {
    fn eq(&self, other: &&str) -> bool {
        self.as_str() == *other
    }
}

impl fmt::Debug for SmallStr {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Debug::fmt(self.as_str(), f)
    }
}

impl fmt::Display for SmallStr {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl Serialize for SmallStr {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(self.as_str())
    }
}

impl<'de> Deserialize<'de> for SmallStr {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl Visitor<'_> for V {
            type Value = SmallStr;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a string")
            }
            fn visit_str<E: serde::de::Error>(self, v: &str) -> Result<SmallStr, E> {
                Ok(SmallStr::from(v))
            }
        }
        d.deserialize_str(V)
    }
}

/// The canonical values of a rule's group-by fields, packed into one buffer (each value as a
/// LEB128 length, then its bytes), inline when short.
#[derive(Clone, Default, PartialEq, Eq)]
pub struct Group(Bytes);

/// Builds [`Group`]s in a reusable buffer.
#[derive(Debug, Default)]
pub struct GroupBuilder(Vec<u8>);

impl GroupBuilder {
    /// Starts a new group (forgets the values pushed so far).
    pub fn clear(&mut self) {
        self.0.clear();
    }

    /// Appends a value.
    pub fn push(&mut self, v: &str) {
        let mut n = v.len();
        loop {
            let byte = (n & 0x7f) as u8;
            n >>= 7;
            if n == 0 {
                self.0.push(byte);
                break;
            }
            self.0.push(byte | 0x80);
        }
        self.0.extend_from_slice(v.as_bytes());
    }

    /// The group of the values pushed since the last [`GroupBuilder::clear`].
    pub fn group(&self) -> Group {
        Group(Bytes::new(&self.0))
    }
}

impl Group {
    /// The values, in order.
    pub fn iter(&self) -> impl Iterator<Item = &str> + Clone {
        // Only ever built from `&str` values.
        self.iter_bytes()
            .map(|v| std::str::from_utf8(v).unwrap_or_default())
    }

    /// The values' bytes, in order (no UTF-8 check: for hashing).
    pub fn iter_bytes(&self) -> GroupIter<'_> {
        GroupIter(self.0.as_slice())
    }

    /// Number of values.
    pub fn len(&self) -> usize {
        self.iter().count()
    }

    /// Whether there are no values.
    pub fn is_empty(&self) -> bool {
        self.0.as_slice().is_empty()
    }

    /// The values as strings.
    pub fn to_strings(&self) -> Vec<String> {
        self.iter().map(str::to_owned).collect()
    }

    /// Heap bytes held (0 when inline).
    pub fn heap_bytes(&self) -> usize {
        self.0.heap_bytes()
    }
}

impl<S: AsRef<str>> FromIterator<S> for Group {
    fn from_iter<I: IntoIterator<Item = S>>(values: I) -> Self {
        let mut b = GroupBuilder::default();
        for v in values {
            b.push(v.as_ref());
        }
        b.group()
    }
}

/// The values of a [`Group`], as bytes.
#[derive(Clone, Debug)]
pub struct GroupIter<'a>(&'a [u8]);

impl<'a> Iterator for GroupIter<'a> {
    type Item = &'a [u8];
    fn next(&mut self) -> Option<&'a [u8]> {
        let (mut n, mut shift, mut i) = (0usize, 0u32, 0usize);
        loop {
            let byte = *self.0.get(i)?;
            n |= usize::from(byte & 0x7f) << shift;
            i += 1;
            if byte & 0x80 == 0 {
                break;
            }
            shift += 7;
        }
        let value = self.0.get(i..i + n)?;
        self.0 = &self.0[i + n..];
        Some(value)
    }
}

impl fmt::Debug for Group {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_list().entries(self.iter()).finish()
    }
}

impl Serialize for Group {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        let mut seq = s.serialize_seq(Some(self.len()))?;
        for v in self.iter() {
            seq.serialize_element(v)?;
        }
        seq.end()
    }
}

impl<'de> Deserialize<'de> for Group {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl<'de> Visitor<'de> for V {
            type Value = Group;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a list of strings")
            }
            fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Group, A::Error> {
                let mut b = GroupBuilder::default();
                while let Some(v) = seq.next_element::<String>()? {
                    b.push(&v);
                }
                Ok(b.group())
            }
        }
        d.deserialize_seq(V)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn values_round_trip_inline_and_on_the_heap() {
        let long = "x".repeat(300);
        for values in [
            vec![],
            vec![""],
            vec!["alice"],
            vec!["alice", "", "dc-1"],
            vec![long.as_str(), "é", "b"],
        ] {
            let g: Group = values.iter().collect();
            assert_eq!(g.iter().collect::<Vec<_>>(), values);
            assert_eq!(g.len(), values.len());
            assert_eq!(g.is_empty(), values.is_empty());
        }
        let short: Group = ["alice", "dc-1"].into_iter().collect();
        assert_eq!(short.heap_bytes(), 0, "short groups stay inline");
        let s = SmallStr::from(long.as_str());
        assert_eq!(&*s, long);
        assert_eq!(SmallStr::from("acme"), "acme");
        assert_eq!(SmallStr::from("acme").0.heap_bytes(), 0);
        assert_eq!(size_of::<SmallStr>(), 24);
        assert_eq!(size_of::<Group>(), 24);
    }

    #[test]
    fn equal_exactly_when_the_bytes_are() {
        let long = "y".repeat(40);
        let cases = [
            "",
            "a",
            "acme",
            "acmf",
            "acme\0",
            "globex",
            &long[..22],
            &long[..23],
            &long,
        ];
        let built: Vec<SmallStr> = cases.iter().map(|&c| SmallStr::from(c)).collect();
        for (a, x) in cases.iter().zip(&built) {
            for (b, y) in cases.iter().zip(&built) {
                assert_eq!(x == y, a == b, "{a:?} vs {b:?}");
            }
        }
        // A value decoded from a snapshot compares as one built in memory.
        let decoded: SmallStr =
            postcard::from_bytes(&postcard::to_allocvec("acme").unwrap()).unwrap();
        assert_eq!(decoded, SmallStr::from("acme"));
    }

    #[test]
    fn encodings_match_string_and_vec_of_string() {
        let values = vec!["alice".to_owned(), "x".repeat(200), String::new()];
        let g: Group = values.iter().collect();
        let packed = postcard::to_allocvec(&g).unwrap();
        assert_eq!(packed, postcard::to_allocvec(&values).unwrap());
        assert_eq!(postcard::from_bytes::<Group>(&packed).unwrap(), g);
        let s = SmallStr::from("globex");
        let packed = postcard::to_allocvec(&s).unwrap();
        assert_eq!(packed, postcard::to_allocvec("globex").unwrap());
        assert_eq!(postcard::from_bytes::<SmallStr>(&packed).unwrap(), s);
    }
}
