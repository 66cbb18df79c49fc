//! A compact, order-preserving representation of `event.id` for window state.

use std::cmp::Ordering;

use serde::{Deserialize, Serialize};
use std::fmt;

/// An `event.id` as held in window state: canonical lowercase UUIDs and 32-digit lowercase hex
/// ids (the derived ids of file input) are stored in 16 bytes, anything else as a boxed string.
///
/// Ordering is the ordering of the original strings, so ties in event time break the same way
/// whatever the representation.
#[derive(Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum EventId {
    /// `xxxxxxxx-xxxx-xxxx-xxxx-xxxxxxxxxxxx`, lowercase hex.
    Uuid([u64; 2]),
    /// 32 lowercase hex digits.
    Hex([u64; 2]),
    /// Any other id.
    Other(Box<str>),
}

impl EventId {
    /// Stores `s` in the most compact form that formats back to exactly `s`.
    pub fn new(s: &str) -> EventId {
        let b = s.as_bytes();
        if b.len() == 36 && b[8] == b'-' && b[13] == b'-' && b[18] == b'-' && b[23] == b'-' {
            // Hex groups at fixed positions: 8-4-4-4-12.
            let hi = hex(&b[0..8]).zip(hex(&b[9..13])).zip(hex(&b[14..18]));
            let lo = hex(&b[19..23]).zip(hex(&b[24..36]));
            if let (Some(((a, b2), c)), Some((d, e))) = (hi, lo) {
                return EventId::Uuid([a << 32 | b2 << 16 | c, d << 48 | e]);
            }
        } else if b.len() == 32
            && let (Some(a), Some(c)) = (hex(&b[..16]), hex(&b[16..]))
        {
            return EventId::Hex([a, c]);
        }
        EventId::Other(s.into())
    }

    /// Heap bytes held beyond the value itself.
    pub fn heap_bytes(&self) -> usize {
        match self {
            EventId::Other(s) => s.len(),
            _ => 0,
        }
    }
}

/// The value of each lowercase hex digit; `0x80` for every other byte.
const HEX: [u8; 256] = {
    let mut t = [0x80; 256];
    let mut c = 0;
    while c < 10 {
        t[b'0' as usize + c] = c as u8;
        c += 1;
    }
    let mut c = 0;
    while c < 6 {
        t[b'a' as usize + c] = 10 + c as u8;
        c += 1;
    }
    t
};

/// Parses up to 16 lowercase hex digits (without a branch per digit: every event's id passes
/// here).
fn hex(digits: &[u8]) -> Option<u64> {
    let mut v = 0u64;
    let mut bad = 0u8;
    for &c in digits {
        let d = HEX[c as usize];
        bad |= d;
        v = (v << 4) | u64::from(d & 0x0f);
    }
    (bad & 0x80 == 0).then_some(v)
}

impl fmt::Display for EventId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            EventId::Uuid([a, b]) => write!(
                f,
                "{:08x}-{:04x}-{:04x}-{:04x}-{:012x}",
                a >> 32,
                (a >> 16) & 0xffff,
                a & 0xffff,
                b >> 48,
                b & 0xffff_ffff_ffff
            ),
            EventId::Hex([a, b]) => write!(f, "{a:016x}{b:016x}"),
            EventId::Other(s) => f.write_str(s),
        }
    }
}

impl fmt::Debug for EventId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "EventId({self})")
    }
}

impl Ord for EventId {
    fn cmp(&self, other: &Self) -> Ordering {
        match (self, other) {
            // Fixed-width lowercase hex compares like its numeric value.
            (EventId::Uuid(a), EventId::Uuid(b)) | (EventId::Hex(a), EventId::Hex(b)) => a.cmp(b),
            (EventId::Other(a), EventId::Other(b)) => a.cmp(b),
            _ => self.to_string().cmp(&other.to_string()),
        }
    }
}

impl PartialOrd for EventId {
    fn partial_cmp(&self, other: &Self) -> Option<Ordering> {
        Some(self.cmp(other))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trips_exactly() {
        for s in [
            "0190f6b2-7c1e-7a3b-9f00-0123456789ab",
            "ffffffff-ffff-ffff-ffff-ffffffffffff",
            "0123456789abcdef0123456789abcdef",
            "0190F6B2-7C1E-7A3B-9F00-0123456789AB",
            "not-a-uuid",
            "",
            "12345",
        ] {
            assert_eq!(EventId::new(s).to_string(), s);
        }
        assert!(matches!(
            EventId::new("0190f6b2-7c1e-7a3b-9f00-0123456789ab"),
            EventId::Uuid(_)
        ));
        assert!(matches!(
            EventId::new("0190F6B2-7C1E-7A3B-9F00-0123456789AB"),
            EventId::Other(_)
        ));
        // A byte just past each digit range is not a digit.
        for s in [
            "0123456789abcdef0123456789abcdeg",
            "0123456789abcdef0123456789abcde:",
            "0123456789abcdef0123456789abcde`",
            "0123456789abcdef0123456789abcde/",
        ] {
            assert!(matches!(EventId::new(s), EventId::Other(_)), "{s}");
            assert_eq!(EventId::new(s).to_string(), s);
        }
        assert_eq!(size_of::<EventId>(), 24);
    }

    #[test]
    fn orders_like_strings() {
        let ids = [
            "00000000-0000-0000-0000-00000000000a",
            "00000000-0000-0000-0000-000000000009",
            "0123456789abcdef0123456789abcdef",
            "abc",
            "0000",
            "ffffffff-ffff-ffff-ffff-ffffffffffff",
        ];
        for a in ids {
            for b in ids {
                assert_eq!(
                    EventId::new(a).cmp(&EventId::new(b)),
                    a.cmp(b),
                    "{a} vs {b}"
                );
            }
        }
    }
}
