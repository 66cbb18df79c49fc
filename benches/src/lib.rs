//! Shared helpers for the Vigil benchmark tools (`vigil-gen`, `vigil-baseline`).
//!
//! Only the small, dependency-free timestamp code lives here: an RFC 3339 parser
//! to epoch milliseconds and the inverse formatter (UTC, millisecond precision).

/// Milliseconds in one day.
pub const MS_PER_DAY: i64 = 86_400_000;

/// Smallest epoch-ms value whose year is 0000 (0000-01-01T00:00:00.000Z).
pub const MIN_EPOCH_MS: i64 = -62_167_219_200_000;
/// Largest epoch-ms value whose year is 9999 (9999-12-31T23:59:59.999Z).
pub const MAX_EPOCH_MS: i64 = 253_402_300_799_999;

/// Days since 1970-01-01 of the proleptic Gregorian date `y-m-d` (H. Hinnant).
pub fn days_from_civil(y: i64, m: u32, d: u32) -> i64 {
    let y = if m <= 2 { y - 1 } else { y };
    let era = y.div_euclid(400);
    let yoe = y - era * 400; // [0, 399]
    let m = i64::from(m);
    let mp = if m > 2 { m - 3 } else { m + 9 }; // [0, 11]
    let doy = (153 * mp + 2) / 5 + i64::from(d) - 1; // [0, 365]
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy; // [0, 146096]
    era * 146_097 + doe - 719_468
}

/// Proleptic Gregorian `(year, month, day)` of a day count since 1970-01-01 (H. Hinnant).
pub fn civil_from_days(z: i64) -> (i64, u32, u32) {
    let z = z + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097; // [0, 146096]
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365; // [0, 399]
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100); // [0, 365]
    let mp = (5 * doy + 2) / 153; // [0, 11]
    let d = (doy - (153 * mp + 2) / 5 + 1) as u32; // [1, 31]
    let m = if mp < 10 { mp + 3 } else { mp - 9 } as u32; // [1, 12]
    let y = yoe + era * 400 + i64::from(m <= 2);
    (y, m, d)
}

fn is_leap(y: i64) -> bool {
    (y % 4 == 0 && y % 100 != 0) || y % 400 == 0
}

fn days_in_month(y: i64, m: u32) -> u32 {
    match m {
        1 | 3 | 5 | 7 | 8 | 10 | 12 => 31,
        4 | 6 | 9 | 11 => 30,
        2 if is_leap(y) => 29,
        _ => 28,
    }
}

#[inline]
fn digits(b: &[u8], at: usize, n: usize) -> Option<u32> {
    let s = b.get(at..at + n)?;
    let mut v = 0u32;
    for &c in s {
        if !c.is_ascii_digit() {
            return None;
        }
        v = v * 10 + u32::from(c - b'0');
    }
    Some(v)
}

/// Parses `YYYY-MM-DDTHH:MM:SS[.f{1,9}](Z|±HH:MM)` to epoch milliseconds.
///
/// Fractions finer than a millisecond are truncated (towards the past). `t`/`z`
/// are accepted in lower case as RFC 3339 allows; leap seconds (`:60`) are not.
pub fn parse_rfc3339_ms(s: &str) -> Option<i64> {
    let b = s.as_bytes();
    if b.len() < 20 {
        return None;
    }
    let year = digits(b, 0, 4)?;
    let month = digits(b, 5, 2)?;
    let day = digits(b, 8, 2)?;
    let hour = digits(b, 11, 2)?;
    let minute = digits(b, 14, 2)?;
    let second = digits(b, 17, 2)?;
    if b[4] != b'-'
        || b[7] != b'-'
        || !matches!(b[10], b'T' | b't')
        || b[13] != b':'
        || b[16] != b':'
    {
        return None;
    }
    let year = i64::from(year);
    if !(1..=12).contains(&month)
        || day == 0
        || day > days_in_month(year, month)
        || hour > 23
        || minute > 59
        || second > 59
    {
        return None;
    }
    let mut i = 19;
    let mut millis = 0u32;
    if b[i] == b'.' {
        i += 1;
        let start = i;
        while i < b.len() && b[i].is_ascii_digit() {
            if i - start < 3 {
                millis = millis * 10 + u32::from(b[i] - b'0');
            }
            i += 1;
        }
        let n = i - start;
        if n == 0 || n > 9 {
            return None;
        }
        for _ in n..3 {
            millis *= 10;
        }
    }
    let offset_min: i64 = match b.get(i)? {
        b'Z' | b'z' if i + 1 == b.len() => 0,
        &sign @ (b'+' | b'-') if i + 6 == b.len() && b[i + 3] == b':' => {
            let oh = digits(b, i + 1, 2)?;
            let om = digits(b, i + 4, 2)?;
            if oh > 23 || om > 59 {
                return None;
            }
            let off = i64::from(oh * 60 + om);
            if sign == b'-' { -off } else { off }
        }
        _ => return None,
    };
    let days = days_from_civil(year, month, day);
    let secs = days * 86_400 + i64::from(hour * 3600 + minute * 60 + second) - offset_min * 60;
    Some(secs * 1000 + i64::from(millis))
}

