//! OpenSSH auth log lines. The line may carry a syslog header — RFC 3164
//! (`Nov 30 10:00:01 host sshd[123]: ...`), RFC 5424 (`<38>1 2026-11-30T10:00:01.123Z host
//! sshd 123 - - ...`) or an RFC 3339 timestamp in RFC 3164 layout (rsyslog's file format) — or
//! be the bare message (`sshd[123]: ...` or just `...`). The message is matched against the
//! patterns of `normalize/mappings/sshd.toml`.
//!
//! Time: RFC 3164 has no year and no zone. The time is read as UTC and given the year (of the
//! one before, the one of, and the one after `ingested_at`) that puts it nearest to
//! `ingested_at`, so a December line ingested in January is last year's. A line without a
//! timestamp (or with RFC 5424's nil `-`) takes `ingested_at`.
//!
//! Linux account names are case-sensitive and kept as they are.

use std::collections::BTreeMap;
use std::sync::OnceLock;

use regex::Regex;
use serde::Deserialize;
use serde_json::{Map, Value};
use vigil_model::time::{format_rfc3339_millis, parse_rfc3339};

use super::Parsed;
use crate::json::set;
use crate::schema::{self, Scalar};
use crate::{Reject, canonical};

/// Program names whose lines are read (OpenSSH 9.8 moved per-connection logging to
/// `sshd-session`, 10.0 authentication to `sshd-auth`); all become `process.name` `sshd`.
const PROGRAMS: [&str; 3] = ["sshd", "sshd-session", "sshd-auth"];

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct File {
    defaults: BTreeMap<String, Value>,
    patterns: Vec<PatternSpec>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct PatternSpec {
    name: String,
    regex: String,
    captures: BTreeMap<String, String>,
    fields: BTreeMap<String, Value>,
}

#[derive(Debug)]
struct Pattern {
    regex: Regex,
    captures: Vec<(String, String)>,
    fields: Vec<(String, Value)>,
}

#[derive(Debug)]
struct Mapping {
    defaults: Vec<(String, Value)>,
    patterns: Vec<Pattern>,
}

fn mapping() -> &'static Mapping {
    static MAPPING: OnceLock<Mapping> = OnceLock::new();
    MAPPING.get_or_init(|| {
        // Covered by a unit test; a failure here means the build shipped a broken file.
        load(include_str!("../../mappings/sshd.toml"))
            .unwrap_or_else(|e| panic!("mappings/sshd.toml: {e}"))
    })
}

fn load(text: &str) -> Result<Mapping, String> {
    let file: File = toml::from_str(text).map_err(|e| e.to_string())?;
    let mut patterns = Vec::new();
    for p in file.patterns {
        let regex = Regex::new(&p.regex).map_err(|e| format!("pattern {}: {e}", p.name))?;
        for (group, field) in &p.captures {
            if !regex.capture_names().flatten().any(|n| n == group) {
                return Err(format!("pattern {}: no capture group `{group}`", p.name));
            }
            if field != "source.address" && schema::leaf(field).is_none() {
                return Err(format!(
                    "pattern {}: `{field}` is not a schema field",
                    p.name
                ));
            }
        }
        patterns.push(Pattern {
            regex,
            captures: p.captures.into_iter().collect(),
            fields: p.fields.into_iter().collect(),
        });
    }
    Ok(Mapping {
        defaults: file.defaults.into_iter().collect(),
        patterns,
    })
}

/// A syslog header, parsed.
#[derive(Debug, Default, PartialEq, Eq)]
struct Header<'a> {
    /// Event time, epoch ms (`None`: none in the line, or `bad_time`).
    time: Option<i64>,
    /// The header's timestamp text, when it is not a valid time.
    bad_time: Option<String>,
    host: Option<&'a str>,
    program: Option<&'a str>,
    pid: Option<i64>,
    message: &'a str,
}

struct Headers {
    rfc5424: Regex,
    rfc3164: Regex,
    iso: Regex,
    bare: Regex,
}

fn headers() -> &'static Headers {
    static H: OnceLock<Headers> = OnceLock::new();
    H.get_or_init(|| {
        let re = |s: &str| Regex::new(s).expect("static regex");
        Headers {
            rfc5424: re(
                r#"^<\d{1,3}>1 (\S+) (\S+) (\S+) (\S+) \S+ (?:-|(?:\[(?:[^"\]]|"(?:[^"\\]|\\.)*")*\])+)(?: (.*))?$"#,
            ),
            rfc3164: re(
                r"^(?:<\d{1,3}>)?(Jan|Feb|Mar|Apr|May|Jun|Jul|Aug|Sep|Oct|Nov|Dec) +(\d{1,2}) (\d{2}:\d{2}:\d{2}) (\S+) ([^\s\[\]:]+)(?:\[(\d+)\])?: (.*)$",
            ),
            iso: re(
                r"^(?:<\d{1,3}>)?(\d{4}-\d{2}-\d{2}[T ]\d{2}:\d{2}:\d{2}\S*) (\S+) ([^\s\[\]:]+)(?:\[(\d+)\])?: (.*)$",
            ),
            bare: re(r"^([^\s\[\]:]+)\[(\d+)\]: (.*)$"),
        }
    })
}

