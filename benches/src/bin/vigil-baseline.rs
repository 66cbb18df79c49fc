//! `vigil-baseline`: the hand-written, single-threaded reference that the engine is
//! benchmarked against. It evaluates exactly one rule, `brute_force_login`:
//! at least 10 failed authentications for one (tenant, user.name) within a sliding
//! 5 minute window `(t − 5m, t]`, suppressed for 5 minutes after each alert, with
//! per-tenant watermarks (max event time − 10 s lateness) and late events dropped.
//!
//! It is meant to be a fair, reasonably fast loop: one read of the whole file,
//! memchr line splitting, serde_json into a borrowed struct, and windows keyed by
//! strings borrowed from the input buffer.

use std::borrow::Cow;
use std::cmp::Reverse;
use std::collections::{BinaryHeap, HashMap, VecDeque};
use std::fmt;
use std::fs::File;
use std::io::{self, BufWriter, Read, Write};
use std::path::PathBuf;
use std::time::Instant;

use anyhow::{Context, Result};
use clap::Parser;
use serde::de::{self, Deserializer, SeqAccess, Visitor};
use serde::{Deserialize, Serialize};
use vigil_model::time::{
    epoch_millis, format_rfc3339_millis as format_rfc3339_ms, parse_rfc3339 as parse_rfc3339_ms,
};

#[derive(Debug, Parser)]
#[command(
    name = "vigil-baseline",
    about = "Single-threaded reference for the brute_force_login rule"
)]
struct Args {
    /// Input JSONL file ("-" for stdin).
    #[arg(long, short)]
    input: PathBuf,
    /// Alert output, JSONL (default: stdout).
    #[arg(long, short)]
    output: Option<PathBuf>,
    /// Sliding window length in ms.
    #[arg(long, default_value_t = 300_000)]
    window_ms: i64,
    /// Minimum number of failures in the window to fire.
    #[arg(long, default_value_t = 10)]
    threshold: usize,
    /// Suppression after an alert, in ms (default: the window length).
    #[arg(long)]
    suppression_ms: Option<i64>,
    /// Allowed lateness in ms (watermark = max event time − lateness, per tenant).
    #[arg(long, default_value_t = 10_000)]
    lateness_ms: i64,
}

// ---------------------------------------------------------------------------
// Parsing
// ---------------------------------------------------------------------------

/// `@timestamp` as epoch ms: an RFC 3339 string or an integer of epoch milliseconds.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Ts(i64);

impl<'de> Deserialize<'de> for Ts {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl Visitor<'_> for V {
            type Value = Ts;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("an RFC 3339 timestamp or integer epoch milliseconds")
            }
            fn visit_str<E: de::Error>(self, v: &str) -> Result<Ts, E> {
                parse_rfc3339_ms(v)
                    .map(Ts)
                    .ok_or_else(|| E::custom("invalid RFC 3339 timestamp"))
            }
            fn visit_i64<E: de::Error>(self, v: i64) -> Result<Ts, E> {
                epoch_millis(v as f64)
                    .map(Ts)
                    .ok_or_else(|| E::custom("epoch milliseconds out of range"))
            }
            fn visit_u64<E: de::Error>(self, v: u64) -> Result<Ts, E> {
                self.visit_i64(
                    i64::try_from(v).map_err(|_| E::custom("epoch milliseconds out of range"))?,
                )
            }
        }
        d.deserialize_any(V)
    }
}

/// `event.category`: only whether it contains "authentication" matters. Accepts an
/// array of strings (ECS) or a single string, without allocating.
#[derive(Debug, Default, Clone, Copy)]
struct Categories {
    authentication: bool,
}

