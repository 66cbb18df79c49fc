//! Checkpoints: the engine's recovery point (ADR 0005).
//!
//! A checkpoint is a consistent cut of the dataflow at a barrier epoch `e`: every worker's
//! window state and watermarks right after `e`, and the source position that `e` ends at (a
//! stream sequence). It is committed only once every alert and late event of epochs `≤ e` is
//! durable in its sinks; then the source may acknowledge everything up to the position. After a
//! crash the engine loads the newest checkpoint and the source replays from the position after
//! it; alerts of the replayed part are raised again with the same ids, which every sink
//! deduplicates.
//!
//! Store: one file per checkpoint in the state directory, `checkpoint-{n:016}.ckpt`, written to a
//! temporary name, fsynced, renamed, and the directory fsynced, so a crash leaves either the old
//! or the new checkpoint complete. The newest two are kept; a newest file that fails its
//! checksum is skipped for the one before it (its position is older, and the source replays from
//! there).
//!
//! File layout: `VIGILCKP`, then the postcard encoding of [`Checkpoint`], then the xxh3-64 of
//! that encoding (little endian).

use std::collections::BTreeMap;
use std::fs::{self, File};
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::mpsc::Receiver;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use serde::{Deserialize, Serialize};
use vigil_model::time::now_millis;
use vigil_operators::WindowsSnapshot;
use vigil_operators::snapshot::{self, SnapshotError};
use vigil_operators::watermark::WatermarkTracker;

use crate::Sinks;
use crate::quiet::{self, QuietEntry};
use crate::rules::Compiled;

const MAGIC: &[u8; 8] = b"VIGILCKP";
const KEEP: usize = 2;

/// Where checkpoints are kept.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CheckpointConfig {
    /// The state directory (created if missing). One engine process per directory.
    pub dir: PathBuf,
}

/// A rule as a checkpoint records it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) struct RuleRef {
    pub(crate) id: String,
    pub(crate) identity: u64,
}

/// One committed checkpoint.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub(crate) struct Checkpoint {
    /// Increasing over the life of the state directory.
    pub(crate) number: u64,
    /// The source the position belongs to.
    pub(crate) source: String,
    /// The source position the cut ends at; replay resumes after it.
    pub(crate) position: u64,
    /// Wall clock at commit, epoch ms.
    pub(crate) created_ms: i64,
    /// Rules in index order when the checkpoint was taken.
    pub(crate) rules: Vec<RuleRef>,
    /// The encoded state of each worker's `keyed_windows` operators, one per stage (their
    /// union is the state: restore merges them all and splits it anew).
    pub(crate) windows: Vec<Vec<u8>>,
    /// The encoded `lateness` tracker (the same on every worker at a barrier).
    pub(crate) lateness: Vec<u8>,
    /// The quiet periods of every worker's alert stages (suppression across groups).
    pub(crate) quiet: Vec<QuietEntry>,
}

/// Why checkpoints could not be read or written.
#[derive(Debug, thiserror::Error)]
pub enum CheckpointError {
    /// The state directory could not be used.
    #[error("checkpoint store {path}: {source}")]
    Io {
        /// The file or directory.
        path: String,
        /// The IO error.
        #[source]
        source: std::io::Error,
    },
    /// A checkpoint could not be decoded.
    #[error("checkpoint {path} cannot be restored: {message}")]
    Invalid {
        /// The file.
        path: String,
        /// Why.
        message: String,
    },
}

fn io(path: &Path) -> impl Fn(std::io::Error) -> CheckpointError + '_ {
    move |source| CheckpointError::Io {
        path: path.display().to_string(),
        source,
    }
}

/// What a restore hands to the dataflow.
#[derive(Debug)]
pub(crate) struct Restored {
    pub(crate) number: u64,
    pub(crate) position: u64,
    /// Each new worker's part of the window state.
    pub(crate) windows: Vec<WindowsSnapshot>,
    /// Each new worker's quiet periods: those of the (rule, tenant) pairs routed to it.
    pub(crate) quiet: Vec<Vec<QuietEntry>>,
    pub(crate) lateness: Option<WatermarkTracker>,
    /// Keys and pending hits of rules that are gone or changed (their state is dropped).
    pub(crate) dropped: usize,
}