const MONTHS: [&str; 12] = [
    "Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec",
];

/// (time, bad_time) from a parse result.
fn checked(time: Option<i64>, text: impl FnOnce() -> String) -> (Option<i64>, Option<String>) {
    match time {
        Some(t) => (Some(t), None),
        None => (None, Some(text())),
    }
}

fn header(line: &str, ingested_at: i64) -> Header<'_> {
    let h = headers();
    let not_nil = |s: &str| s != "-";
    if let Some(c) = h.rfc5424.captures(line) {
        let ts = c.get(1).map_or("-", |m| m.as_str());
        let (time, bad_time) = match ts {
            "-" => (None, None),
            t => checked(parse_rfc3339(t), || t.to_owned()),
        };
        let message = c.get(5).map_or("", |m| m.as_str());
        return Header {
            time,
            bad_time,
            host: c.get(2).map(|m| m.as_str()).filter(|s| not_nil(s)),
            program: c.get(3).map(|m| m.as_str()).filter(|s| not_nil(s)),
            pid: c.get(4).and_then(|m| m.as_str().parse().ok()),
            message: message.strip_prefix('\u{feff}').unwrap_or(message),
        };
    }
    if let Some(c) = h.rfc3164.captures(line) {
        let month = MONTHS.iter().position(|m| *m == &c[1]).unwrap_or(0) + 1;
        let day: u32 = c[2].parse().unwrap_or(0);
        let (time, bad_time) = checked(rfc3164_time(month as u32, day, &c[3], ingested_at), || {
            format!("{} {} {}", &c[1], &c[2], &c[3])
        });
        return Header {
            time,
            bad_time,
            host: c.get(4).map(|m| m.as_str()),
            program: c.get(5).map(|m| m.as_str()),
            pid: c.get(6).and_then(|m| m.as_str().parse().ok()),
            message: c.get(7).map_or("", |m| m.as_str()),
        };
    }
    if let Some(c) = h.iso.captures(line) {
        let t = &c[1];
        let (time, bad_time) = checked(parse_rfc3339(t), || t.to_owned());
        return Header {
            time,
            bad_time,
            host: c.get(2).map(|m| m.as_str()),
            program: c.get(3).map(|m| m.as_str()),
            pid: c.get(4).and_then(|m| m.as_str().parse().ok()),
            message: c.get(5).map_or("", |m| m.as_str()),
        };
    }
    if let Some(c) = h.bare.captures(line) {
        return Header {
            program: c.get(1).map(|m| m.as_str()),
            pid: c.get(2).and_then(|m| m.as_str().parse().ok()),
            message: c.get(3).map_or("", |m| m.as_str()),
            ..Header::default()
        };
    }
    Header {
        message: line,
        ..Header::default()
    }
}

/// An RFC 3164 time (UTC) in the year that puts it nearest to `ingested_at`.
fn rfc3164_time(month: u32, day: u32, hms: &str, ingested_at: i64) -> Option<i64> {
    let year: i64 = format_rfc3339_millis(ingested_at).get(..4)?.parse().ok()?;
    (year - 1..=year + 1)
        .filter_map(|y| parse_rfc3339(&format!("{y:04}-{month:02}-{day:02}T{hms}Z")))
        .min_by_key(|t| (t - ingested_at).abs())
}