impl<'de> Deserialize<'de> for Categories {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct IsAuth(bool);
        impl<'de> Deserialize<'de> for IsAuth {
            fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
                struct V;
                impl Visitor<'_> for V {
                    type Value = IsAuth;
                    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                        f.write_str("a string")
                    }
                    fn visit_str<E: de::Error>(self, v: &str) -> Result<IsAuth, E> {
                        Ok(IsAuth(v == "authentication"))
                    }
                }
                d.deserialize_str(V)
            }
        }
        struct V;
        impl<'de> Visitor<'de> for V {
            type Value = Categories;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("an array of strings")
            }
            fn visit_str<E: de::Error>(self, v: &str) -> Result<Categories, E> {
                Ok(Categories {
                    authentication: v == "authentication",
                })
            }
            fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Categories, A::Error> {
                let mut authentication = false;
                while let Some(IsAuth(a)) = seq.next_element()? {
                    authentication |= a;
                }
                Ok(Categories { authentication })
            }
        }
        d.deserialize_any(V)
    }
}

#[derive(Debug, Deserialize)]
struct Ev<'a> {
    #[serde(rename = "@timestamp")]
    ts: Ts,
    #[serde(borrow)]
    tenant_id: Cow<'a, str>,
    #[serde(borrow, default)]
    event: EvEvent<'a>,
    #[serde(borrow, default)]
    user: Option<User<'a>>,
}

#[derive(Debug, Default, Deserialize)]
struct EvEvent<'a> {
    #[serde(borrow, default)]
    id: Option<Cow<'a, str>>,
    #[serde(default)]
    category: Categories,
    #[serde(borrow, default)]
    outcome: Option<Cow<'a, str>>,
}

#[derive(Debug, Deserialize)]
struct User<'a> {
    #[serde(borrow, default)]
    name: Option<Cow<'a, str>>,
}

// ---------------------------------------------------------------------------
// Detection
// ---------------------------------------------------------------------------

#[derive(Debug, Clone, Copy)]
struct Rule {
    window_ms: i64,
    threshold: usize,
    suppression_ms: i64,
    lateness_ms: i64,
}

impl Default for Rule {
    fn default() -> Self {
        Rule {
            window_ms: 300_000,
            threshold: 10,
            suppression_ms: 300_000,
            lateness_ms: 10_000,
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
struct Alert<'a> {
    tenant_id: Cow<'a, str>,
    user_name: Cow<'a, str>,
    start: i64,
    end: i64,
    value: usize,
}

#[derive(Debug)]
struct KeyState {
    times: VecDeque<i64>,
    suppressed_until: i64,
}

/// A buffered candidate, ordered by (ts, event.id) and then user for total order.
type Pending<'a> = Reverse<(i64, Cow<'a, str>, Cow<'a, str>)>;

#[derive(Debug)]
struct TenantState<'a> {
    max_ts: i64,
    pending: BinaryHeap<Pending<'a>>,
    keys: HashMap<Cow<'a, str>, KeyState>,
    last_sweep_wm: i64,
}

impl TenantState<'_> {
    fn new() -> Self {
        TenantState {
            max_ts: i64::MIN,
            pending: BinaryHeap::new(),
            keys: HashMap::new(),
            last_sweep_wm: i64::MIN,
        }
    }

    fn watermark(&self, rule: &Rule) -> i64 {
        self.max_ts.saturating_sub(rule.lateness_ms)
    }
}

#[derive(Debug)]
struct Detector<'a> {
    rule: Rule,
    tenants: HashMap<Cow<'a, str>, TenantState<'a>>,
    alerts: Vec<Alert<'a>>,
    events: u64,
    late: u64,
    late_candidates: u64,
    rejected: u64,
    peak_keys: usize,
}

/// How often (in watermark progress) idle keys are swept per tenant.
const SWEEP_EVERY_MS: i64 = 60_000;

impl<'a> Detector<'a> {
    fn new(rule: Rule) -> Self {
        Detector {
            rule,
            tenants: HashMap::new(),
            alerts: Vec::new(),
            events: 0,
            late: 0,
            late_candidates: 0,
            rejected: 0,
            peak_keys: 0,
        }
    }