/// The checkpoint files in `dir`, newest first.
fn files(dir: &Path) -> Result<Vec<(u64, PathBuf)>, CheckpointError> {
    let mut out = Vec::new();
    let entries = match fs::read_dir(dir) {
        Ok(e) => e,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(out),
        Err(e) => return Err(io(dir)(e)),
    };
    for entry in entries {
        let entry = entry.map_err(io(dir))?;
        let name = entry.file_name();
        let Some(n) = name
            .to_str()
            .and_then(|n| n.strip_prefix("checkpoint-"))
            .and_then(|n| n.strip_suffix(".ckpt"))
            .and_then(|n| n.parse::<u64>().ok())
        else {
            continue;
        };
        out.push((n, entry.path()));
    }
    out.sort_by_key(|e| std::cmp::Reverse(e.0));
    Ok(out)
}

/// Why a checkpoint file was not read.
enum Unread {
    /// Torn or damaged (the one before it is used).
    Damaged(String),
    /// Intact, but in a layout this build does not know: written by another version.
    Foreign(String),
}

fn read(path: &Path) -> Result<Checkpoint, Unread> {
    let bytes = fs::read(path).map_err(|e| Unread::Damaged(e.to_string()))?;
    let body = bytes
        .strip_prefix(MAGIC)
        .ok_or(Unread::Damaged("not a Vigil checkpoint (bad magic)".into()))?;
    let (body, sum) = body
        .split_last_chunk::<8>()
        .ok_or(Unread::Damaged("truncated (no checksum)".into()))?;
    if xxhash_rust::xxh3::xxh3_64(body) != u64::from_le_bytes(*sum) {
        return Err(Unread::Damaged("checksum mismatch".into()));
    }
    postcard::from_bytes(body).map_err(|e| Unread::Foreign(e.to_string()))
}

/// Loads the newest readable checkpoint of `source` from `dir`.
pub(crate) fn load(
    dir: &Path,
    source: &str,
) -> Result<Option<(Checkpoint, PathBuf)>, CheckpointError> {
    for (_, path) in files(dir)? {
        match read(&path) {
            Ok(c) if c.source == source => return Ok(Some((c, path))),
            Ok(c) => {
                return Err(CheckpointError::Invalid {
                    path: path.display().to_string(),
                    message: format!(
                        "it belongs to source `{}`, not `{source}`; use another state directory",
                        c.source
                    ),
                });
            }
            Err(Unread::Damaged(message)) => eprintln!(
                "vigil: skipping unreadable checkpoint {}: {message}",
                path.display()
            ),
            // Falling back to an older file would lose the state just the same, silently.
            Err(Unread::Foreign(message)) => {
                return Err(CheckpointError::Invalid {
                    path: path.display().to_string(),
                    message: format!(
                        "its checksum holds but its layout is not this version's ({message}): \
                         it was written by another version of Vigil; run that version, or \
                         remove the state directory to start over"
                    ),
                });
            }
        }
    }
    Ok(None)
}

impl Checkpoint {
    /// Splits the checkpoint's state over `workers` workers of `rules`, dropping the state of
    /// rules that are gone or changed (a different identity).
    pub(crate) fn restore(
        self,
        path: &Path,
        rules: &Compiled,
        workers: usize,
    ) -> Result<Restored, CheckpointError> {
        let invalid = |e: SnapshotError| CheckpointError::Invalid {
            path: path.display().to_string(),
            message: e.to_string(),
        };
        let now: BTreeMap<u64, u32> = rules
            .identities()
            .enumerate()
            .map(|(i, id)| (id, i as u32))
            .collect();
        let remap: Vec<Option<u32>> = self
            .rules
            .iter()
            .map(|r| now.get(&r.identity).copied())
            .collect();
        let mut all = WindowsSnapshot::default();
        for part in &self.windows {
            all.merge(WindowsSnapshot::decode(part).map_err(invalid)?);
        }
        let before = all.keys.len() + all.pending.len();
        let new_index = |r: u32| remap.get(r as usize).copied().flatten();
        all.keys.retain_mut(|k| match new_index(k.rule) {
            Some(n) => {
                k.rule = n;
                true
            }
            None => false,
        });
        all.pending.retain_mut(|h| match new_index(h.rule) {
            Some(n) => {
                h.rule = n;
                true
            }
            None => false,
        });
        let dropped = before - all.keys.len() - all.pending.len();
        let mut quiet: Vec<Vec<QuietEntry>> = vec![Vec::new(); workers];
        for mut q in self.quiet {
            // A quiet period of a rule that is gone or changed goes with its state.
            let Some(n) = new_index(q.rule) else { continue };
            q.rule = n;
            let w = quiet::alert_route(n, &q.tenant) % workers.max(1) as u64;
            quiet[w as usize].push(q);
        }
        let lateness = if self.lateness.is_empty() {
            None
        } else {
            Some(snapshot::decode_tracker(&self.lateness).map_err(invalid)?)
        };
        Ok(Restored {
            number: self.number,
            position: self.position,
            windows: (0..workers).map(|w| all.for_worker(w, workers)).collect(),
            quiet,
            lateness,
            dropped,
        })
    }
}

