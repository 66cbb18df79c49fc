//! `vigil-gen`: seeded workload generator for the Vigil benchmarks.
//!
//! Writes canonical ECS-style events as JSON lines. The same flags always give a
//! byte-identical file. Events are emitted in nominal time order, and each
//! `@timestamp` is the nominal time minus a uniform offset in `[0, jitter]` ms, so
//! the stream is out of order by at most `jitter` ms.

use std::fs::File;
use std::io::{self, BufWriter, Write};
use std::path::PathBuf;

use anyhow::{Context, Result, bail};
use clap::Parser;
use rand::rngs::SmallRng;
use rand::{Rng, SeedableRng};
use vigil_model::time::{format_rfc3339_millis, parse_rfc3339};

/// The engine's default allowed lateness; the jitter must stay below it.
const DEFAULT_LATENESS_MS: u64 = 10_000;

#[derive(Debug, Parser)]
#[command(
    name = "vigil-gen",
    about = "Seeded JSONL event generator for Vigil benchmarks"
)]
struct Args {
    /// Output file (default: stdout).
    #[arg(long, short)]
    output: Option<PathBuf>,
    /// Total number of events (attack events included).
    #[arg(long, default_value_t = 3_000_000)]
    events: u64,
    /// RNG seed.
    #[arg(long, default_value_t = 42)]
    seed: u64,
    /// Number of tenants (acme, globex, initech, umbrella, tenant_5, ...).
    #[arg(long, default_value_t = 4)]
    tenants: usize,
    /// Users per tenant.
    #[arg(long, default_value_t = 5000)]
    users: usize,
    /// Internal source IPs per tenant.
    #[arg(long, default_value_t = 2000)]
    ips: usize,
    /// Fraction of authentication events that fail, outside attack bursts.
    #[arg(long, default_value_t = 0.05)]
    failure_ratio: f64,
    /// Brute-force bursts: 10–30 failed logins for one user within 1–4 minutes.
    #[arg(long, default_value_t = 200)]
    bursts: usize,
    /// Password sprays: one source.ip failing against 20–40 distinct users within 5 minutes.
    #[arg(long, default_value_t = 20)]
    sprays: usize,
    /// Maximum backwards perturbation of each timestamp, in ms (must be < 10000).
    #[arg(long, default_value_t = 2000)]
    jitter_ms: u64,
    /// Event time of the first event (RFC 3339).
    #[arg(long, default_value = "2026-11-30T00:00:00Z")]
    start: String,
    /// Events per second of event time.
    #[arg(long, default_value_t = 2000.0)]
    rate: f64,
}

const BASE_TENANTS: [&str; 4] = ["acme", "globex", "initech", "umbrella"];

const LAST: [&str; 48] = [
    "smith",
    "johnson",
    "williams",
    "brown",
    "jones",
    "garcia",
    "miller",
    "davis",
    "rodriguez",
    "martinez",
    "hernandez",
    "lopez",
    "gonzalez",
    "wilson",
    "anderson",
    "thomas",
    "taylor",
    "moore",
    "jackson",
    "martin",
    "lee",
    "perez",
    "thompson",
    "white",
    "harris",
    "sanchez",
    "clark",
    "ramirez",
    "lewis",
    "robinson",
    "walker",
    "young",
    "allen",
    "king",
    "wright",
    "scott",
    "torres",
    "nguyen",
    "hill",
    "flores",
    "green",
    "adams",
    "nelson",
    "baker",
    "hall",
    "rivera",
    "campbell",
    "mitchell",
];

const PROCESSES: [(&str, &str); 12] = [
    ("cmd.exe", "cmd.exe /c whoami /all"),
    (
        "powershell.exe",
        "powershell.exe -NoProfile -File C:\\scripts\\inv.ps1",
    ),
    ("svchost.exe", "svchost.exe -k netsvcs -p -s Schedule"),
    (
        "chrome.exe",
        "\"C:\\Program Files\\Google\\Chrome\\chrome.exe\" --type=renderer",
    ),
    ("outlook.exe", "OUTLOOK.EXE /recycle"),
    ("rundll32.exe", "rundll32.exe shell32.dll,Control_RunDLL"),
    ("bash", "/bin/bash /usr/local/bin/backup.sh"),
    ("sshd", "sshd: deploy [priv]"),
    ("python3", "python3 /opt/app/worker.py -q default"),
    ("curl", "curl -fsSL https://updates.example.com/agent.tgz"),
    ("java", "java -Xmx2g -jar /opt/service/app.jar"),
    ("net.exe", "net.exe user /domain"),
];