/// Appends `ms` as `YYYY-MM-DDTHH:MM:SS.mmmZ` (24 bytes). `ms` is clamped to years 0000–9999.
pub fn write_rfc3339_ms(out: &mut Vec<u8>, ms: i64) {
    let ms = ms.clamp(MIN_EPOCH_MS, MAX_EPOCH_MS);
    let days = ms.div_euclid(MS_PER_DAY);
    let rem = ms.rem_euclid(MS_PER_DAY) as u32;
    let (y, m, d) = civil_from_days(days);
    let y = y as u32;
    let (secs, millis) = (rem / 1000, rem % 1000);
    let (hh, mm, ss) = (secs / 3600, secs / 60 % 60, secs % 60);
    let dg = |v: u32| b'0' + v as u8;
    out.extend_from_slice(&[
        dg(y / 1000),
        dg(y / 100 % 10),
        dg(y / 10 % 10),
        dg(y % 10),
        b'-',
        dg(m / 10),
        dg(m % 10),
        b'-',
        dg(d / 10),
        dg(d % 10),
        b'T',
        dg(hh / 10),
        dg(hh % 10),
        b':',
        dg(mm / 10),
        dg(mm % 10),
        b':',
        dg(ss / 10),
        dg(ss % 10),
        b'.',
        dg(millis / 100),
        dg(millis / 10 % 10),
        dg(millis % 10),
        b'Z',
    ]);
}

/// `ms` as an RFC 3339 UTC string with milliseconds, e.g. `2026-11-30T10:00:00.123Z`.
pub fn format_rfc3339_ms(ms: i64) -> String {
    let mut v = Vec::with_capacity(24);
    write_rfc3339_ms(&mut v, ms);
    // The formatter only ever writes ASCII digits and separators.
    String::from_utf8(v).unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn civil_round_trip_over_many_days() {
        for z in (-800_000..800_000).step_by(7) {
            let (y, m, d) = civil_from_days(z);
            assert_eq!(days_from_civil(y, m, d), z);
        }
        assert_eq!(civil_from_days(0), (1970, 1, 1));
        assert_eq!(days_from_civil(2000, 2, 29), 11_016);
    }

    #[test]
    fn parse_known_values() {
        assert_eq!(parse_rfc3339_ms("1970-01-01T00:00:00Z"), Some(0));
        assert_eq!(parse_rfc3339_ms("1970-01-01T00:00:00.001Z"), Some(1));
        assert_eq!(
            parse_rfc3339_ms("2026-11-30T10:00:00.123Z"),
            Some(1_796_032_800_123)
        );
        assert_eq!(
            parse_rfc3339_ms("2026-11-30T12:00:00.123+02:00"),
            parse_rfc3339_ms("2026-11-30T10:00:00.123Z")
        );
        assert_eq!(
            parse_rfc3339_ms("2026-11-30T05:30:00-04:30"),
            parse_rfc3339_ms("2026-11-30T10:00:00Z")
        );
        assert_eq!(
            parse_rfc3339_ms("2026-11-30T10:00:00.5Z"),
            Some(1_796_032_800_500)
        );
        assert_eq!(
            parse_rfc3339_ms("2026-11-30T10:00:00.123999999Z"),
            Some(1_796_032_800_123)
        );
        assert_eq!(parse_rfc3339_ms("1969-12-31T23:59:59.999Z"), Some(-1));
        assert_eq!(
            parse_rfc3339_ms("0000-01-01T00:00:00.000Z"),
            Some(MIN_EPOCH_MS)
        );
        assert_eq!(
            parse_rfc3339_ms("9999-12-31T23:59:59.999Z"),
            Some(MAX_EPOCH_MS)
        );
    }

    #[test]
    fn parse_rejects_malformed() {
        for bad in [
            "",
            "2026-11-30",
            "2026-11-30T10:00:00",
            "2026-11-30 10:00:00Z",
            "2026-13-01T00:00:00Z",
            "2026-02-29T00:00:00Z",
            "2026-11-31T00:00:00Z",
            "2026-11-30T24:00:00Z",
            "2026-11-30T10:60:00Z",
            "2026-11-30T10:00:60Z",
            "2026-11-30T10:00:00.Z",
            "2026-11-30T10:00:00.1234567890Z",
            "2026-11-30T10:00:00Zjunk",
            "2026-11-30T10:00:00+0200",
            "2026-11-30T10:00:00+24:00",
            "2026-11-30T10:0a:00Z",
        ] {
            assert_eq!(parse_rfc3339_ms(bad), None, "{bad:?}");
        }
        assert!(parse_rfc3339_ms("2024-02-29T00:00:00Z").is_some());
    }

    #[test]
    fn format_parse_round_trip() {
        let mut ms = MIN_EPOCH_MS;
        while ms < MAX_EPOCH_MS {
            let s = format_rfc3339_ms(ms);
            assert_eq!(s.len(), 24);
            assert_eq!(parse_rfc3339_ms(&s), Some(ms), "{s}");
            ms += 86_400_000 * 13 + 3_723_457;
        }
        assert_eq!(
            format_rfc3339_ms(1_796_032_800_123),
            "2026-11-30T10:00:00.123Z"
        );
        assert_eq!(format_rfc3339_ms(-1), "1969-12-31T23:59:59.999Z");
        assert_eq!(format_rfc3339_ms(MAX_EPOCH_MS), "9999-12-31T23:59:59.999Z");
    }
}