/// Writes `c` durably into `dir` and removes all but the newest [`KEEP`]. Returns the bytes
/// written.
fn write(dir: &Path, c: &Checkpoint) -> Result<usize, CheckpointError> {
    fs::create_dir_all(dir).map_err(io(dir))?;
    let body = postcard::to_allocvec(c).map_err(|e| CheckpointError::Invalid {
        path: dir.display().to_string(),
        message: e.to_string(),
    })?;
    let name = format!("checkpoint-{:016}.ckpt", c.number);
    let tmp = dir.join(format!("{name}.tmp"));
    let path = dir.join(&name);
    {
        let mut f = File::create(&tmp).map_err(io(&tmp))?;
        f.write_all(MAGIC).map_err(io(&tmp))?;
        f.write_all(&body).map_err(io(&tmp))?;
        f.write_all(&xxhash_rust::xxh3::xxh3_64(&body).to_le_bytes())
            .map_err(io(&tmp))?;
        f.sync_all().map_err(io(&tmp))?;
    }
    fs::rename(&tmp, &path).map_err(io(&path))?;
    File::open(dir)
        .and_then(|d| d.sync_all())
        .map_err(io(dir))?;
    for (_, old) in files(dir)?.into_iter().skip(KEEP) {
        let _ = fs::remove_file(old);
    }
    Ok(MAGIC.len() + body.len() + 8)
}

/// Messages to the coordinator.
#[derive(Debug)]
pub(crate) enum ToCoordinator {
    /// The reader inserted barrier epoch `epoch`, ending at `position`.
    Barrier { epoch: u64, position: u64 },
    /// Worker `worker` has its state at `epoch`, and every alert and late event of epochs up
    /// to it is in the sinks.
    Part {
        epoch: u64,
        worker: usize,
        /// One encoded `keyed_windows` state per stage.
        windows: Vec<Vec<u8>>,
        /// The quiet periods of its alert stages.
        quiet: Vec<QuietEntry>,
        lateness: Vec<u8>,
    },
}

/// What the coordinator shares with the reader (and through it, the source).
#[derive(Debug, Default)]
pub(crate) struct Progress {
    /// Position of the newest committed checkpoint.
    pub(crate) committed: Option<u64>,
    /// The first failure; the engine stops on it.
    pub(crate) failed: Option<String>,
    pub(crate) written: u64,
    pub(crate) bytes: u64,
    pub(crate) slowest: Duration,
}

/// [`Progress`], shared.
#[derive(Clone, Debug, Default)]
pub(crate) struct ProgressHandle(Arc<Mutex<Progress>>);

impl ProgressHandle {
    /// The progress; a panicked holder's writes are still valid counters.
    pub(crate) fn lock(&self) -> std::sync::MutexGuard<'_, Progress> {
        self.0
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }
}

#[derive(Default)]
struct Pending {
    position: Option<u64>,
    windows: Vec<Option<Vec<Vec<u8>>>>,
    quiet: Vec<QuietEntry>,
    lateness: Option<Vec<u8>>,
    parts: usize,
}

/// Collects barrier parts and commits checkpoints, in barrier order, until every sender is
/// gone.
pub(crate) struct Coordinator {
    pub(crate) dir: PathBuf,
    pub(crate) source: String,
    pub(crate) rules: Vec<RuleRef>,
    pub(crate) workers: usize,
    pub(crate) next_number: u64,
    pub(crate) sinks: Sinks,
    pub(crate) progress: ProgressHandle,
}

