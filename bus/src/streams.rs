//! The four streams of `SEMANTICS.md`, created and migrated by code from [`StreamsConfig`].
//!
//! All are file-backed, limits-retention streams with a duplicate window for publish dedup.
//! `ensure_streams` is idempotent: it creates missing streams, updates those whose mutable
//! settings (subjects, age, size, duplicate window, replicas) changed, and refuses changes
//! JetStream cannot make in place (storage type, retention policy) with a clear error.

use std::time::Duration;

use async_nats::jetstream::{self, stream};
use serde::{Deserialize, Serialize};

use crate::BusError;
use crate::names::Subject;

/// Size and age limits of one stream.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Retention {
    /// Messages older than this are removed (`7d`).
    #[serde(with = "vigil_model::duration::text")]
    pub max_age: Duration,
    /// The oldest messages are removed beyond this many bytes.
    pub max_bytes: i64,
}

/// Settings of the event-bus streams.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct StreamsConfig {
    /// `RAW`: events as ingested, replayed by the normalizer after a crash.
    pub raw: Retention,
    /// `NORMALIZED`: canonical events, replayed by the engine after a crash; must outlast the
    /// longest rule window plus the recovery point's age.
    pub normalized: Retention,
    /// `ALERTS`: every alert, for fan-out to sinks and playbooks.
    pub alerts: Retention,
    /// `DLQ`: rejected events and undeliverable alerts, with their reasons.
    pub dlq: Retention,
    /// Publishes with the same `Nats-Msg-Id` within this window are stored once (client retries
    /// and `Idempotency-Key`s rely on it).
    #[serde(with = "vigil_model::duration::text")]
    pub duplicate_window: Duration,
    /// Stream replicas (1 on a single node; 3 in a cluster).
    pub replicas: usize,
}

const GIB: i64 = 1 << 30;
const DAY: Duration = Duration::from_secs(86_400);

impl Default for StreamsConfig {
    fn default() -> Self {
        StreamsConfig {
            // Sized so that all four fit the dev server's 16 GB file store (JetStream reserves
            // `max_bytes` up front); production sets its own.
            raw: Retention {
                max_age: 3 * DAY,
                max_bytes: 2 * GIB,
            },
            normalized: Retention {
                max_age: 7 * DAY,
                max_bytes: 4 * GIB,
            },
            alerts: Retention {
                max_age: 30 * DAY,
                max_bytes: GIB,
            },
            dlq: Retention {
                max_age: 14 * DAY,
                max_bytes: GIB,
            },
            duplicate_window: Duration::from_secs(600),
            replicas: 1,
        }
    }
}

impl StreamsConfig {
    /// The JetStream definitions of the four streams.
    pub fn definitions(&self) -> Vec<stream::Config> {
        let def = |name: &str, subjects: &[Subject], r: &Retention| stream::Config {
            name: name.to_owned(),
            subjects: subjects.iter().map(|s| s.all_tenants()).collect(),
            retention: stream::RetentionPolicy::Limits,
            storage: stream::StorageType::File,
            discard: stream::DiscardPolicy::Old,
            max_age: r.max_age,
            max_bytes: r.max_bytes,
            duplicate_window: self.duplicate_window,
            num_replicas: self.replicas,
            ..Default::default()
        };
        vec![
            def("RAW", &[Subject::RawEvents], &self.raw),
            def("NORMALIZED", &[Subject::NormalizedEvents], &self.normalized),
            def("ALERTS", &[Subject::Alerts], &self.alerts),
            def("DLQ", &[Subject::DlqEvents, Subject::DlqAlerts], &self.dlq),
        ]
    }
}

/// What `ensure_streams` did to a stream.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum StreamChange {
    /// It did not exist.
    Created,
    /// Its settings differed; the names of the settings that changed.
    Updated(Vec<&'static str>),
    /// Nothing to do.
    Unchanged,
}