const DOMAINS: [&str; 12] = [
    "www.google.com",
    "login.microsoftonline.com",
    "outlook.office365.com",
    "github.com",
    "api.slack.com",
    "updates.example.com",
    "cdn.jsdelivr.net",
    "s3.amazonaws.com",
    "time.windows.com",
    "ocsp.digicert.com",
    "teams.microsoft.com",
    "x7kq2p.badcdn.top",
];

const DST_PORTS: [u16; 8] = [443, 443, 443, 80, 22, 445, 3389, 8443];

/// Authentication sources: (host prefix, success message, failure message).
const AUTH_SOURCES: [(&str, &str, &str); 3] = [
    ("dc", "4624 logon", "4625 logon failed"),
    ("srv", "sshd accepted password", "sshd failed password"),
    ("okta", "okta login ok", "okta login failed"),
];

/// One pre-planned attack event (brute force or spray), at a nominal time.
#[derive(Debug, Clone, Copy)]
struct AttackEvent {
    nominal_ms: i64,
    tenant: u32,
    user: u32,
    ip: u32,
    auth_source: u8,
}

struct Gen {
    rng: SmallRng,
    tenants: Vec<String>,
    users: Vec<String>,
    ips: usize,
    hosts: usize,
    failure_ratio: f64,
    line: Vec<u8>,
    auth_failures: u64,
}

fn tenant_name(i: usize) -> String {
    BASE_TENANTS
        .get(i)
        .map_or_else(|| format!("tenant_{}", i + 1), |s| (*s).to_string())
}

/// Account names in the common corporate style: initial + last name (+ a number).
fn user_name(i: usize) -> String {
    let initial = char::from(b'a' + (i % 26) as u8);
    let (l, n) = ((i / 26) % LAST.len(), i / (26 * LAST.len()));
    if n == 0 {
        format!("{initial}{}", LAST[l])
    } else {
        format!("{initial}{}{}", LAST[l], n + 1)
    }
}

/// Internal address of source ip `i` of tenant `t`: 10.t.x.y.
fn internal_ip(t: usize, i: usize) -> u32 {
    let (hi, lo) = (i / 254, i % 254 + 1);
    (10 << 24) | (((t % 256) as u32) << 16) | (((hi % 256) as u32) << 8) | lo as u32
}

/// An external (documentation-range) attacker address.
fn attacker_ip(rng: &mut SmallRng) -> u32 {
    const NETS: [u32; 3] = [0xC000_0200, 0xC633_6400, 0xCB00_7100]; // 192.0.2/24, 198.51.100/24, 203.0.113/24
    NETS[rng.random_range(0..NETS.len())] | rng.random_range(1..255u32)
}

fn push_u64(out: &mut Vec<u8>, mut v: u64) {
    let mut buf = [0u8; 20];
    let mut i = buf.len();
    loop {
        i -= 1;
        buf[i] = b'0' + (v % 10) as u8;
        v /= 10;
        if v == 0 {
            break;
        }
    }
    out.extend_from_slice(&buf[i..]);
}

/// Appends `s` as a JSON string literal.
fn push_str(out: &mut Vec<u8>, s: &str) {
    out.push(b'"');
    for &b in s.as_bytes() {
        match b {
            b'"' => out.extend_from_slice(b"\\\""),
            b'\\' => out.extend_from_slice(b"\\\\"),
            0..=0x1f => {
                const HEX: &[u8; 16] = b"0123456789abcdef";
                out.extend_from_slice(b"\\u00");
                out.push(HEX[usize::from(b >> 4)]);
                out.push(HEX[usize::from(b & 15)]);
            }
            _ => out.push(b),
        }
    }
    out.push(b'"');
}

