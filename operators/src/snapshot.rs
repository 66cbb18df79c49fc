//! Snapshots of operator state at checkpoint barriers, and their restore.
//!
//! At a barrier epoch `e` (an [`EpochSummary`](crate::EpochSummary) with `checkpoint` set,
//! broadcast to every worker), each stateful operator encodes its state as it stands after `e`
//! and before `e + 1` and hands the bytes to the engine, which stores them with the source
//! position the barrier stands for (ADR 0005). Snapshots are worker-independent: every key is
//! stored with its [`Hit::key`], so a snapshot taken with N workers restores into M workers —
//! each keeps the keys that timely's exchange would route to it.
//!
//! Encoding: postcard (compact, varint integers) of the types below, behind a format tag, so a
//! snapshot written by another format version is refused with a clear error instead of being
//! misread.

use serde::{Deserialize, Serialize};

use crate::records::Hit;
use crate::state::KeyState;
use crate::watermark::WatermarkTracker;

/// Bumped whenever the encoding of any snapshot type changes.
pub const FORMAT: u32 = 5;

/// One key's state.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct KeyEntry {
    /// The key (see [`Hit::key`]).
    pub key: [u64; 2],
    /// Rule index in the rule set the snapshot was taken with.
    pub rule: u32,
    /// Tenant id.
    pub tenant: String,
    /// The key's state.
    pub state: KeyState,
}

#[derive(Serialize)]
pub(crate) struct KeyEntryRef<'a> {
    pub(crate) key: [u64; 2],
    pub(crate) rule: u32,
    pub(crate) tenant: &'a str,
    pub(crate) state: &'a KeyState,
}

/// What `keyed_windows` holds at a barrier: watermarks, every live key, and the hits that wait
/// for their tenant's watermark (in the order they will be applied).
#[derive(Clone, Debug, Default, Serialize, Deserialize)]
pub struct WindowsSnapshot {
    /// The worker's watermark tracker (identical on every worker at a barrier).
    pub tracker: Option<WatermarkTracker>,
    /// Live keys.
    pub keys: Vec<KeyEntry>,
    /// Buffered hits, in application order per tenant.
    pub pending: Vec<Hit>,
}

#[derive(Serialize)]
pub(crate) struct WindowsSnapshotRef<'a> {
    pub(crate) tracker: Option<&'a WatermarkTracker>,
    pub(crate) keys: Vec<KeyEntryRef<'a>>,
    pub(crate) pending: Vec<&'a Hit>,
}

/// Why a snapshot could not be read.
#[derive(Debug, thiserror::Error)]
pub enum SnapshotError {
    /// Written by another format version.
    #[error("snapshot format {found} is not the supported format {FORMAT}")]
    Format {
        /// The format found.
        found: u32,
    },
    /// Not a valid encoding.
    #[error("snapshot is corrupt: {0}")]
    Corrupt(String),
}

pub(crate) fn encode<T: Serialize>(value: &T) -> Vec<u8> {
    let out = FORMAT.to_le_bytes().to_vec();
    // Encoding into a Vec cannot fail for these types (no maps with non-string keys, no
    // unsized sequences).
    match postcard::to_extend(value, out) {
        Ok(v) => v,
        Err(e) => panic!("snapshot encoding failed: {e}"),
    }
}

fn decode<'a, T: Deserialize<'a>>(bytes: &'a [u8]) -> Result<T, SnapshotError> {
    let (tag, body) = bytes
        .split_first_chunk::<4>()
        .ok_or_else(|| SnapshotError::Corrupt("shorter than its format tag".into()))?;
    let found = u32::from_le_bytes(*tag);
    if found != FORMAT {
        return Err(SnapshotError::Format { found });
    }
    postcard::from_bytes(body).map_err(|e| SnapshotError::Corrupt(e.to_string()))
}

impl WindowsSnapshot {
    /// Decodes a snapshot encoded by `keyed_windows`.
    pub fn decode(bytes: &[u8]) -> Result<WindowsSnapshot, SnapshotError> {
        decode(bytes)
    }

    /// Adds the keys and hits of `other` (a snapshot of another worker); the tracker is kept
    /// (every worker's is the same at a barrier).
    pub fn merge(&mut self, other: WindowsSnapshot) {
        if self.tracker.is_none() {
            self.tracker = other.tracker;
        }
        self.keys.extend(other.keys);
        self.pending.extend(other.pending);
    }

    /// The part of this snapshot that worker `index` of `peers` owns: the keys and hits that
    /// timely's exchange routes there (`key[0] % peers`, which is also what its mask does for
    /// a power-of-two number of workers).
    pub fn for_worker(&self, index: usize, peers: usize) -> WindowsSnapshot {
        let mine = |k: &[u64; 2]| (k[0] % peers as u64) as usize == index;
        WindowsSnapshot {
            tracker: self.tracker.clone(),
            keys: self.keys.iter().filter(|k| mine(&k.key)).cloned().collect(),
            pending: self
                .pending
                .iter()
                .filter(|h| mine(&h.key))
                .cloned()
                .collect(),
        }
    }
}

/// Decodes a watermark tracker encoded by the `lateness` operator.
pub fn decode_tracker(bytes: &[u8]) -> Result<WatermarkTracker, SnapshotError> {
    decode(bytes)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn refuses_other_formats_and_garbage() {
        let t = WatermarkTracker::new(1, vec![]);
        let mut bytes = encode(&t);
        assert!(decode_tracker(&bytes).is_ok());
        bytes[0] ^= 0xff;
        assert!(matches!(
            decode_tracker(&bytes),
            Err(SnapshotError::Format { .. })
        ));
        let mut garbage = FORMAT.to_le_bytes().to_vec();
        garbage.extend([0xff, 0xff]);
        assert!(matches!(
            WindowsSnapshot::decode(&garbage),
            Err(SnapshotError::Corrupt(_))
        ));
        assert!(WindowsSnapshot::decode(&[1]).is_err());
    }
}