/// Creates or migrates every stream; returns what happened to each, by name.
pub async fn ensure_streams(
    js: &jetstream::Context,
    config: &StreamsConfig,
) -> Result<Vec<(String, StreamChange)>, BusError> {
    let mut out = Vec::new();
    for want in config.definitions() {
        let name = want.name.clone();
        let err = |action: &'static str, e: &dyn std::fmt::Display| BusError::Stream {
            action,
            stream: name.clone(),
            message: e.to_string(),
        };
        let change = match js.get_stream(&name).await {
            Ok(s) => {
                let have = &s.cached_info().config;
                if have.storage != want.storage {
                    return Err(err(
                        "migrate",
                        &format!(
                            "storage is {:?}, config wants {:?}; JetStream cannot change it in place",
                            have.storage, want.storage
                        ),
                    ));
                }
                if have.retention != want.retention {
                    return Err(err(
                        "migrate",
                        &format!(
                            "retention is {:?}, config wants {:?}; JetStream cannot change it in place",
                            have.retention, want.retention
                        ),
                    ));
                }
                let changed = differences(have, &want);
                if changed.is_empty() {
                    StreamChange::Unchanged
                } else {
                    js.update_stream(want)
                        .await
                        .map_err(|e| err("update", &e))?;
                    StreamChange::Updated(changed)
                }
            }
            Err(e) if is_not_found(&e) => {
                js.create_stream(want)
                    .await
                    .map_err(|e| err("create", &e))?;
                StreamChange::Created
            }
            Err(e) => return Err(err("look up", &e)),
        };
        out.push((name, change));
    }
    Ok(out)
}

fn differences(have: &stream::Config, want: &stream::Config) -> Vec<&'static str> {
    let mut d = Vec::new();
    let mut subjects_have = have.subjects.clone();
    let mut subjects_want = want.subjects.clone();
    subjects_have.sort();
    subjects_want.sort();
    if subjects_have != subjects_want {
        d.push("subjects");
    }
    if have.max_age != want.max_age {
        d.push("max_age");
    }
    if have.max_bytes != want.max_bytes {
        d.push("max_bytes");
    }
    if have.duplicate_window != want.duplicate_window {
        d.push("duplicate_window");
    }
    if have.num_replicas != want.num_replicas {
        d.push("replicas");
    }
    if have.discard != want.discard {
        d.push("discard");
    }
    d
}

fn is_not_found(e: &jetstream::context::GetStreamError) -> bool {
    matches!(
        e.kind(),
        jetstream::context::GetStreamErrorKind::JetStream(j)
            if j.error_code() == jetstream::ErrorCode::STREAM_NOT_FOUND
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn definitions_cover_every_subject_once() {
        let defs = StreamsConfig::default().definitions();
        let mut subjects: Vec<String> = defs.iter().flat_map(|d| d.subjects.clone()).collect();
        subjects.sort();
        let mut want: Vec<String> = Subject::ALL.iter().map(|s| s.all_tenants()).collect();
        want.sort();
        assert_eq!(subjects, want);
        for d in &defs {
            assert_eq!(d.storage, stream::StorageType::File);
            assert_eq!(d.retention, stream::RetentionPolicy::Limits);
            for s in &d.subjects {
                let kind = Subject::ALL.iter().find(|k| &k.all_tenants() == s).unwrap();
                assert_eq!(kind.stream(), d.name);
            }
        }
    }

    #[test]
    fn config_reads_durations_and_rejects_unknown_fields() {
        let c: StreamsConfig = serde_json::from_str(
            r#"{"duplicate_window": "2m", "raw": {"max_age": "1d", "max_bytes": 1000}}"#,
        )
        .unwrap();
        assert_eq!(c.duplicate_window, Duration::from_secs(120));
        assert_eq!(c.raw.max_age, DAY);
        assert_eq!(c.normalized, StreamsConfig::default().normalized);
        assert!(serde_json::from_str::<StreamsConfig>(r#"{"dup_window": "2m"}"#).is_err());
        assert!(
            serde_json::from_str::<StreamsConfig>(r#"{"duplicate_window": "2 minutes"}"#).is_err()
        );
    }
}