fn push_ip(out: &mut Vec<u8>, ip: u32) {
    out.push(b'"');
    for (k, shift) in [24, 16, 8, 0].into_iter().enumerate() {
        if k > 0 {
            out.push(b'.');
        }
        push_u64(out, u64::from((ip >> shift) & 0xff));
    }
    out.push(b'"');
}

fn push_uuid_v4(out: &mut Vec<u8>, rng: &mut SmallRng) {
    const HEX: &[u8; 16] = b"0123456789abcdef";
    let mut bytes = [0u8; 16];
    bytes[..8].copy_from_slice(&rng.random::<u64>().to_be_bytes());
    bytes[8..].copy_from_slice(&rng.random::<u64>().to_be_bytes());
    bytes[6] = (bytes[6] & 0x0f) | 0x40;
    bytes[8] = (bytes[8] & 0x3f) | 0x80;
    out.push(b'"');
    for (i, b) in bytes.iter().enumerate() {
        if matches!(i, 4 | 6 | 8 | 10) {
            out.push(b'-');
        }
        out.push(HEX[usize::from(b >> 4)]);
        out.push(HEX[usize::from(b & 15)]);
    }
    out.push(b'"');
}

enum Kind<'a> {
    Auth {
        failure: bool,
        source: usize,
    },
    Process {
        name: &'a str,
        command_line: &'a str,
    },
    Network {
        dst_ip: u32,
        dst_port: u16,
        failure: bool,
    },
    Dns {
        name: &'a str,
        resolver: u32,
    },
}

impl Gen {
    /// Writes one event line (with trailing newline) into `self.line`.
    fn event(&mut self, ts: i64, tenant: usize, user: usize, src_ip: u32, kind: &Kind<'_>) {
        let rng = &mut self.rng;
        let out = &mut self.line;
        out.clear();
        out.extend_from_slice(b"{\"@timestamp\":\"");
        out.extend_from_slice(format_rfc3339_millis(ts).as_bytes());
        out.extend_from_slice(b"\",\"tenant_id\":");
        push_str(out, &self.tenants[tenant]);
        out.extend_from_slice(b",\"schema_version\":1,\"event\":{\"id\":");
        push_uuid_v4(out, rng);
        out.extend_from_slice(b",\"category\":");
        let (category, action, failure) = match *kind {
            Kind::Auth { failure, .. } => ("[\"authentication\"]", "logon", failure),
            Kind::Process { .. } => ("[\"process\"]", "process_started", false),
            Kind::Network { failure, .. } => ("[\"network\"]", "connection_attempted", failure),
            Kind::Dns { .. } => ("[\"network\"]", "dns_query", false),
        };
        if failure {
            self.auth_failures += u64::from(matches!(kind, Kind::Auth { .. }));
        }
        // `event.type`, `event.kind`, `event.dataset` and `user.domain` are left out to keep
        // events near the ~300 bytes the benchmark calls for; no shipped rule reads them.
        out.extend_from_slice(category.as_bytes());
        out.extend_from_slice(b",\"action\":\"");
        out.extend_from_slice(action.as_bytes());
        out.extend_from_slice(if failure {
            b"\",\"outcome\":\"failure\"},\"user\":{\"name\":"
        } else {
            b"\",\"outcome\":\"success\"},\"user\":{\"name\":"
        });
        push_str(out, &self.users[user]);
        out.extend_from_slice(b"},\"source\":{\"ip\":");
        push_ip(out, src_ip);
        out.extend_from_slice(b",\"port\":");
        push_u64(out, rng.random_range(1024..65535u64));
        out.extend_from_slice(b"},\"host\":{\"name\":\"");
        match *kind {
            Kind::Auth { source, .. } => {
                out.extend_from_slice(AUTH_SOURCES[source].0.as_bytes());
                out.push(b'-');
                push_u64(out, rng.random_range(1..=8u64));
            }
            _ => {
                out.extend_from_slice(b"ws-");
                push_u64(out, rng.random_range(0..self.hosts as u64) + 10_000);
            }
        }
        out.push(b'"');
        out.push(b'}');
        match *kind {
            Kind::Auth { failure, source } => {
                let (_, ok, ko) = AUTH_SOURCES[source];
                out.extend_from_slice(b",\"message\":\"");
                out.extend_from_slice(if failure { ko } else { ok }.as_bytes());
                out.push(b'"');
            }
            Kind::Process { name, command_line } => {
                out.extend_from_slice(b",\"process\":{\"name\":");
                push_str(out, name);
                out.extend_from_slice(b",\"pid\":");
                push_u64(out, rng.random_range(300..65_000u64));
                out.extend_from_slice(b",\"command_line\":");
                push_str(out, command_line);
                out.extend_from_slice(b"},\"message\":\"process start\"");
            }
            Kind::Network {
                dst_ip,
                dst_port,
                failure,
            } => {
                out.extend_from_slice(b",\"destination\":{\"ip\":");
                push_ip(out, dst_ip);
                out.extend_from_slice(b",\"port\":");
                push_u64(out, u64::from(dst_port));
                out.extend_from_slice(if failure {
                    b"},\"message\":\"connection refused\""
                } else {
                    b"},\"message\":\"connection ok\""
                });
            }
            Kind::Dns { name, resolver } => {
                out.extend_from_slice(b",\"destination\":{\"ip\":");
                push_ip(out, resolver);
                out.extend_from_slice(b",\"port\":53},\"dns\":{\"question\":{\"name\":");
                push_str(out, name);
                out.extend_from_slice(b"}},\"message\":\"dns query\"");
            }
        }
        out.extend_from_slice(b"}\n");
    }

