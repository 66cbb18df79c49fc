//! A seeded replay of authentication events for the end-to-end tests, its reference alerts
//! (an uninterrupted embedded run), and publishing it to the streams.

use std::collections::BTreeMap;
use std::time::Duration;

use vigil_bus::Subject;

/// A seeded replay: background logins for three tenants with brute-force bursts, in event-time
/// order with a little disorder. Canonical events, as the normalizer would publish them.
pub fn replay(tenants: &[String], n: usize) -> Vec<(String, String)> {
    let mut x = 0x9e37_79b9_7f4a_7c15u64;
    let mut next = move |m: u64| {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        x % m
    };
    let mut t = 1_796_032_800_000i64;
    let mut burst = 0;
    let mut burst_user = 0;
    (0..n)
        .map(|i| {
            t += next(20) as i64;
            let tenant = &tenants[next(tenants.len() as u64) as usize];
            if burst == 0 && next(300) == 0 {
                burst = 10 + next(4);
                burst_user = next(40);
            }
            let (user, outcome) = if burst > 0 {
                burst -= 1;
                (burst_user, "failure")
            } else {
                (next(40), if next(25) == 0 { "failure" } else { "success" })
            };
            let ts = t - next(3_000) as i64;
            let line = format!(
                r#"{{"@timestamp":{ts},"tenant_id":"{tenant}","schema_version":1,"event":{{"id":"r-{i:07}","category":["authentication"],"outcome":"{outcome}"}},"user":{{"name":"u{user}"}},"source":{{"ip":"10.1.{}.{}"}}}}"#,
                next(4),
                next(200)
            );
            (tenant.clone(), line)
        })
        .collect()
}

/// The `event.id` of a line made by [`replay`].
pub fn event_id(line: &str) -> &str {
    let start = line.find("\"id\":\"").unwrap() + 6;
    let len = line[start..].find('"').unwrap();
    &line[start..start + len]
}

/// Publishes `messages` (in batches of 5,000), with the dev stream limits set up first.
pub fn publish(messages: impl IntoIterator<Item = vigil_bus::Outgoing>) {
    let messages: Vec<vigil_bus::Outgoing> = messages.into_iter().collect();
    super::runtime().block_on(async {
        let js = vigil_bus::dev::jetstream().await.unwrap();
        let publisher = vigil_bus::Publisher::new(js, Duration::from_secs(10));
        for chunk in messages.chunks(5_000) {
            let published = publisher.publish_all(chunk.to_vec()).await.unwrap();
            assert_eq!(published.duplicates, 0);
        }
    });
}

/// The events as `NORMALIZED` messages (the normalizer's output), deduplicated by event id.
pub fn normalized_messages(events: &[(String, String)]) -> Vec<vigil_bus::Outgoing> {
    events
        .iter()
        .map(|(tenant, line)| {
            let t = vigil_model::TenantId::parse(tenant).unwrap();
            vigil_bus::Outgoing {
                subject: Subject::NormalizedEvents.for_tenant(&t),
                msg_id: vigil_bus::msg_id(&t, event_id(line)),
                payload: line.clone().into_bytes().into(),
                headers: Vec::new(),
            }
        })
        .collect()
}

/// Publishes the events to `NORMALIZED`.
pub fn publish_normalized(events: &[(String, String)]) {
    publish(normalized_messages(events));
}

/// The alerts of an uninterrupted embedded run (`vigil run`) of `rules` over the events, by
/// id (see [`by_id`]); the input file is written to `dir`.
pub fn reference_alerts(
    dir: &std::path::Path,
    rules: &str,
    lateness: &str,
    events: &[(String, String)],
) -> BTreeMap<String, String> {
    let input = dir.join("events.jsonl");
    let mut text = String::new();
    for (_, l) in events {
        text.push_str(l);
        text.push('\n');
    }
    std::fs::write(&input, text).unwrap();
    let out = super::vigil()
        .args(["run", "--rules", rules, "--lateness", lateness, "--input"])
        .arg(&input)
        .output()
        .unwrap();
    let out = super::succeeded(out);
    by_id(
        String::from_utf8(out.stdout)
            .unwrap()
            .lines()
            .map(|l| serde_json::from_str(l).unwrap()),
    )
}

/// Alerts without `detected_at`, by id; panics on an id with two contents.
pub fn by_id(alerts: impl IntoIterator<Item = serde_json::Value>) -> BTreeMap<String, String> {
    let mut out = BTreeMap::new();
    for mut a in alerts {
        a.as_object_mut().unwrap().remove("detected_at");
        let id = a["id"].as_str().unwrap().to_owned();
        let text = a.to_string();
        if let Some(old) = out.insert(id.clone(), text.clone()) {
            assert_eq!(old, text, "alert {id} raised with two contents");
        }
    }
    out
}
