//! Event sources, one module each: JSON-lines files, stdin and memory (embedded mode), and the
//! JetStream consumer on `NORMALIZED` (the service path).
//!
//! Every source hands the engine chunks of whole lines through [`vigil_engine::ChunkSink`], which
//! blocks while the engine's channels are full: backpressure reaches the reader (or NATS), and
//! memory stays bounded whatever the input size. Files and pipes have nothing to acknowledge and
//! are read once, in order; the JetStream source acknowledges behind the engine's checkpoints
//! and resumes after the restored one ([`jetstream`]).

pub mod file;
pub mod jetstream;
pub mod memory;
pub mod stdin;

pub use file::FileSource;
pub use jetstream::{Input, JetStreamConfig, JetStreamSource, JetStreamStats, Start};
pub use memory::MemorySource;
pub use stdin::StdinSource;

use std::io::Read;

use vigil_engine::ChunkSink;

/// Bytes read per chunk (before extending to the end of the last whole line).
pub const CHUNK_BYTES: usize = 256 * 1024;

/// Reads `r` to the end, handing `out` chunks of whole lines of about `chunk_bytes` each.
/// Returns false if the engine stopped first.
pub(crate) fn pump(
    r: &mut dyn Read,
    out: &mut dyn ChunkSink,
    chunk_bytes: usize,
) -> std::io::Result<bool> {
    let mut offset = 0u64;
    let mut carry: Vec<u8> = Vec::new();
    loop {
        let mut buf = std::mem::take(&mut carry);
        let have = buf.len();
        buf.reserve(chunk_bytes);
        // Fill the block, so that chunk boundaries depend on the data, not on read sizes
        // (`read_to_end` retries short reads and does not zero the spare capacity).
        r.take(chunk_bytes as u64).read_to_end(&mut buf)?;
        if buf.len() == have {
            // End of input: the rest is the last line, without a newline.
            if !buf.is_empty() && !out.send(buf, offset, None) {
                return Ok(false);
            }
            return Ok(true);
        }
        match memchr::memrchr(b'\n', &buf) {
            Some(last) => {
                carry = buf.split_off(last + 1);
                let len = buf.len() as u64;
                if !out.send(buf, offset, None) {
                    return Ok(false);
                }
                offset += len;
            }
            // A line longer than the block: keep reading until it ends.
            None => carry = buf,
        }
    }
}

#[cfg(test)]
pub(crate) mod testing {
    use vigil_engine::ChunkSink;

    /// Collects chunks.
    #[derive(Default)]
    pub struct Collect(pub Vec<(Vec<u8>, u64, Option<i64>)>);

    impl ChunkSink for Collect {
        fn send(&mut self, data: Vec<u8>, offset: u64, wall_ms: Option<i64>) -> bool {
            self.0.push((data, offset, wall_ms));
            true
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testing::Collect;

    #[test]
    fn chunks_hold_whole_lines_with_offsets() {
        let input = b"aaaa\nbb\ncccccc\nd".to_vec();
        let mut out = Collect::default();
        assert!(pump(&mut &input[..], &mut out, 6).unwrap());
        let mut rebuilt = Vec::new();
        for (data, offset, wall) in &out.0 {
            assert_eq!(*offset as usize, rebuilt.len());
            assert!(wall.is_none());
            assert!(data.ends_with(b"\n") || data == b"d");
            rebuilt.extend_from_slice(data);
        }
        assert_eq!(rebuilt, input);
    }

    #[test]
    fn long_lines_are_not_split() {
        let input = format!("{}\nx\n", "y".repeat(100)).into_bytes();
        let mut out = Collect::default();
        pump(&mut &input[..], &mut out, 8).unwrap();
        let first = &out.0[0].0;
        assert_eq!(memchr::memchr(b'\n', first), Some(100));
        assert!(first.ends_with(b"\n"));
    }
}