    /// Writes one background (non-attack) event.
    fn background(&mut self, ts: i64) {
        let tenant = self.rng.random_range(0..self.tenants.len());
        let user = self.rng.random_range(0..self.users.len());
        let src_ip = internal_ip(tenant, self.rng.random_range(0..self.ips));
        let r = self.rng.random_range(0..100u32);
        let kind = if r < 60 {
            Kind::Auth {
                failure: self.rng.random_bool(self.failure_ratio),
                source: self.rng.random_range(0..AUTH_SOURCES.len()),
            }
        } else if r < 75 {
            let (name, command_line) = PROCESSES[self.rng.random_range(0..PROCESSES.len())];
            Kind::Process { name, command_line }
        } else if r < 90 {
            Kind::Network {
                dst_ip: self.rng.random::<u32>() | 0x0100_0000,
                dst_port: DST_PORTS[self.rng.random_range(0..DST_PORTS.len())],
                failure: self.rng.random_bool(0.03),
            }
        } else {
            Kind::Dns {
                name: DOMAINS[self.rng.random_range(0..DOMAINS.len())],
                resolver: internal_ip(tenant, 0),
            }
        };
        self.event(ts, tenant, user, src_ip, &kind);
    }
}

/// Plans brute-force bursts and sprays; returns them sorted by nominal time.
fn plan_attacks(
    rng: &mut SmallRng,
    args: &Args,
    start_ms: i64,
    span_ms: i64,
) -> (Vec<AttackEvent>, usize, usize) {
    let budget = (args.events / 2) as usize;
    let mut evs = Vec::new();
    let (mut bursts, mut sprays) = (0, 0);
    for _ in 0..args.bursts {
        let n = rng.random_range(10..=30usize);
        if evs.len() + n > budget {
            break;
        }
        let dur = rng.random_range(60_000..=240_000i64);
        let at = start_ms + rng.random_range(0..(span_ms - dur).max(1));
        let tenant = rng.random_range(0..args.tenants) as u32;
        let user = rng.random_range(0..args.users) as u32;
        let ip = if rng.random_bool(0.5) {
            attacker_ip(rng)
        } else {
            internal_ip(tenant as usize, rng.random_range(0..args.ips))
        };
        let auth_source = rng.random_range(0..AUTH_SOURCES.len()) as u8;
        for _ in 0..n {
            let nominal_ms = at + rng.random_range(0..=dur);
            evs.push(AttackEvent {
                nominal_ms,
                tenant,
                user,
                ip,
                auth_source,
            });
        }
        bursts += 1;
    }
    for _ in 0..args.sprays {
        let n = rng.random_range(20..=40usize).min(args.users);
        if evs.len() + n > budget {
            break;
        }
        let dur = rng.random_range(60_000..=300_000i64);
        let at = start_ms + rng.random_range(0..(span_ms - dur).max(1));
        let tenant = rng.random_range(0..args.tenants) as u32;
        let ip = attacker_ip(rng);
        let auth_source = rng.random_range(0..AUTH_SOURCES.len()) as u8;
        for user in rand::seq::index::sample(rng, args.users, n) {
            let nominal_ms = at + rng.random_range(0..=dur);
            evs.push(AttackEvent {
                nominal_ms,
                tenant,
                user: user as u32,
                ip,
                auth_source,
            });
        }
        sprays += 1;
    }
    evs.sort_by_key(|e| e.nominal_ms); // stable: ties keep plan order
    (evs, bursts, sprays)
}