impl Coordinator {
    pub(crate) fn run(mut self, rx: Receiver<ToCoordinator>) {
        let mut pending: BTreeMap<u64, Pending> = BTreeMap::new();
        let workers = self.workers;
        while let Ok(msg) = rx.recv() {
            let epoch = match msg {
                ToCoordinator::Barrier { epoch, position } => {
                    self.slot(&mut pending, epoch).position = Some(position);
                    epoch
                }
                ToCoordinator::Part {
                    epoch,
                    worker,
                    windows,
                    mut quiet,
                    lateness,
                } => {
                    let p = self.slot(&mut pending, epoch);
                    if p.windows[worker].replace(windows).is_none() {
                        p.parts += 1;
                        p.quiet.append(&mut quiet);
                    }
                    if worker == 0 {
                        p.lateness = Some(lateness);
                    }
                    epoch
                }
            };
            let complete = pending
                .get(&epoch)
                .is_some_and(|p| p.position.is_some() && p.parts == workers);
            if !complete {
                continue;
            }
            // Barriers complete in order: every worker processes epochs in order.
            let Some(p) = pending.remove(&epoch) else {
                continue;
            };
            if let Err(e) = self.commit(p) {
                let mut progress = self.progress.lock();
                progress.failed.get_or_insert(e);
            }
        }
    }

    fn slot<'p>(&self, pending: &'p mut BTreeMap<u64, Pending>, epoch: u64) -> &'p mut Pending {
        pending.entry(epoch).or_insert_with(|| Pending {
            windows: vec![None; self.workers],
            ..Pending::default()
        })
    }

    fn commit(&mut self, p: Pending) -> Result<(), String> {
        let started = Instant::now();
        // Durable outputs first: once the checkpoint exists, the source acknowledges the
        // input behind these alerts and late events.
        self.sinks.alerts.flush().map_err(|e| e.to_string())?;
        if let Some(r) = &self.sinks.rejects {
            r.flush().map_err(|e| e.to_string())?;
        }
        let position = p.position.unwrap_or_default();
        let c = Checkpoint {
            number: self.next_number,
            source: self.source.clone(),
            position,
            created_ms: now_millis(),
            rules: self.rules.clone(),
            windows: p.windows.into_iter().flatten().flatten().collect(),
            lateness: p.lateness.unwrap_or_default(),
            quiet: p.quiet,
        };
        let bytes = write(&self.dir, &c).map_err(|e| e.to_string())?;
        self.next_number += 1;
        let mut progress = self.progress.lock();
        progress.committed = Some(position);
        progress.written += 1;
        progress.bytes = bytes as u64;
        progress.slowest = progress.slowest.max(started.elapsed());
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample(number: u64) -> Checkpoint {
        Checkpoint {
            number,
            source: "jetstream:NORMALIZED/engine".into(),
            position: number * 10,
            created_ms: 0,
            rules: vec![RuleRef {
                id: "r".into(),
                identity: 7,
            }],
            windows: vec![vec![1, 2, 3]],
            lateness: vec![],
            quiet: vec![],
        }
    }

    #[test]
    fn keeps_the_newest_two_and_skips_a_corrupt_newest() {
        let dir = std::env::temp_dir().join(format!("vigil-ckpt-{}", std::process::id()));
        let _ = fs::remove_dir_all(&dir);
        for n in 1..=4 {
            write(&dir, &sample(n)).unwrap();
        }
        assert_eq!(files(&dir).unwrap().len(), 2);
        let (c, _) = load(&dir, "jetstream:NORMALIZED/engine").unwrap().unwrap();
        assert_eq!((c.number, c.position), (4, 40));
        // Flip a byte of the newest: the one before it is used.
        let newest = dir.join("checkpoint-0000000000000004.ckpt");
        let mut bytes = fs::read(&newest).unwrap();
        bytes[12] ^= 1;
        fs::write(&newest, bytes).unwrap();
        let (c, _) = load(&dir, "jetstream:NORMALIZED/engine").unwrap().unwrap();
        assert_eq!(c.number, 3);
        // An intact checkpoint of another layout is refused, not skipped.
        let foreign = dir.join("checkpoint-0000000000000009.ckpt");
        let body = postcard::to_allocvec(&(1u8, "older layout")).unwrap();
        let mut bytes = MAGIC.to_vec();
        bytes.extend_from_slice(&body);
        bytes.extend_from_slice(&xxhash_rust::xxh3::xxh3_64(&body).to_le_bytes());
        fs::write(&foreign, bytes).unwrap();
        let err = load(&dir, "jetstream:NORMALIZED/engine").unwrap_err();
        assert!(
            err.to_string().contains("another version of Vigil"),
            "{err}"
        );
        fs::remove_file(&foreign).unwrap();
        // Another source's checkpoint is refused, not misused.
        let err = load(&dir, "jetstream:NORMALIZED/other").unwrap_err();
        assert!(err.to_string().contains("belongs to source"), "{err}");
        fs::remove_dir_all(&dir).unwrap();
        assert!(load(&dir, "x").unwrap().is_none());
    }
}