    /// Processes one input line (without its newline).
    fn push_line(&mut self, line: &[u8]) {
        let line = line.strip_suffix(b"\r").unwrap_or(line);
        if line.iter().all(u8::is_ascii_whitespace) {
            return;
        }
        let ev: Ev<'_> = match serde_json::from_slice(line) {
            Ok(ev) => ev,
            Err(_) => {
                self.rejected += 1;
                return;
            }
        };
        self.events += 1;
        let rule = self.rule;
        let Ev {
            ts: Ts(ts),
            tenant_id,
            event,
            user,
        } = ev;
        let user_name = user.and_then(|u| u.name);
        let candidate =
            event.category.authentication && event.outcome.as_deref() == Some("failure");

        let tenant = match self.tenants.get_mut(tenant_id.as_ref()) {
            Some(t) => t,
            None => self
                .tenants
                .entry(Cow::Owned(tenant_id.clone().into_owned()))
                .or_insert_with(TenantState::new),
        };
        if ts < tenant.watermark(&rule) {
            self.late += 1;
            self.late_candidates += u64::from(candidate && user_name.is_some());
            return;
        }
        tenant.max_ts = tenant.max_ts.max(ts);
        if candidate && let Some(user_name) = user_name {
            tenant
                .pending
                // The line's buffer is reused, so buffered candidates own their strings.
                .push(Reverse((
                    ts,
                    Cow::Owned(event.id.unwrap_or_default().into_owned()),
                    Cow::Owned(user_name.into_owned()),
                )));
        }
        let wm = tenant.watermark(&rule);
        drain(&rule, tenant, wm, &tenant_id, &mut self.alerts);
        if wm >= tenant.last_sweep_wm.saturating_add(SWEEP_EVERY_MS) {
            let live: usize = self.tenants.values().map(|t| t.keys.len()).sum();
            self.peak_keys = self.peak_keys.max(live);
            let tenant = self
                .tenants
                .get_mut(tenant_id.as_ref())
                .expect("tenant exists");
            sweep(&rule, tenant, wm);
        }
    }

    /// End of input: the watermark jumps to +∞ and everything pending is processed.
    fn finish(&mut self) {
        let live: usize = self.tenants.values().map(|t| t.keys.len()).sum();
        self.peak_keys = self.peak_keys.max(live);
        let rule = self.rule;
        for (name, tenant) in &mut self.tenants {
            drain(&rule, tenant, i64::MAX, name, &mut self.alerts);
        }
    }
}

/// Processes, in (ts, event.id) order, every pending candidate with ts < wm.
fn drain<'a>(
    rule: &Rule,
    tenant: &mut TenantState<'a>,
    wm: i64,
    tenant_id: &str,
    alerts: &mut Vec<Alert<'a>>,
) {
    while tenant
        .pending
        .peek()
        .is_some_and(|Reverse((t, _, _))| *t < wm)
    {
        let Some(Reverse((t, _id, user))) = tenant.pending.pop() else {
            break;
        };
        if !tenant.keys.contains_key(user.as_ref()) {
            tenant.keys.insert(
                user.clone(),
                KeyState {
                    times: VecDeque::new(),
                    suppressed_until: i64::MIN,
                },
            );
        }
        let Some(key) = tenant.keys.get_mut(user.as_ref()) else {
            continue;
        };
        if let Some((start, value)) = update(rule, key, t) {
            alerts.push(Alert {
                tenant_id: Cow::Owned(tenant_id.to_owned()),
                user_name: user,
                start,
                end: t,
                value,
            });
        }
    }
}

/// Adds a failure at `t` to a key's window `(t − W, t]`; returns `(window start, count)`
/// when the rule fires.
fn update(rule: &Rule, key: &mut KeyState, t: i64) -> Option<(i64, usize)> {
    key.times.push_back(t);
    let lower = t.saturating_sub(rule.window_ms);
    while key.times.front().is_some_and(|&f| f <= lower) {
        key.times.pop_front();
    }
    if t >= key.suppressed_until && key.times.len() >= rule.threshold {
        key.suppressed_until = t.saturating_add(rule.suppression_ms);
        let start = *key.times.front().expect("window holds t");
        return Some((start, key.times.len()));
    }
    None
}