fn main() -> Result<()> {
    let args = Args::parse();
    if args.jitter_ms >= DEFAULT_LATENESS_MS {
        bail!(
            "--jitter-ms must stay below the engine's default lateness ({DEFAULT_LATENESS_MS} ms)"
        );
    }
    if !(0.0..=1.0).contains(&args.failure_ratio) {
        bail!("--failure-ratio must be within [0, 1]");
    }
    if !(args.rate.is_finite() && args.rate > 0.0) {
        bail!("--rate must be positive");
    }
    if args.tenants == 0 || args.users == 0 || args.ips == 0 {
        bail!("--tenants, --users and --ips must be at least 1");
    }
    if args.ips > 254 * 256 {
        bail!("--ips must be at most {}", 254 * 256);
    }
    let start_ms = parse_rfc3339(&args.start)
        .context("--start must be RFC 3339, e.g. 2026-11-30T00:00:00Z")?;
    let span_ms = (args.events as f64 * 1000.0 / args.rate).ceil() as i64;

    let mut rng = SmallRng::seed_from_u64(args.seed);
    let (attacks, bursts, sprays) = plan_attacks(&mut rng, &args, start_ms, span_ms);
    let background = args.events - attacks.len() as u64;
    let ms_per_event = 1000.0 / args.rate;

    let tenants: Vec<String> = (0..args.tenants).map(tenant_name).collect();
    let mut g = Gen {
        rng,
        tenants,
        users: (0..args.users).map(user_name).collect(),
        ips: args.ips,
        hosts: (args.users / 4).max(10),
        failure_ratio: args.failure_ratio,
        line: Vec::with_capacity(512),
        auth_failures: 0,
    };

    let sink: Box<dyn Write> = match &args.output {
        Some(p) => Box::new(File::create(p).with_context(|| format!("creating {}", p.display()))?),
        None => Box::new(io::stdout().lock()),
    };
    let mut w = BufWriter::with_capacity(1 << 20, sink);
    let jitter = args.jitter_ms as i64;
    let mut bytes = 0u64;
    let mut next_attack = attacks.iter().peekable();
    let mut i = 0u64;
    loop {
        let bg_nominal = (i < background).then(|| start_ms + (i as f64 * ms_per_event) as i64);
        let attack = match (next_attack.peek(), bg_nominal) {
            (Some(a), Some(t)) if a.nominal_ms <= t => next_attack.next(),
            (Some(_), None) => next_attack.next(),
            (_, Some(_)) => None,
            (None, None) => break,
        };
        if let Some(a) = attack {
            let ts = a.nominal_ms - g.rng.random_range(0..=jitter);
            let kind = Kind::Auth {
                failure: true,
                source: usize::from(a.auth_source),
            };
            g.event(ts, a.tenant as usize, a.user as usize, a.ip, &kind);
        } else if let Some(t) = bg_nominal {
            let ts = t - g.rng.random_range(0..=jitter);
            g.background(ts);
            i += 1;
        }
        w.write_all(&g.line)?;
        bytes += g.line.len() as u64;
    }
    w.flush()?;
    drop(w);

    eprintln!(
        "vigil-gen: events={} bytes={} avg_bytes_per_event={:.1} bursts={} sprays={} attack_events={} auth_failures={} span_s={:.0} seed={}",
        args.events,
        bytes,
        bytes as f64 / args.events.max(1) as f64,
        bursts,
        sprays,
        attacks.len(),
        g.auth_failures,
        span_ms as f64 / 1000.0,
        args.seed,
    );
    Ok(())
}
