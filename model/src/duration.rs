//! Durations as written in rules and on the command line: `500ms`, `10s`, `5m`, `1h`, `7d`.

/// Why a duration did not parse.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum DurationError {
    /// The text is not a number followed by a unit.
    #[error(
        "invalid duration `{0}`: expected a whole number and a unit (ms, s, m, h, d), e.g. `5m`"
    )]
    Syntax(String),
    /// The duration does not fit in 64-bit milliseconds.
    #[error("duration `{0}` is too large")]
    Overflow(String),
}

/// Parses a duration such as `10s` or `5m` into milliseconds.
pub fn parse_duration(s: &str) -> Result<u64, DurationError> {
    let split = s
        .find(|c: char| !c.is_ascii_digit())
        .ok_or_else(|| DurationError::Syntax(s.to_owned()))?;
    let (num, unit) = s.split_at(split);
    if num.is_empty() {
        return Err(DurationError::Syntax(s.to_owned()));
    }
    let n: u64 = num
        .parse()
        .map_err(|_| DurationError::Overflow(s.to_owned()))?;
    let factor = match unit {
        "ms" => 1,
        "s" => 1_000,
        "m" => 60_000,
        "h" => 3_600_000,
        "d" => 86_400_000,
        _ => return Err(DurationError::Syntax(s.to_owned())),
    };
    n.checked_mul(factor)
        .filter(|&ms| ms <= i64::MAX as u64)
        .ok_or_else(|| DurationError::Overflow(s.to_owned()))
}

/// Formats milliseconds in the largest unit that divides them exactly (`300000` → `5m`).
pub fn format_duration(ms: u64) -> String {
    for (factor, unit) in [
        (86_400_000, "d"),
        (3_600_000, "h"),
        (60_000, "m"),
        (1_000, "s"),
    ] {
        if ms != 0 && ms.is_multiple_of(factor) {
            return format!("{}{unit}", ms / factor);
        }
    }
    format!("{ms}ms")
}

/// Serde for a [`std::time::Duration`] written as a duration string (`"5s"`, `"10m"`, `"7d"`):
/// `#[serde(with = "vigil_model::duration::text")]`.
pub mod text {
    use std::time::Duration;

    use serde::{Deserialize, Deserializer, Serializer};

    /// Writes the duration as a string, in the largest exact unit.
    pub fn serialize<S: Serializer>(d: &Duration, s: S) -> Result<S::Ok, S::Error> {
        let ms = u64::try_from(d.as_millis()).unwrap_or(u64::MAX);
        s.serialize_str(&super::format_duration(ms))
    }

    /// Reads a duration string.
    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Duration, D::Error> {
        let s = String::deserialize(d)?;
        super::parse_duration(&s)
            .map(Duration::from_millis)
            .map_err(serde::de::Error::custom)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_units() {
        assert_eq!(parse_duration("500ms"), Ok(500));
        assert_eq!(parse_duration("10s"), Ok(10_000));
        assert_eq!(parse_duration("5m"), Ok(300_000));
        assert_eq!(parse_duration("1h"), Ok(3_600_000));
        assert_eq!(parse_duration("7d"), Ok(604_800_000));
        assert_eq!(parse_duration("0s"), Ok(0));
    }

    #[test]
    fn rejects_garbage() {
        for bad in [
            "",
            "5",
            "m",
            "5 m",
            "5M",
            "1.5m",
            "-5m",
            "5mm",
            "99999999999999999999d",
        ] {
            assert!(parse_duration(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn formats_in_largest_unit() {
        assert_eq!(format_duration(300_000), "5m");
        assert_eq!(format_duration(10_000), "10s");
        assert_eq!(format_duration(1_500), "1500ms");
        assert_eq!(format_duration(0), "0ms");
    }
}
