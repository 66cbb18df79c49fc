//! Engine properties over whole runs, with the memory source and capture sinks: determinism
//! across workers, batching and arrival order; live-mode idleness; exact accounting; derived
//! event ids.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;

use vigil_dsl::SourceFile;
use vigil_engine::{Compiled, EngineConfig, RejectReason, RunStats, Sinks};
use vigil_model::Alert;
use vigil_sinks::{CaptureRejects, CaptureSink};
use vigil_sources::MemorySource;

fn shipped_rules() -> Arc<Compiled> {
    rules(
        &[
            "auth/brute_force_login.rule",
            "auth/password_spray.rule",
            "auth/root_login_from_public_ip.rule",
        ],
        |text| text,
    )
}

/// One rule file's text, compiled.
fn compiled(name: &str, text: &str) -> Arc<Compiled> {
    let (set, _) = vigil_dsl::compile(&[SourceFile::new(name, text)]).unwrap();
    Arc::new(Compiled::new(&set))
}

/// Shipped rule files, each passed through `edit` before compiling.
fn rules(files: &[&str], edit: impl Fn(String) -> String) -> Arc<Compiled> {
    let root = concat!(env!("CARGO_MANIFEST_DIR"), "/../rules/");
    let files: Vec<SourceFile> = files
        .iter()
        .map(|f| {
            SourceFile::new(
                *f,
                edit(std::fs::read_to_string(format!("{root}{f}")).unwrap()),
            )
        })
        .collect();
    let (set, _) = vigil_dsl::compile(&files).unwrap();
    Arc::new(Compiled::new(&set))
}

fn run(
    source: MemorySource,
    workers: usize,
    lateness_ms: u64,
) -> (Vec<Alert>, Vec<(RejectReason, u64, String)>, RunStats) {
    let config = EngineConfig {
        workers,
        lateness_ms,
        ..EngineConfig::default()
    };
    run_with(&config, source, shipped_rules())
}

fn run_with(
    config: &EngineConfig,
    source: MemorySource,
    rules: Arc<Compiled>,
) -> (Vec<Alert>, Vec<(RejectReason, u64, String)>, RunStats) {
    let alerts = Arc::new(CaptureSink::default());
    let rejects = Arc::new(CaptureRejects::default());
    let stats = vigil_engine::run(
        config,
        rules,
        Box::new(source),
        Sinks {
            alerts: alerts.clone(),
            rejects: Some(rejects.clone()),
        },
    )
    .unwrap();
    (alerts.alerts(), rejects.rejects(), stats)
}

/// Alerts without the processing timestamp, as comparable JSON strings.
fn comparable(alerts: &[Alert]) -> BTreeSet<String> {
    alerts
        .iter()
        .map(|a| {
            let mut a = a.clone();
            a.detected_at = 0;
            serde_json::to_string(&a).unwrap()
        })
        .collect()
}

struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }
    fn below(&mut self, n: u64) -> u64 {
        self.next() % n
    }
}

const T0: i64 = 1_796_032_800_000; // 2026-11-30T10:00:00Z

/// A seeded mix of three tenants: background logins (5% failures), brute-force bursts and
/// sprays, in event-time order. Returns (event time, line).
fn workload(seed: u64, n: usize) -> Vec<(i64, String)> {
    let mut rng = Rng(seed);
    let tenants = ["acme", "globex", "initech"];
    let mut out = Vec::new();
    let mut t = T0;
    let mut burst: Option<(usize, u64, usize)> = None;
    for i in 0..n {
        t += rng.below(40) as i64;
        let tenant = tenants[rng.below(3) as usize];
        let (user, ip, outcome) = match &mut burst {
            Some((ti, u, left)) if *left > 0 => {
                *left -= 1;
                let tenant_user = format!("user{u}");
                let _ = ti;
                (tenant_user, "203.0.113.9".to_owned(), "failure")
            }
            _ => {
                if rng.below(400) == 0 {
                    burst = Some((0, rng.below(50), 9 + rng.below(6) as usize));
                }
                let user = format!("user{}", rng.below(50));
                let ip = if rng.below(300) == 0 {
                    "198.51.100.1".to_owned()
                } else {
                    format!("10.0.{}.{}", rng.below(4), rng.below(50))
                };
                (
                    user,
                    ip,
                    if rng.below(20) == 0 {
                        "failure"
                    } else {
                        "success"
                    },
                )
            }
        };
        let spray_user = if ip == "198.51.100.1" {
            format!("victim{}", rng.below(30))
        } else {
            user
        };
        let line = format!(
            r#"{{"@timestamp":{t},"tenant_id":"{tenant}","event":{{"id":"ev-{i:06}","category":["authentication"],"outcome":"{outcome}"}},"user":{{"name":"{spray_user}"}},"source":{{"ip":"{ip}"}}}}"#
        );
        out.push((t, line));
    }
    out
}

/// Perturbs arrival order: each line moves later by a random delay of up to `max_delay_ms` of
/// event time, so no line arrives after a line more than `max_delay_ms` newer.
fn shuffle_within(lines: &[(i64, String)], seed: u64, max_delay_ms: u64) -> Vec<String> {
    let mut rng = Rng(seed);
    let mut keyed: Vec<(i64, usize, &String)> = lines
        .iter()
        .enumerate()
        .map(|(i, (t, l))| (t + rng.below(max_delay_ms) as i64, i, l))
        .collect();
    keyed.sort();
    keyed.into_iter().map(|(_, _, l)| l.clone()).collect()
}

#[test]
fn same_alerts_for_any_workers_batching_and_arrival_order() {
    let events = workload(0x5eed, 30_000);
    let in_order: Vec<String> = events.iter().map(|(_, l)| l.clone()).collect();
    let (reference, rejects, stats) =
        run(MemorySource::from_lines("w", &in_order, 1_000), 1, 10_000);
    assert!(rejects.is_empty(), "{rejects:?}");
    assert!(
        stats.alerts.get("brute_force_login").copied().unwrap_or(0) >= 10,
        "{stats:?}"
    );
    assert!(
        stats.alerts.get("password_spray").copied().unwrap_or(0) >= 1,
        "{stats:?}"
    );
    let want = comparable(&reference);
    for (workers, chunk) in [(2, 1_000), (4, 1_000), (2, 37), (4, 1)] {
        let (alerts, _, _) = run(
            MemorySource::from_lines("w", &in_order, chunk),
            workers,
            10_000,
        );
        assert_eq!(comparable(&alerts), want, "workers={workers} chunk={chunk}");
    }
    // Arrival order shuffled within a bound below the lateness: nothing is late and the alert
    // set is identical, byte for byte apart from detected_at.
    for (seed, workers) in [(1, 1), (2, 2), (3, 4)] {
        let shuffled = shuffle_within(&events, seed, 9_000);
        assert_ne!(shuffled, in_order);
        let (alerts, rejects, stats) = run(
            MemorySource::from_lines("w", &shuffled, 500),
            workers,
            10_000,
        );
        assert_eq!(stats.late, 0);
        assert!(rejects.is_empty());
        assert_eq!(
            comparable(&alerts),
            want,
            "shuffle seed={seed} workers={workers}"
        );
    }
}