/// Drops keys whose window is empty for every future (non-late) event and whose
/// suppression has expired: dropping them is indistinguishable from keeping them.
fn sweep(rule: &Rule, tenant: &mut TenantState<'_>, wm: i64) {
    tenant.last_sweep_wm = wm;
    let idle_before = wm.saturating_sub(rule.window_ms);
    tenant.keys.retain(|_, k| {
        let newest = k.times.back().copied().unwrap_or(i64::MIN);
        !(newest <= idle_before && k.suppressed_until <= wm)
    });
}

// ---------------------------------------------------------------------------
// Output and driver
// ---------------------------------------------------------------------------

#[derive(Serialize)]
struct AlertOut<'a> {
    tenant_id: &'a str,
    #[serde(rename = "user.name")]
    user_name: &'a str,
    window_end: String,
    window_start: String,
    value: usize,
}

fn open_input(path: &PathBuf) -> Result<Box<dyn Read>> {
    if path.as_os_str() == "-" {
        Ok(Box::new(io::stdin()))
    } else {
        let f = File::open(path).with_context(|| format!("reading {}", path.display()))?;
        Ok(Box::new(f))
    }
}

/// Streams the input through one reused 1 MiB buffer, handing each whole line to `det`. This is
/// what a careful hand-written tool does (and what the engine's file source does): reading the
/// whole file into one allocation first costs a page fault per 4 KiB and doubles peak memory.
fn process_input(mut input: Box<dyn Read>, det: &mut Detector) -> Result<()> {
    const BLOCK: usize = 1 << 20;
    let mut buf = vec![0u8; BLOCK];
    let mut have = 0usize;
    loop {
        if have == buf.len() {
            // A line longer than the buffer: grow it.
            buf.resize(buf.len() * 2, 0);
        }
        let n = input.read(&mut buf[have..])?;
        if n == 0 {
            if have > 0 {
                det.push_line(&buf[..have]);
            }
            return Ok(());
        }
        have += n;
        let mut pos = 0;
        for nl in memchr::memchr_iter(b'\n', &buf[..have]) {
            det.push_line(&buf[pos..nl]);
            pos = nl + 1;
        }
        buf.copy_within(pos..have, 0);
        have -= pos;
    }
}