/// Parses one sshd line.
pub(crate) fn parse(line: &str, ingested_at: i64) -> Result<Parsed, Reject> {
    let line = line.trim_end_matches(['\r', '\n']);
    let h = header(line, ingested_at);
    if let Some(p) = h.program
        && !PROGRAMS.contains(&p)
    {
        return Err(Reject::new(
            "unsupported_event",
            format!("syslog program `{p}` is not sshd"),
        ));
    }
    let m = mapping();
    let Some((pattern, caps)) = m
        .patterns
        .iter()
        .find_map(|p| p.regex.captures(h.message).map(|c| (p, c)))
    else {
        return Err(Reject::new(
            "unsupported_event",
            "sshd message matches no pattern",
        ));
    };

    if let Some(text) = &h.bad_time {
        return Err(Reject::new(
            "invalid_timestamp",
            format!("syslog timestamp `{text}` is not a valid time"),
        ));
    }
    let mut e = Map::new();
    for (path, v) in m.defaults.iter().chain(&pattern.fields) {
        set(&mut e, path, v.clone());
    }
    set(&mut e, "event.dataset", "sshd");
    set(&mut e, "message", h.message);
    if let Some(host) = h.host {
        set(&mut e, "host.name", host);
    }
    if let Some(pid) = h.pid {
        set(&mut e, "process.pid", pid);
    }
    for (group, path) in &pattern.captures {
        let Some(text) = caps
            .name(group)
            .map(|c| c.as_str())
            .filter(|s| !s.is_empty())
        else {
            continue;
        };
        if path == "source.address" {
            set(&mut e, "source.address", text);
            if canonical::canonical_ip(text).is_some() {
                set(&mut e, "source.ip", text);
            } else {
                set(&mut e, "source.domain", text);
            }
            continue;
        }
        let value = match schema::leaf(path) {
            Some((Scalar::Integer, false)) => match text.parse::<i64>() {
                Ok(n) => Value::from(n),
                Err(_) => Value::from(text),
            },
            _ => Value::from(text),
        };
        set(&mut e, path, value);
    }
    Ok(Parsed::new(e, h.time.unwrap_or(ingested_at), false))
}

#[cfg(test)]
mod tests {
    use super::*;

    const JAN_2027: i64 = 1_799_020_800_000; // 2027-01-04T00:00:00Z

    #[test]
    fn mapping_loads() {
        assert_eq!(mapping().patterns.len(), 6);
        assert!(load("[defaults]\n[[patterns]]\nname='x'\nregex='^(?P<a>x)$'\ncaptures={b='user.name'}\nfields={}").is_err());
        assert!(load("[defaults]\n[[patterns]]\nname='x'\nregex='^(?P<a>x)$'\ncaptures={a='user.nmae'}\nfields={}").is_err());
    }

    #[test]
    fn year_is_nearest_to_ingest() {
        let at = |s: &str| parse_rfc3339(s).unwrap();
        assert_eq!(
            rfc3164_time(12, 31, "23:59:00", JAN_2027),
            Some(at("2026-12-31T23:59:00Z"))
        );
        assert_eq!(
            rfc3164_time(1, 3, "10:00:00", JAN_2027),
            Some(at("2027-01-03T10:00:00Z"))
        );
        // Ingested on 31 December, a 1 January line (a clock ahead) is next year's.
        assert_eq!(
            rfc3164_time(1, 1, "00:00:10", at("2026-12-31T23:59:50Z")),
            Some(at("2027-01-01T00:00:10Z"))
        );
        // 29 February exists only in leap years: 2028 is nearest to early 2027 that has one.
        assert_eq!(
            rfc3164_time(2, 29, "12:00:00", JAN_2027),
            Some(at("2028-02-29T12:00:00Z"))
        );
        assert_eq!(rfc3164_time(2, 30, "12:00:00", JAN_2027), None);
    }

    #[test]
    fn headers_parse() {
        let h = header("Nov  3 10:00:01 bastion sshd[42]: hello world", JAN_2027);
        assert_eq!(
            h,
            Header {
                time: parse_rfc3339("2026-11-03T10:00:01Z"),
                bad_time: None,
                host: Some("bastion"),
                program: Some("sshd"),
                pid: Some(42),
                message: "hello world",
            }
        );
        let h = header(
            r#"<38>1 2026-11-30T10:00:01.123Z web-1 sshd 981 - [meta x="a\"]b"] msg here"#,
            JAN_2027,
        );
        assert_eq!(h.time, parse_rfc3339("2026-11-30T10:00:01.123Z"));
        assert_eq!(
            (h.host, h.program, h.pid, h.message),
            (Some("web-1"), Some("sshd"), Some(981), "msg here")
        );
        let h = header("<38>1 - - sshd - - - msg", JAN_2027);
        assert_eq!(
            (h.time, h.host, h.pid, h.message),
            (None, None, None, "msg")
        );
        let h = header(
            "2026-11-30T10:00:01.5+01:00 db sshd-session[7]: m",
            JAN_2027,
        );
        assert_eq!(h.time, parse_rfc3339("2026-11-30T09:00:01.5Z"));
        assert_eq!(h.program, Some("sshd-session"));
        let h = header("sshd[7]: m", JAN_2027);
        assert_eq!(
            (h.time, h.program, h.pid, h.message),
            (None, Some("sshd"), Some(7), "m")
        );
        let h = header(
            "Failed password for root from 1.2.3.4 port 22 ssh2",
            JAN_2027,
        );
        assert_eq!(
            h.message,
            "Failed password for root from 1.2.3.4 port 22 ssh2"
        );
        let h = header("Nov 31 10:00:01 h sshd[1]: m", JAN_2027);
        assert_eq!(
            (h.time, h.bad_time.as_deref()),
            (None, Some("Nov 31 10:00:01"))
        );
    }
}