#[test]
fn shuffling_beyond_the_bound_reports_late_events_identically_for_any_workers() {
    let events = workload(0xbad, 20_000);
    let shuffled = shuffle_within(&events, 9, 30_000);
    let (a1, r1, s1) = run(MemorySource::from_lines("w", &shuffled, 250), 1, 10_000);
    let (a4, r4, s4) = run(MemorySource::from_lines("w", &shuffled, 7), 4, 10_000);
    assert!(s1.late > 100, "{s1:?}");
    assert_eq!(s1.late, s4.late);
    assert_eq!(s1.late_by_rule, s4.late_by_rule);
    assert_eq!(r1, r4);
    assert!(r1.iter().all(|r| r.0 == RejectReason::Late));
    assert_eq!(comparable(&a1), comparable(&a4));
}

#[test]
fn accounting_is_exact() {
    let mut lines: Vec<String> = workload(7, 2_000).into_iter().map(|(_, l)| l).collect();
    lines.insert(10, "garbage".into());
    lines.insert(20, r#"{"@timestamp":1,"tenant_id":"Nope"}"#.into());
    lines.insert(30, r#"{"tenant_id":"acme"}"#.into());
    lines.insert(
        40,
        format!(r#"{{"@timestamp":{},"tenant_id":"acme"}}"#, T0 - 3_600_000),
    );
    lines.insert(50, String::new());
    let (_, rejects, s) = run(MemorySource::from_lines("w", &lines, 100), 2, 10_000);
    assert_eq!(s.lines, 2_004, "blank lines are not counted");
    assert_eq!(s.lines, s.rejected_total() + s.events);
    assert_eq!(s.events, s.processed() + s.late);
    assert_eq!(s.late, 1);
    assert_eq!(rejects.len() as u64, s.rejected_total() + s.late);
    let reasons: Vec<RejectReason> = rejects.iter().map(|r| r.0).collect();
    assert_eq!(
        reasons,
        [
            RejectReason::InvalidJson,
            RejectReason::InvalidTenant,
            RejectReason::MissingTimestamp,
            RejectReason::Late
        ]
    );
}

#[test]
fn live_idleness_advances_the_watermark_with_the_wall_clock() {
    // A burst of nine failures, then silence (an empty live chunk) for longer than the lateness,
    // then a tenth failure 5 s older than the burst's last event. Replayed, the straggler is
    // within the lateness and completes the burst; live, the idle tenant's watermark has moved
    // past it, so it is late.
    let mut lines: Vec<String> = (0..9)
        .map(|i| {
            format!(
                r#"{{"@timestamp":{},"tenant_id":"acme","user":{{"name":"alice"}},"event":{{"id":"f{i}","category":["authentication"],"outcome":"failure"}}}}"#,
                T0 + i * 1_000
            )
        })
        .collect();
    lines.push(String::new());
    lines.push(format!(
        r#"{{"@timestamp":{},"tenant_id":"acme","user":{{"name":"alice"}},"event":{{"id":"straggler","category":["authentication"],"outcome":"failure"}}}}"#,
        T0 + 3_000
    ));
    let replay = MemorySource::from_lines("replay", &lines, 1);
    let (alerts, _, stats) = run(replay, 2, 10_000);
    assert_eq!(stats.late, 0);
    assert_eq!(alerts.len(), 1);
    // One line per chunk: the burst read at wall time 0, then an empty (idle) chunk and the
    // straggler read 20 s later.
    let mut walls = vec![0; 9];
    walls.push(20_000);
    let live = MemorySource::from_lines("live", &lines, 1).with_wall_clock(walls);
    let (alerts, rejects, stats) = run(live, 2, 10_000);
    assert_eq!(stats.late, 1, "{stats:?}");
    assert!(alerts.is_empty());
    assert_eq!(rejects[0].0, RejectReason::Late);
}

#[test]
fn derived_event_ids_are_stable_and_positional() {
    let line = r#"{"@timestamp":"2026-11-30T10:00:00Z","tenant_id":"acme","user":{"name":"root"},"source":{"ip":"203.0.113.5"},"event":{"category":["authentication"],"outcome":"success"}}"#;
    let lines = vec![line.to_owned(), line.to_owned()];
    let (a, _, _) = run(MemorySource::from_lines("d", &lines, 1), 1, 10_000);
    let (b, _, _) = run(MemorySource::from_lines("d", &lines, 2), 2, 10_000);
    assert_eq!(a.len(), 2, "identical lines without ids are two events");
    assert_eq!(comparable(&a), comparable(&b));
    let ids: BTreeSet<&str> = a.iter().map(|x| x.events[0].as_str()).collect();
    assert_eq!(ids.len(), 2);
    assert!(
        ids.iter()
            .all(|i| i.len() == 32 && i.bytes().all(|c| c.is_ascii_hexdigit()))
    );
}

#[test]
fn many_tenants_each_alert_on_their_own() {
    // 300 tenants, each with the same user name failing nine times, interleaved; only tenants
    // whose id ends in 7 get a tenth failure. No tenant's events may count for another.
    let mut lines = Vec::new();
    for i in 0..10 {
        for t in 0..300 {
            if i == 9 && t % 10 != 7 {
                continue;
            }
            lines.push(format!(
                r#"{{"@timestamp":{},"tenant_id":"tenant_{t}","user":{{"name":"alice"}},"event":{{"id":"t{t}-{i}","category":["authentication"],"outcome":"failure"}}}}"#,
                T0 + i * 1_000
            ));
        }
    }
    let (alerts, rejects, _) = run(MemorySource::from_lines("m", &lines, 256), 2, 10_000);
    assert!(rejects.is_empty());
    let tenants: BTreeSet<String> = alerts.iter().map(|a| a.tenant_id.to_string()).collect();
    let want: BTreeSet<String> = (0..300)
        .filter(|t| t % 10 == 7)
        .map(|t| format!("tenant_{t}"))
        .collect();
    assert_eq!(tenants, want);
    for a in &alerts {
        assert_eq!(a.value, 10.0);
        assert!(
            a.events
                .iter()
                .all(|e| e.starts_with(&format!("t{}-", &a.tenant_id.as_str()[7..])))
        );
    }
}

/// Runs with a checkpoint store, stopping (as a crash would: no flush, no final checkpoint)
/// after `stop_after` chunks; `None` runs to the end of the input.
fn run_checkpointed_with(
    lines: &[String],
    dir: &std::path::Path,
    workers: usize,
    stop_after: Option<usize>,
    rules: Arc<Compiled>,
) -> (Vec<Alert>, RunStats) {
    let config = EngineConfig {
        workers,
        lateness_ms: 10_000,
        checkpoint: Some(vigil_engine::CheckpointConfig {
            dir: dir.to_owned(),
        }),
        ..EngineConfig::default()
    };
    let source = MemorySource::from_lines("stream", lines, 200).with_checkpoints(3, stop_after);
    let (alerts, _, stats) = run_with(&config, source, rules);
    (alerts, stats)
}

#[test]
fn restored_checkpoints_lose_no_alert_and_double_none_across_worker_counts() {
    let lines: Vec<String> = shuffle_within(&workload(0xc0ffee, 20_000), 4, 8_000);
    let (reference, _, _) = run(MemorySource::from_lines("w", &lines, 200), 1, 10_000);
    let want = comparable(&reference);
    assert!(want.len() >= 10, "{}", want.len());

    assert_eq!(interrupted_runs(&lines, "recovery", shipped_rules), want);
}

/// Five interrupted runs (each resumes from the newest checkpoint, then stops 1–2 chunks past
/// a checkpoint, so every restart replays alerts it raised before), rescaling between runs,
/// then one to the end. Returns the alerts as sinks that dedupe by id would hold them, after
/// checking that every run resumed further on and no id came with two contents.
fn interrupted_runs(
    lines: &[String],
    name: &str,
    rules: impl Fn() -> Arc<Compiled>,
) -> BTreeSet<String> {
    let dir = std::env::temp_dir().join(format!("vigil-{name}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    let mut all = Vec::new();
    let mut restored = Vec::new();
    for (workers, stop) in [(1, 13), (2, 8), (4, 11), (1, 7), (2, 14)] {
        let (alerts, stats) = run_checkpointed_with(lines, &dir, workers, Some(stop), rules());
        assert!(stats.checkpoints >= 2, "{stats:?}");
        assert_eq!(stats.restored_dropped, 0);
        restored.push(stats.restored_from);
        all.extend(alerts);
    }
    let (alerts, stats) = run_checkpointed_with(lines, &dir, 2, None, rules());
    restored.push(stats.restored_from);
    all.extend(alerts);
    std::fs::remove_dir_all(&dir).unwrap();

    assert_eq!(restored[0], None);
    let positions: Vec<u64> = restored[1..].iter().map(|p| p.unwrap()).collect();
    assert!(
        positions.windows(2).all(|w| w[0] < w[1]),
        "every run resumes further on: {positions:?}"
    );
    // Replays raise some alerts again, always with the same id and content, so sinks that
    // dedupe by id hold exactly the uninterrupted run's alerts.
    let mut by_id: BTreeMap<String, BTreeSet<String>> = Default::default();
    for a in comparable(&all) {
        let id = serde_json::from_str::<serde_json::Value>(&a).unwrap()["id"]
            .as_str()
            .unwrap()
            .to_owned();
        by_id.entry(id).or_default().insert(a);
    }
    assert!(by_id.values().all(|v| v.len() == 1), "one id, two contents");
    by_id.into_values().flatten().collect()
}

/// Every kind of key state at once: brute force as hopping windows, password spray as
/// sessions, and the success-after-failures sequence.
fn window_kinds_rules() -> Arc<Compiled> {
    rules(
        &[
            "auth/brute_force_login.rule",
            "auth/password_spray.rule",
            "auth/success_after_failures.rule",
        ],
        |t| {
            t.replace(
                "by user.name within 5m",
                "by user.name within hopping 5m every 1m",
            )
            .replace(
                "by source.ip within 10m",
                "by source.ip within session 1m max 10m",
            )
            .replace("runs 5", "runs 3")
            .replace(
                "by user.name, source.ip within 10m",
                "by user.name within 10m",
            )
            .replace("logged on from {source.ip}", "logged on")
        },
    )
}

#[test]
fn hopping_session_and_sequence_state_is_deterministic_and_survives_restarts() {
    let events = workload(0x5e9, 20_000);
    let (reference, stats) = in_order_run(&events, window_kinds_rules());
    for rule in [
        "brute_force_login",
        "password_spray",
        "success_after_failures",
    ] {
        assert!(
            stats.alerts.get(rule).copied().unwrap_or(0) >= 1,
            "{rule}: {stats:?}"
        );
    }
    assert_same_shuffled_rescaled_and_restarted(
        &events,
        &comparable(&reference),
        "window-kinds",
        window_kinds_rules,
    );
}

/// One worker over `events` in order, with 10 s of lateness: the reference run (it rejects
/// nothing).
fn in_order_run(events: &[(i64, String)], rules: Arc<Compiled>) -> (Vec<Alert>, RunStats) {
    let in_order: Vec<String> = events.iter().map(|(_, l)| l.clone()).collect();
    let config = EngineConfig {
        workers: 1,
        lateness_ms: 10_000,
        ..EngineConfig::default()
    };
    let (alerts, rejects, stats) = run_with(
        &config,
        MemorySource::from_lines("w", &in_order, 1_000),
        rules,
    );
    assert!(rejects.is_empty(), "{rejects:?}");
    (alerts, stats)
}

/// The alerts `want` of an in-order run come out again, exactly, with arrival order shuffled
/// within the lateness (10 s) for 2 and 4 workers and several chunk sizes, and from a run
/// interrupted and rescaled five times.
fn assert_same_shuffled_rescaled_and_restarted(
    events: &[(i64, String)],
    want: &BTreeSet<String>,
    name: &str,
    rules: impl Fn() -> Arc<Compiled>,
) {
    for (seed, workers, chunk) in [(1, 2, 37), (2, 4, 1), (3, 2, 500)] {
        let shuffled = shuffle_within(events, seed, 9_000);
        let config = EngineConfig {
            workers,
            lateness_ms: 10_000,
            ..EngineConfig::default()
        };
        let (alerts, _, stats) = run_with(
            &config,
            MemorySource::from_lines("w", &shuffled, chunk),
            rules(),
        );
        assert_eq!(stats.late, 0);
        assert_same(
            &comparable(&alerts),
            want,
            &format!("seed={seed} workers={workers} chunk={chunk}"),
        );
    }
    let shuffled = shuffle_within(events, 9, 8_000);
    assert_same(
        &interrupted_runs(&shuffled, name, rules),
        want,
        "interrupted",
    );
}

/// `got == want`, or a failure that shows the alerts in one and not the other.
fn assert_same(got: &BTreeSet<String>, want: &BTreeSet<String>, what: &str) {
    assert!(
        got == want,
        "{what}: {} alerts, {} expected; extra {:#?}; missing {:#?}",
        got.len(),
        want.len(),
        got.difference(want).collect::<Vec<_>>(),
        want.difference(got).collect::<Vec<_>>()
    );
}

#[test]
fn an_absent_step_fires_when_the_watermark_passes_its_deadline_not_at_end_of_input() {
    // Logging stopped at T0 and never restarted; other accounts' events carry event time on
    // to T0 + 30 min. A run stopped (as a crash would) well before the end of its input has
    // already raised the alert: the watermark, not the end of input, reached the deadline.
    let rules = || rules(&["cloud/cloudtrail_logging_stopped.rule"], |t| t);
    let event = |t: i64, account: &str, action: &str, id: &str| {
        format!(
            r#"{{"@timestamp":{t},"tenant_id":"acme","cloud":{{"provider":"aws","account":{{"id":"{account}"}}}},"event":{{"id":"{id}","action":"{action}"}}}}"#
        )
    };
    let mut lines = vec![event(T0, "111111111111", "StopLogging", "stop")];
    lines.extend((1..=3_600).map(|i| {
        event(
            T0 + i * 500,
            "222222222222",
            "DescribeTrails",
            &format!("d{i}"),
        )
    }));
    let dir = std::env::temp_dir().join(format!("vigil-absence-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    // 200 lines a chunk: the deadline (T0 + 15 min, line 1,800) is passed by chunk 10 and the
    // lateness soon after; the run stops after chunk 14 of 19.
    let (alerts, _) = run_checkpointed_with(&lines, &dir, 2, Some(14), rules());
    std::fs::remove_dir_all(&dir).unwrap();
    assert_eq!(alerts.len(), 1, "{alerts:?}");
    let a = &alerts[0];
    assert_eq!(a.rule_id, "cloudtrail_logging_stopped");
    assert_eq!((a.window.start, a.window.end), (T0, T0 + 15 * 60_000));
    assert_eq!(a.events, ["stop"]);
}

#[test]
fn restored_state_follows_unchanged_rules_and_drops_changed_ones() {
    let lines: Vec<String> = workload(0xabc, 12_000)
        .into_iter()
        .map(|(_, l)| l)
        .collect();
    let brute = || rules(&["auth/brute_force_login.rule"], |t| t);
    let config = EngineConfig {
        lateness_ms: 10_000,
        ..EngineConfig::default()
    };
    let (reference, _, _) = run_with(&config, MemorySource::from_lines("w", &lines, 200), brute());
    let want = comparable(&reference);
    assert!(want.len() >= 5, "{}", want.len());

    let dir = std::env::temp_dir().join(format!("vigil-rule-change-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    // Checkpointed with brute force alone; resumed with a rule added whose id sorts first, so
    // brute force moves from index 0 to 1 — and keeps its state.
    let (first, _) = run_checkpointed_with(&lines, &dir, 1, Some(20), brute());
    let both = rules(
        &["auth/brute_force_login.rule", "auth/password_spray.rule"],
        |t| t.replace("rule password_spray", "rule a_password_spray"),
    );
    assert_eq!(both.rule_id(1), "brute_force_login");
    let (rest, stats) = run_checkpointed_with(&lines, &dir, 2, None, both);
    assert!(stats.restored_from.is_some());
    assert_eq!(stats.restored_dropped, 0, "{stats:?}");
    let brute_alerts: Vec<Alert> = first
        .into_iter()
        .chain(rest)
        .filter(|a| a.rule_id == "brute_force_login")
        .collect();
    assert_eq!(comparable(&brute_alerts), want);

    // A changed rule (same id and version, another plan) starts from empty state.
    let _ = std::fs::remove_dir_all(&dir);
    run_checkpointed_with(&lines, &dir, 1, Some(20), brute());
    let changed = rules(&["auth/brute_force_login.rule"], |t| {
        t.replace("threshold = 10", "threshold = 11")
    });
    let (_, stats) = run_checkpointed_with(&lines, &dir, 1, None, changed);
    assert!(stats.restored_dropped > 0, "{stats:?}");
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn exceptions_allow_events_for_their_tenant_and_rule_until_they_expire() {
    // Twelve failures for svc_backup in acme and in globex around midnight 2026-12-01, six
    // before and six after. The exception (acme, brute force, expiring 2026-12-01) allows
    // acme's first six only: the later six are not enough to fire, and twelve more after
    // midnight fire again. Globex, with the same user, is not excepted.
    let exceptions = r#"
exception acme.backup {
    rule    brute_force_login
    tenant  acme
    owner   "soc@acme.example"
    expires 2026-12-01
    reason  "backup agent retries"
    match   user.name == "svc_backup"
}
"#;
    let root = concat!(env!("CARGO_MANIFEST_DIR"), "/../rules/");
    let files = [
        SourceFile::new(
            "brute_force_login.rule",
            std::fs::read_to_string(format!("{root}auth/brute_force_login.rule")).unwrap(),
        ),
        SourceFile::new("acme.exceptions", exceptions),
    ];
    let day = 1_796_083_200_000; // 2026-12-01T00:00:00Z
    let (set, warnings) =
        vigil_dsl::compile_at(&files, vigil_dsl::Schema::canonical(), day - 86_400_000).unwrap();
    assert!(warnings.is_empty(), "{warnings:?}");
    let line = |tenant: &str, t: i64, i: usize| {
        format!(
            r#"{{"@timestamp":{t},"tenant_id":"{tenant}","user":{{"name":"svc_backup"}},"event":{{"id":"{tenant}-{i}","category":["authentication"],"outcome":"failure"}}}}"#
        )
    };
    let mut lines = Vec::new();
    for tenant in ["acme", "globex"] {
        for i in 0..12 {
            lines.push((
                day - 60_000 + i as i64 * 10_000,
                line(tenant, day - 60_000 + i as i64 * 10_000, i),
            ));
        }
        for i in 12..24 {
            let t = day + 600_000 + i as i64 * 1_000;
            lines.push((t, line(tenant, t, i)));
        }
    }
    lines.sort();
    let lines: Vec<String> = lines.into_iter().map(|(_, l)| l).collect();
    let config = EngineConfig {
        workers: 2,
        lateness_ms: 10_000,
        ..EngineConfig::default()
    };
    let (alerts, _, stats) = run_with(
        &config,
        MemorySource::from_lines("x", &lines, 5),
        Arc::new(Compiled::new(&set)),
    );
    let mut fired: Vec<(String, i64)> = alerts
        .iter()
        .map(|a| (a.tenant_id.to_string(), a.window.start))
        .collect();
    fired.sort();
    // acme: only the burst after midnight; globex: the first ten failures, then (suppressed
    // for 5 minutes) the burst after midnight.
    assert_eq!(
        fired,
        [
            ("acme".to_owned(), day + 612_000),
            ("globex".to_owned(), day - 60_000),
            ("globex".to_owned(), day + 612_000),
        ]
    );
    assert_eq!(
        stats.excepted,
        [(("brute_force_login".to_owned(), "acme".to_owned()), 6)].into()
    );
}

#[test]
fn a_sequence_exception_counts_only_the_events_its_steps_take() {
    // Two failures then a success for svc_backup, with process events between them and an
    // authentication of unknown outcome after, in acme and in globex. The exception allows
    // acme's: the three events its steps take are excepted (the others are no step's, so the
    // rule never took them), and only globex fires.
    let files = [
        SourceFile::new(
            "seq.rule",
            r#"
rule login_after_failures {
    title    "Login after failures for {user.name}"
    severity high
    sequence by user.name within 10m {
        fail: event.category == "authentication" and event.outcome == "failure" runs 2
        ok:   event.category == "authentication" and event.outcome == "success"
    }
}
"#,
        ),
        SourceFile::new(
            "acme.exceptions",
            r#"
exception acme.backup {
    rule    login_after_failures
    tenant  acme
    owner   "soc@acme.example"
    expires 2027-01-01
    reason  "backup agent retries"
    match   user.name == "svc_backup"
}
"#,
        ),
    ];
    let day = 1_796_083_200_000; // 2026-12-01T00:00:00Z
    let (set, warnings) =
        vigil_dsl::compile_at(&files, vigil_dsl::Schema::canonical(), day).unwrap();
    assert!(warnings.is_empty(), "{warnings:?}");
    let mut lines = Vec::new();
    for tenant in ["acme", "globex"] {
        let kinds = [
            (r#""authentication"],"outcome":"failure""#, 0),
            (r#""process"],"outcome":"success""#, 1),
            (r#""authentication"],"outcome":"failure""#, 2),
            (r#""process"],"outcome":"success""#, 3),
            (r#""authentication"],"outcome":"success""#, 4),
            (r#""process"],"outcome":"success""#, 5),
            (r#""authentication"],"outcome":"unknown""#, 6),
        ];
        for (kind, i) in kinds {
            let t = day + i * 1_000;
            lines.push(format!(
                r#"{{"@timestamp":{t},"tenant_id":"{tenant}","user":{{"name":"svc_backup"}},"event":{{"id":"{tenant}-{i}","category":[{kind}}}}}"#
            ));
        }
    }
    let (alerts, _, stats) = run_with(
        &EngineConfig::default(),
        MemorySource::from_lines("x", &lines, 4),
        Arc::new(Compiled::new(&set)),
    );
    let fired: Vec<&str> = alerts.iter().map(|a| a.tenant_id.as_str()).collect();
    assert_eq!(fired, ["globex"]);
    assert_eq!(
        stats.excepted,
        [(("login_after_failures".to_owned(), "acme".to_owned()), 3)].into()
    );
}

/// `sudo` per (user, host) with an hour's quiet period; `host.name` is sometimes missing.
fn suppressed_sudo_rules() -> Arc<Compiled> {
    let rule = r#"
rule first_sudo {
    title "sudo by {user.name}"
    severity medium
    match process.name == "sudo"
    suppress for 1h by user.name, host.name
}
"#;
    compiled("first_sudo.rule", rule)
}

/// `n` events for the tenants acme and globex at random gaps below `max_gap_ms` from T0: `line`
/// writes event `i` at time `t` for `tenant` (drawing what else it needs from the generator).
fn two_tenants(
    seed: u64,
    n: usize,
    max_gap_ms: u64,
    mut line: impl FnMut(&mut Rng, usize, i64, &str) -> String,
) -> Vec<(i64, String)> {
    let mut rng = Rng(seed);
    let mut t = T0;
    (0..n)
        .map(|i| {
            t += rng.below(max_gap_ms) as i64;
            let tenant = ["acme", "globex"][rng.below(2) as usize];
            (t, line(&mut rng, i, t, tenant))
        })
        .collect()
}

/// The events parsed, in (time, `event.id`) order: the order a reference model replays them in.
fn in_time_and_id_order(events: &[(i64, String)]) -> Vec<(i64, String, serde_json::Value)> {
    let mut ordered: Vec<(i64, String, serde_json::Value)> = events
        .iter()
        .map(|(t, l)| {
            let v: serde_json::Value = serde_json::from_str(l).unwrap();
            (*t, v["event"]["id"].as_str().unwrap().to_owned(), v)
        })
        .collect();
    ordered.sort_by(|a, b| (a.0, &a.1).cmp(&(b.0, &b.1)));
    ordered
}

#[test]
fn suppressed_single_event_rules_alert_once_per_key_and_quiet_period_for_any_arrival_order() {
    // Two tenants share user and host names; `sudo` every ~40 s on average for four hours,
    // spread over 3 users × 3 hosts (or no host), with other processes in between.
    let events = two_tenants(0x5d0, 20_000, 1_500, |rng, i, t, tenant| {
        let user = format!("u{}", rng.below(3));
        let host = match rng.below(4) {
            3 => String::new(),
            h => format!(r#","host":{{"name":"h{h}"}}"#),
        };
        let process = if rng.below(20) == 0 { "sudo" } else { "bash" };
        format!(
            r#"{{"@timestamp":{t},"tenant_id":"{tenant}","user":{{"name":"{user}"}}{host},"process":{{"name":"{process}"}},"event":{{"id":"e{i}"}}}}"#
        )
    });
    // The reference, computed directly: in (time, id) order, a key alerts when its quiet
    // period (alert time + 1 h) has passed.
    let sudo = events.iter().filter(|(_, l)| l.contains("sudo")).count();
    let mut quiet: std::collections::HashMap<(String, String, String), i64> = Default::default();
    let mut want = BTreeSet::new();
    for (t, id, v) in in_time_and_id_order(&events) {
        if v["process"]["name"] != "sudo" {
            continue;
        }
        let field = |a: &str, b: &str| v[a][b].as_str().unwrap_or_default().to_owned();
        let key = (
            v["tenant_id"].as_str().unwrap().to_owned(),
            field("user", "name"),
            field("host", "name"),
        );
        if quiet.get(&key).is_none_or(|&until| t >= until) {
            quiet.insert(key.clone(), t + 3_600_000);
            want.insert((key.0, key.1, key.2, id));
        }
    }
    // Each tenant alerts for its 12 keys more than once over four hours, and most sudo
    // events are suppressed.
    for tenant in ["acme", "globex"] {
        let n = want.iter().filter(|w| w.0 == tenant).count();
        assert!(n > 12 && n < sudo / 4, "{tenant}: {n} of {sudo}");
    }
    let fired = |alerts: &[Alert]| -> BTreeSet<(String, String, String, String)> {
        alerts
            .iter()
            .map(|a| {
                assert_eq!(a.title, format!("sudo by {}", a.group["user.name"]));
                (
                    a.tenant_id.to_string(),
                    a.group["user.name"].clone(),
                    a.group["host.name"].clone(),
                    a.group["event.id"].clone(),
                )
            })
            .collect()
    };
    let (reference, stats) = in_order_run(&events, suppressed_sudo_rules());
    assert_eq!(fired(&reference), want);
    // Every sudo event alerts or is held back by its key's quiet period, and is counted so.
    for tenant in ["acme", "globex"] {
        let matched = events
            .iter()
            .filter(|(_, l)| l.contains("sudo") && l.contains(&format!(r#""{tenant}""#)))
            .count() as u64;
        let alerted = want.iter().filter(|w| w.0 == tenant).count() as u64;
        let key = ("first_sudo".to_owned(), tenant.to_owned());
        assert_eq!(
            stats.suppressed.get(&key),
            Some(&(matched - alerted)),
            "{tenant}"
        );
    }
    assert_eq!(stats.suppressed.len(), 2);
    assert_same_shuffled_rescaled_and_restarted(
        &events,
        &comparable(&reference),
        "suppressed",
        suppressed_sudo_rules,
    );
}

/// Failures per (source, user), suppressed across users by source; and a sequence per
/// (user, source), suppressed across sources by user.
fn suppressed_across_rules() -> Arc<Compiled> {
    let rule = r#"
rule failures_by_source {
    title "Failures from {source.ip} for {user.name}"
    severity medium
    match event.outcome == "failure"
    when count >= 3 by source.ip, user.name within 5m
    suppress for 20m by source.ip
}

rule success_after_failures_by_user {
    title "{user.name} logged on after failures"
    severity high
    match event.category == "authentication"
    sequence by user.name, source.ip within 10m {
        fail: event.outcome == "failure" runs 2
        ok: event.outcome == "success"
    }
    suppress for 30m by user.name
}
"#;
    compiled("across.rule", rule)
}

#[test]
fn suppression_across_groups_alerts_once_per_value_and_quiet_period_for_any_arrival_order() {
    // Two tenants with the same four sources and five users, logging on every ~10 s for about
    // five hours, a third of the logons failing.
    let events = two_tenants(0xac05, 20_000, 2_000, |rng, i, t, tenant| {
        let ip = format!("10.0.0.{}", rng.below(4));
        let user = format!("u{}", rng.below(5));
        let outcome = if rng.below(3) == 0 {
            "failure"
        } else {
            "success"
        };
        format!(
            r#"{{"@timestamp":{t},"tenant_id":"{tenant}","user":{{"name":"{user}"}},"source":{{"ip":"{ip}"}},"event":{{"id":"e{i}","category":["authentication"],"outcome":"{outcome}"}}}}"#
        )
    });
    // The reference for the aggregation, from the definition: in (time, id) order every
    // failure after which its (source, user) has at least 3 failures in the last 5 minutes
    // matches (no quiet period per group); a match alerts when its (tenant, source) is not
    // quiet, and opens 20 minutes of quiet for it.
    let mut recent: std::collections::HashMap<(String, String, String), Vec<i64>> =
        Default::default();
    let mut quiet: std::collections::HashMap<(String, String), i64> = Default::default();
    let mut want = BTreeSet::new();
    let mut matches: BTreeMap<String, u64> = BTreeMap::new();
    for (t, id, v) in in_time_and_id_order(&events) {
        if v["event"]["outcome"] != "failure" {
            continue;
        }
        let tenant = v["tenant_id"].as_str().unwrap().to_owned();
        let ip = v["source"]["ip"].as_str().unwrap().to_owned();
        let user = v["user"]["name"].as_str().unwrap().to_owned();
        let times = recent
            .entry((tenant.clone(), ip.clone(), user.clone()))
            .or_default();
        times.retain(|&s| s > t - 5 * 60_000);
        times.push(t);
        if times.len() < 3 {
            continue;
        }
        *matches.entry(tenant.clone()).or_default() += 1;
        let q = quiet
            .entry((tenant.clone(), ip.clone()))
            .or_insert(i64::MIN);
        if t >= *q {
            *q = t + 20 * 60_000;
            want.insert((tenant, ip, user, id));
        }
    }
    // Each tenant's sources alert again and again, and most matches are held back, some of
    // them for another user than the one that alerted.
    for tenant in ["acme", "globex"] {
        let n = want.iter().filter(|w| w.0 == tenant).count() as u64;
        assert!(
            n > 20 && n < matches[tenant] / 3,
            "{tenant}: {n} of {matches:?}"
        );
        let users: BTreeSet<&String> = want
            .iter()
            .filter(|w| w.0 == tenant && w.1 == "10.0.0.1")
            .map(|w| &w.2)
            .collect();
        assert!(users.len() > 1, "{tenant}: {users:?}");
    }
    let (reference, stats) = in_order_run(&events, suppressed_across_rules());
    let fired: BTreeSet<(String, String, String, String)> = reference
        .iter()
        .filter(|a| a.rule_id == "failures_by_source")
        .map(|a| {
            (
                a.tenant_id.to_string(),
                a.group["source.ip"].clone(),
                a.group["user.name"].clone(),
                a.events.last().unwrap().clone(),
            )
        })
        .collect();
    assert_eq!(fired, want);
    for tenant in ["acme", "globex"] {
        let alerted = want.iter().filter(|w| w.0 == tenant).count() as u64;
        let key = ("failures_by_source".to_owned(), tenant.to_owned());
        assert_eq!(
            stats.suppressed[&key],
            matches[tenant] - alerted,
            "{tenant}"
        );
    }
    // The sequence: no two alerts of one (tenant, user) within 30 minutes, though other
    // sources of the user complete matches meanwhile (counted as suppressed).
    let mut seq: BTreeMap<(String, String), Vec<i64>> = BTreeMap::new();
    for a in reference
        .iter()
        .filter(|a| a.rule_id == "success_after_failures_by_user")
    {
        seq.entry((a.tenant_id.to_string(), a.group["user.name"].clone()))
            .or_default()
            .push(a.window.end);
    }
    assert_eq!(seq.len(), 10, "{seq:?}");
    for (key, ends) in &mut seq {
        ends.sort_unstable();
        assert!(
            ends.windows(2).all(|w| w[1] - w[0] >= 30 * 60_000),
            "{key:?}: {ends:?}"
        );
    }
    for tenant in ["acme", "globex"] {
        let key = (
            "success_after_failures_by_user".to_owned(),
            tenant.to_owned(),
        );
        assert!(stats.suppressed[&key] > 0, "{tenant}");
    }
    assert_same_shuffled_rescaled_and_restarted(
        &events,
        &comparable(&reference),
        "suppressed-across",
        suppressed_across_rules,
    );
}

/// The shipped new-country rule with a 20-minute TTL instead of 30 days.
fn new_country_rules() -> Arc<Compiled> {
    rules(&["auth/logon_from_new_country.rule"], |t| {
        t.replace("within 30d", "within 20m")
    })
}

#[test]
fn first_seen_state_alerts_on_keys_unseen_for_the_ttl_for_any_arrival_order_and_restarts() {
    // Two tenants with the same four users, logging on from five countries of very different
    // frequency over eight hours, so that keys come and go around the TTL; some logons fail or
    // have no geo field.
    let events = two_tenants(0xf125, 20_000, 3_000, |rng, i, t, tenant| {
        let user = format!("u{}", rng.below(4));
        let country = match rng.below(1_000) {
            0..700 => r#","geo":{"country_iso_code":"US"}"#,
            700..900 => r#","geo":{"country_iso_code":"DE"}"#,
            900..960 => r#","geo":{"country_iso_code":"FR"}"#,
            960..990 => r#","geo":{"country_iso_code":"BR"}"#,
            990..995 => r#","geo":{"country_iso_code":"RU"}"#,
            _ => "",
        };
        let outcome = if rng.below(10) == 0 {
            "failure"
        } else {
            "success"
        };
        format!(
            r#"{{"@timestamp":{t},"tenant_id":"{tenant}","user":{{"name":"{user}"}},"source":{{"ip":"203.0.113.9"{country}}},"event":{{"id":"e{i}","category":["authentication"],"outcome":"{outcome}"}}}}"#
        )
    });
    // The reference, from the definition: in (time, id) order a key (tenant, user, country)
    // alerts when it was never seen or last seen at least 20 minutes before.
    let mut last: std::collections::HashMap<(String, String, String), i64> = Default::default();
    let mut want = BTreeSet::new();
    for (t, id, v) in &in_time_and_id_order(&events) {
        let Some(country) = v["source"]["geo"]["country_iso_code"].as_str() else {
            continue;
        };
        if v["event"]["outcome"] != "success" {
            continue;
        }
        let key = (
            v["tenant_id"].as_str().unwrap().to_owned(),
            v["user"]["name"].as_str().unwrap().to_owned(),
            country.to_owned(),
        );
        if last.get(&key).is_none_or(|&seen| t - seen >= 20 * 60_000) {
            want.insert((key.0.clone(), key.1.clone(), key.2.clone(), id.clone()));
        }
        last.insert(key, *t);
    }
    // Common countries are seen once per key; rare ones again and again.
    let renewed = want.iter().filter(|w| w.2 == "BR" || w.2 == "RU").count();
    assert!(want.len() > 40 && renewed > 16, "{}, {renewed}", want.len());
    let fired = |alerts: &[Alert]| -> BTreeSet<(String, String, String, String)> {
        alerts
            .iter()
            .map(|a| {
                assert_eq!(a.events.len(), 1);
                (
                    a.tenant_id.to_string(),
                    a.group["user.name"].clone(),
                    a.group["source.geo.country_iso_code"].clone(),
                    a.events[0].clone(),
                )
            })
            .collect()
    };
    let (reference, _) = in_order_run(&events, new_country_rules());
    assert_eq!(fired(&reference), want);
    assert_same_shuffled_rescaled_and_restarted(
        &events,
        &comparable(&reference),
        "first-seen",
        new_country_rules,
    );
}

/// The shipped brute force rule, with acme's parameter set (5 failures within 2 minutes)
/// when `tuned`.
fn brute_force_rules(tuned: bool) -> Arc<Compiled> {
    let root = concat!(env!("CARGO_MANIFEST_DIR"), "/../rules/auth/");
    let mut files = vec![SourceFile::new(
        "brute_force_login.rule",
        std::fs::read_to_string(format!("{root}brute_force_login.rule")).unwrap(),
    )];
    if tuned {
        files.push(SourceFile::new(
            "acme.params",
            "params acme.bf {\n rule brute_force_login\n tenant acme\n threshold = 5\n window = 2m\n}\n",
        ));
    }
    let (set, _) = vigil_dsl::compile(&files).unwrap();
    Arc::new(Compiled::new(&set))
}

#[test]
fn a_tenants_parameters_change_its_alerts_only_for_any_arrival_order_and_restarts() {
    let events = workload(0x9a7a, 20_000);
    let (defaults, _) = in_order_run(&events, brute_force_rules(false));
    let (tuned, _) = in_order_run(&events, brute_force_rules(true));
    let of = |alerts: &[Alert], tenant: &str| -> BTreeSet<String> {
        comparable(alerts)
            .into_iter()
            .filter(|a| a.contains(&format!(r#""tenant_id":"{tenant}""#)))
            .collect()
    };
    // The other tenants' alerts are exactly those of the defaults.
    for tenant in ["globex", "initech"] {
        assert!(!of(&defaults, tenant).is_empty(), "{tenant}");
        assert_eq!(of(&tuned, tenant), of(&defaults, tenant), "{tenant}");
    }
    // acme's follow its own bar: 5 failures within 2 minutes, so more of them.
    let acme: Vec<&Alert> = tuned
        .iter()
        .filter(|a| a.tenant_id.as_str() == "acme")
        .collect();
    assert!(acme.len() > of(&defaults, "acme").len(), "{}", acme.len());
    assert!(acme.iter().any(|a| a.value == 5.0));
    for a in &acme {
        // At least 5 (a sustained burst refires after the quiet period at whatever count).
        assert!(a.value >= 5.0, "{a:?}");
        assert!(a.window.end - a.window.start < 120_000, "{a:?}");
        assert_eq!(
            a.description.as_deref(),
            Some(&*format!(
                "At least 5 failed logins for {} within 2m.",
                a.group["user.name"]
            ))
        );
    }
    assert_same_shuffled_rescaled_and_restarted(
        &events,
        &comparable(&tuned),
        "tenant-params",
        || brute_force_rules(true),
    );
}

/// The workload with a fourth tenant, `noisy`, failing logons for a new user every 20 ms over
/// the same span: many keys and many single-event alerts.
fn with_noisy_tenant(events: &[(i64, String)]) -> Vec<(i64, String)> {
    let end = events.last().map_or(T0, |e| e.0);
    let mut all = events.to_vec();
    all.extend((0..).map(|i| T0 + i * 20).take_while(|t| *t <= end).map(|t| {
        let line = format!(
            r#"{{"@timestamp":{t},"tenant_id":"noisy","event":{{"id":"n-{t}","category":["authentication"],"outcome":"failure"}},"user":{{"name":"n{t}"}},"source":{{"ip":"192.0.2.1"}}}}"#
        );
        (t, line)
    }));
    all.sort_by_key(|e| e.0);
    all
}

fn run_limited(
    events: &[(i64, String)],
    rules: Arc<Compiled>,
    workers: usize,
    limits: vigil_engine::TenantLimits,
) -> (BTreeSet<String>, RunStats) {
    let lines: Vec<String> = events.iter().map(|(_, l)| l.clone()).collect();
    let config = EngineConfig {
        workers,
        lateness_ms: 10_000,
        limits,
        ..EngineConfig::default()
    };
    let (alerts, rejects, stats) =
        run_with(&config, MemorySource::from_lines("w", &lines, 500), rules);
    assert!(rejects.is_empty(), "{rejects:?}");
    (comparable(&alerts), stats)
}

fn of_tenants(alerts: &BTreeSet<String>, tenants: &[&str]) -> BTreeSet<String> {
    alerts
        .iter()
        .filter(|a| {
            tenants
                .iter()
                .any(|t| a.contains(&format!(r#""tenant_id":"{t}""#)))
        })
        .cloned()
        .collect()
}

#[test]
fn a_tenant_past_its_live_key_cap_is_shed_and_reported_and_the_others_are_unchanged() {
    let events = workload(0xca9, 20_000);
    let noisy = with_noisy_tenant(&events);
    let quiet = ["acme", "globex", "initech"];
    let (reference, _) = run_limited(&events, brute_force_rules(false), 1, Default::default());
    assert!(reference.len() >= 5, "{}", reference.len());
    let mut limits = vigil_engine::TenantLimits::default();
    limits.tenants.insert(
        "noisy".into(),
        vigil_engine::TenantCaps {
            keys: Some(1_000),
            alerts_per_minute: None,
        },
    );
    for workers in [1, 2, 4] {
        let (alerts, stats) =
            run_limited(&noisy, brute_force_rules(false), workers, limits.clone());
        assert_eq!(of_tenants(&alerts, &quiet), reference, "workers={workers}");
        // The noisy tenant's users beyond its cap were shed, counted, and reported.
        let shed = stats.shed_keys[&("brute_force_login".to_owned(), "noisy".to_owned())];
        assert!(shed > 15_000, "workers={workers}: {shed}");
        assert_eq!(stats.shed_keys.len(), 1, "{:?}", stats.shed_keys);
        let health: Vec<serde_json::Value> = of_tenants(&alerts, &["noisy"])
            .iter()
            .map(|a| serde_json::from_str(a).unwrap())
            .collect();
        assert_eq!(health.len(), 1, "one per rule, tenant and hour: {health:?}");
        assert_eq!(health[0]["rule_id"], "vigil.health.key_cap");
        assert_eq!(health[0]["group"]["rule.id"], "brute_force_login");
        let text = health[0]["description"].as_str().unwrap();
        assert!(
            text.contains("its cap: events of brute_force_login that would open another key"),
            "{text}"
        );
        assert_eq!(stats.health_alerts, 1);
    }
}

#[test]
fn alerts_past_a_tenants_rate_cap_are_shed_exactly_and_the_others_are_unchanged() {
    let failures = || {
        let rule = r#"
rule failed_logon {
    title "Failed logon for {user.name}"
    severity low
    match event.outcome == "failure"
}
"#;
        compiled("f.rule", rule)
    };
    let events = workload(0xa1e, 20_000);
    let noisy = with_noisy_tenant(&events);
    let quiet = ["acme", "globex", "initech"];
    let (reference, _) = run_limited(&events, failures(), 1, Default::default());
    let mut limits = vigil_engine::TenantLimits::default();
    limits.tenants.insert(
        "noisy".into(),
        vigil_engine::TenantCaps {
            keys: None,
            alerts_per_minute: Some(50),
        },
    );
    // Per minute of event time: 50 alerts of noisy's failures, one health alert, the rest
    // shed.
    let mut per_minute: BTreeMap<i64, u64> = BTreeMap::new();
    for (t, l) in &noisy {
        if l.contains(r#""tenant_id":"noisy""#) {
            *per_minute.entry(t - t.rem_euclid(60_000)).or_default() += 1;
        }
    }
    let admitted: u64 = per_minute.values().map(|&n| n.min(50)).sum();
    let shed: u64 = per_minute.values().map(|&n| n.saturating_sub(50)).sum();
    let over = per_minute.values().filter(|&&n| n > 50).count();
    assert!(over >= 5, "{per_minute:?}");
    for workers in [1, 2, 4] {
        let (alerts, stats) = run_limited(&noisy, failures(), workers, limits.clone());
        assert_eq!(of_tenants(&alerts, &quiet), reference, "workers={workers}");
        let mine: Vec<serde_json::Value> = of_tenants(&alerts, &["noisy"])
            .iter()
            .map(|a| serde_json::from_str(a).unwrap())
            .collect();
        let health: Vec<&serde_json::Value> = mine
            .iter()
            .filter(|a| a["rule_id"] == "vigil.health.alert_rate")
            .collect();
        assert_eq!(
            mine.len() as u64 - health.len() as u64,
            admitted,
            "workers={workers}"
        );
        assert_eq!(health.len(), over, "workers={workers}");
        for h in &health {
            let text = h["description"].as_str().unwrap();
            assert!(
                text.contains("alerts for the tenant within one minute of event time, its cap"),
                "{text}"
            );
        }
        assert_eq!(
            stats.shed_alerts[&("failed_logon".to_owned(), "noisy".to_owned())],
            shed
        );
        assert_eq!(
            stats.alerts["failed_logon"],
            reference.len() as u64 + admitted
        );
    }
}

/// The shipped brute force and spray rules, a rule over their alerts (the risk per tenant
/// within two minutes) and one over that rule's alerts: three stages.
fn risk_rules() -> Arc<Compiled> {
    let root = concat!(env!("CARGO_MANIFEST_DIR"), "/../rules/");
    let over_alerts = r#"
rule tenant_risk {
    title "Risk in the tenant"
    severity high
    from alerts
    match event.risk_score > 0
    when sum of event.risk_score >= 200 within 2m
    suppress for 30s
}

rule risk_waves {
    title "Risk waves"
    severity critical
    from alerts of tenant_risk
    match rule.severity == "high"
    when count >= 3 within 5m
}
"#;
    let mut files: Vec<SourceFile> = ["auth/brute_force_login.rule", "auth/password_spray.rule"]
        .iter()
        .map(|f| SourceFile::new(*f, std::fs::read_to_string(format!("{root}{f}")).unwrap()))
        .collect();
    files.push(SourceFile::new("risk.rule", over_alerts));
    let (set, _) = vigil_dsl::compile(&files).unwrap();
    Arc::new(Compiled::new(&set))
}

#[test]
fn rules_over_alerts_are_exact_for_any_workers_arrival_order_and_restarts() {
    let events = workload(0x715c, 20_000);
    let (reference, stats) = in_order_run(&events, risk_rules());
    // Each risk alert is the sum over the tenant's alerts of the two minutes before it: check
    // it against the alerts of the first stage directly.
    let risk: Vec<&Alert> = reference
        .iter()
        .filter(|a| a.rule_id == "tenant_risk")
        .collect();
    assert!(risk.len() >= 5, "{}", risk.len());
    for r in &risk {
        let sum: u32 = reference
            .iter()
            .filter(|a| {
                a.tenant_id == r.tenant_id
                    && ["brute_force_login", "password_spray"].contains(&a.rule_id.as_str())
                    && a.timestamp > r.timestamp - 120_000
                    && a.timestamp <= r.timestamp
            })
            .map(|a| a.risk_score)
            .sum();
        assert_eq!(f64::from(sum), r.value, "{r:?}");
        assert!(sum >= 200);
    }
    assert!(
        stats.alerts.get("risk_waves").copied().unwrap_or(0) >= 1,
        "{stats:?}"
    );
    assert_same_shuffled_rescaled_and_restarted(
        &events,
        &comparable(&reference),
        "over-alerts",
        risk_rules,
    );
}