fn main() -> Result<()> {
    let args = Args::parse();
    let rule = Rule {
        window_ms: args.window_ms,
        threshold: args.threshold.max(1),
        suppression_ms: args.suppression_ms.unwrap_or(args.window_ms),
        lateness_ms: args.lateness_ms,
    };
    let started = Instant::now();
    let mut det = Detector::new(rule);
    process_input(open_input(&args.input)?, &mut det)?;
    det.finish();

    let sink: Box<dyn Write> = match &args.output {
        Some(p) => Box::new(File::create(p).with_context(|| format!("creating {}", p.display()))?),
        None => Box::new(io::stdout().lock()),
    };
    let mut w = BufWriter::new(sink);
    for a in &det.alerts {
        let out = AlertOut {
            tenant_id: &a.tenant_id,
            user_name: &a.user_name,
            window_end: format_rfc3339_ms(a.end),
            window_start: format_rfc3339_ms(a.start),
            value: a.value,
        };
        serde_json::to_writer(&mut w, &out)?;
        w.write_all(b"\n")?;
    }
    w.flush()?;
    drop(w);

    let elapsed = started.elapsed().as_secs_f64();
    if det.rejected > 0 || det.late_candidates > 0 {
        eprintln!(
            "baseline: rejected={} late_candidates={}",
            det.rejected, det.late_candidates
        );
    }
    eprintln!(
        "baseline: tenants={} peak_keys={}",
        det.tenants.len(),
        det.peak_keys,
    );
    eprintln!(
        "baseline: events={} late={} alerts={} elapsed_s={:.3} events_per_s={:.0}",
        det.events,
        det.late,
        det.alerts.len(),
        elapsed,
        det.events as f64 / elapsed.max(1e-9)
    );
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    const T0: i64 = 1_796_032_800_000; // 2026-11-30T10:00:00Z

    fn line(tenant: &str, user: &str, ts: i64, outcome: &str, id: usize) -> String {
        format!(
            r#"{{"@timestamp":"{}","tenant_id":"{tenant}","schema_version":1,"event":{{"id":"{id:08}","kind":"event","category":["authentication"],"type":["start"],"action":"logon","outcome":"{outcome}"}},"user":{{"name":"{user}","domain":"x"}},"source":{{"ip":"10.0.0.1"}}}}"#,
            format_rfc3339_ms(ts)
        )
    }

    fn fail(user: &str, ts: i64, id: usize) -> String {
        line("acme", user, ts, "failure", id)
    }

    fn run(lines: &[String]) -> (Vec<Alert<'_>>, u64) {
        let mut d = Detector::new(Rule::default());
        for l in lines {
            d.push_line(l.as_bytes());
        }
        d.finish();
        let mut alerts = d.alerts;
        alerts.sort_by(|a, b| (a.end, &a.user_name).cmp(&(b.end, &b.user_name)));
        (alerts, d.late)
    }

    #[test]
    fn timestamp_round_trip() {
        for ms in [0, 1, -1, T0, T0 + 123, 951_782_400_000, 4_102_444_799_999] {
            assert_eq!(parse_rfc3339_ms(&format_rfc3339_ms(ms)), Some(ms));
        }
        assert_eq!(format_rfc3339_ms(T0 + 123), "2026-11-30T10:00:00.123Z");
    }

    #[test]
    fn timestamp_forms_accepted() {
        let l = |ts: &str| {
            format!(
                r#"{{"@timestamp":{ts},"tenant_id":"acme","event":{{"category":"authentication","outcome":"failure"}},"user":{{"name":"bob"}}}}"#
            )
        };
        for ts in [
            "\"2026-11-30T10:00:00Z\"",
            "\"2026-11-30T12:00:00.000+02:00\"",
            "1796032800000",
        ] {
            let s = l(ts);
            let ev: Ev<'_> = serde_json::from_str(&s).expect(ts);
            assert_eq!(ev.ts, Ts(T0), "{ts}");
            assert!(ev.event.category.authentication);
        }
        assert!(serde_json::from_str::<Ev<'_>>(&l("\"2026-11-30\"")).is_err());
        assert!(serde_json::from_str::<Ev<'_>>(&l("1.5")).is_err());
    }

    #[test]
    fn ten_within_five_minutes_fires() {
        let lines: Vec<String> = (0..10)
            .map(|i| fail("alice", T0 + i * 1000, i as usize))
            .collect();
        let (alerts, late) = run(&lines);
        assert_eq!(late, 0);
        assert_eq!(
            alerts,
            vec![Alert {
                tenant_id: "acme".into(),
                user_name: "alice".into(),
                start: T0,
                end: T0 + 9000,
                value: 10
            }]
        );
    }

    #[test]
    fn nine_do_not_fire() {
        let lines: Vec<String> = (0..9)
            .map(|i| fail("alice", T0 + i * 1000, i as usize))
            .collect();
        assert!(run(&lines).0.is_empty());
    }

    #[test]
    fn successes_and_other_keys_do_not_count() {
        let mut lines: Vec<String> = (0..9)
            .map(|i| fail("alice", T0 + i * 1000, i as usize))
            .collect();
        lines.push(line("acme", "alice", T0 + 9500, "success", 100));
        lines.push(fail("bob", T0 + 9600, 101));
        lines.push(line("globex", "alice", T0 + 9700, "failure", 102));
        assert!(run(&lines).0.is_empty());
    }

    #[test]
    fn window_is_half_open() {
        // First at t, tenth at exactly t + 5m: the first falls out of (t+5m − 5m, t+5m].
        let mut lines: Vec<String> = vec![fail("alice", T0, 0)];
        lines.extend((1..9).map(|i| fail("alice", T0 + i * 1000, i as usize)));
        lines.push(fail("alice", T0 + 300_000, 9));
        assert!(run(&lines).0.is_empty());
        // One millisecond less and it fires.
        *lines.last_mut().expect("ten lines") = fail("alice", T0 + 299_999, 9);
        let (alerts, _) = run(&lines);
        assert_eq!(alerts.len(), 1);
        assert_eq!(
            (alerts[0].start, alerts[0].end, alerts[0].value),
            (T0, T0 + 299_999, 10)
        );
    }

    #[test]
    fn refires_only_after_suppression() {
        // A failure every 10 s for 12 minutes: fires at the 10th (t+90s), suppressed
        // until t+390s, fires again there (window then holds 30 events), then at t+690s.
        let lines: Vec<String> = (0..73)
            .map(|i| fail("alice", T0 + i * 10_000, i as usize))
            .collect();
        let (alerts, _) = run(&lines);
        let ends: Vec<(i64, usize)> = alerts.iter().map(|a| (a.end - T0, a.value)).collect();
        assert_eq!(ends, vec![(90_000, 10), (390_000, 30), (690_000, 30)]);
        assert_eq!(alerts[1].start, T0 + 100_000);
    }

    #[test]
    fn late_events_are_counted_and_ignored() {
        let mut lines: Vec<String> = (0..9)
            .map(|i| fail("alice", T0 + i * 1000, i as usize))
            .collect();
        // Another line of the tenant moves its watermark to T0 + 50s.
        lines.push(line("acme", "carol", T0 + 60_000, "success", 50));
        // 10th failure at T0 + 9.5 s is older than the watermark: late.
        lines.push(fail("alice", T0 + 9500, 9));
        // Not late in another tenant (its clock is independent).
        lines.push(line("globex", "alice", T0, "failure", 60));
        let (alerts, late) = run(&lines);
        assert_eq!(late, 1);
        assert!(alerts.is_empty());
    }

    #[test]
    fn out_of_order_within_lateness_is_exact() {
        // Shuffled arrival within 10 s gives the same alerts as sorted arrival.
        let mut lines: Vec<String> = (0..25)
            .map(|i| fail("alice", T0 + i * 300, i as usize))
            .collect();
        let sorted = run(&lines)
            .0
            .iter()
            .map(|a| (a.start, a.end, a.value))
            .collect::<Vec<_>>();
        lines.reverse();
        let (alerts, late) = run(&lines);
        assert_eq!(late, 0);
        assert_eq!(
            alerts
                .iter()
                .map(|a| (a.start, a.end, a.value))
                .collect::<Vec<_>>(),
            sorted
        );
        assert_eq!(sorted, vec![(T0, T0 + 2700, 10)]);
    }

    #[test]
    fn idle_keys_are_evicted_without_changing_results() {
        let mut d = Detector::new(Rule::default());
        let mut lines: Vec<String> = (0..200)
            .map(|i| fail(&format!("u{i}"), T0 + i * 100, i as usize))
            .collect();
        // Advance the watermark far beyond every key's window.
        lines.extend((0..20).map(|i| {
            line(
                "acme",
                "z",
                T0 + 1_000_000 + i * 61_000,
                "success",
                1000 + i as usize,
            )
        }));
        for l in &lines {
            d.push_line(l.as_bytes());
        }
        assert!(d.tenants["acme"].keys.len() < 200);
        d.finish();
        assert!(d.alerts.is_empty());
    }
}
