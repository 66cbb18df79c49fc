//! An in-memory source, the test double for engine tests: the given bytes, in chunks of a given
//! number of lines, optionally stamped with a wall clock to exercise live-mode idleness.

use vigil_engine::{ChunkSink, EventSource, SourceError};

/// Serves bytes from memory.
#[derive(Debug, Clone)]
pub struct MemorySource {
    name: String,
    data: Vec<u8>,
    lines_per_chunk: usize,
    wall_ms: Option<Vec<i64>>,
    checkpoints: Option<Checkpoints>,
}

/// Stream-like behaviour for recovery tests: positions are line numbers.
#[derive(Debug, Clone, Copy)]
struct Checkpoints {
    every_chunks: usize,
    stop_after_chunks: Option<usize>,
}

impl MemorySource {
    /// Serves `data` in chunks of `lines_per_chunk` lines (at least 1).
    pub fn new(name: impl Into<String>, data: impl Into<Vec<u8>>, lines_per_chunk: usize) -> Self {
        MemorySource {
            name: name.into(),
            data: data.into(),
            lines_per_chunk: lines_per_chunk.max(1),
            wall_ms: None,
            checkpoints: None,
        }
    }

    /// Serves the lines of `lines`, joined with newlines.
    pub fn from_lines<S: AsRef<str>>(
        name: impl Into<String>,
        lines: &[S],
        lines_per_chunk: usize,
    ) -> Self {
        let mut data = String::new();
        for l in lines {
            data.push_str(l.as_ref());
            data.push('\n');
        }
        MemorySource::new(name, data, lines_per_chunk)
    }

    /// Stamps chunk `i` with wall clock `walls[i]` (the last value repeats), as a live source
    /// would; empty chunks can be made with empty lines.
    pub fn with_wall_clock(mut self, walls: Vec<i64>) -> Self {
        self.wall_ms = Some(walls);
        self
    }

    /// Behaves like a stream whose positions are line numbers: resumes after the position the
    /// engine restored, asks for a checkpoint every `every_chunks` chunks, and, with
    /// `stop_after_chunks`, stops the engine (as a crash would, without ending the input or
    /// committing a last checkpoint) after sending that many chunks and seeing the newest
    /// checkpoint committed.
    pub fn with_checkpoints(
        mut self,
        every_chunks: usize,
        stop_after_chunks: Option<usize>,
    ) -> Self {
        self.checkpoints = Some(Checkpoints {
            every_chunks: every_chunks.max(1),
            stop_after_chunks,
        });
        self
    }
}

impl EventSource for MemorySource {
    fn name(&self) -> &str {
        &self.name
    }

    fn needs_checkpoints(&self) -> bool {
        self.checkpoints.is_some()
    }

    fn run(self: Box<Self>, out: &mut dyn ChunkSink) -> Result<(), SourceError> {
        let mut offset = 0u64;
        let mut chunk = Vec::new();
        let mut lines = 0;
        let mut index = 0usize;
        let wall = |i: usize| {
            self.wall_ms
                .as_ref()
                .and_then(|w| w.get(i).or(w.last()).copied())
        };
        let resume = if self.checkpoints.is_some() {
            out.restored().unwrap_or(0)
        } else {
            0
        };
        let mut position = 0u64;
        let mut barrier = None;
        for line in self.data.split_inclusive(|&b| b == b'\n') {
            position += 1;
            if position <= resume {
                // Before the restored checkpoint: processed already. Offsets still count, as
                // the lines' derived ids depend on them.
                offset += line.len() as u64;
                continue;
            }
            chunk.extend_from_slice(line);
            lines += 1;
            if lines == self.lines_per_chunk {
                let len = chunk.len() as u64;
                if !out.send(std::mem::take(&mut chunk), offset, wall(index)) {
                    return Ok(());
                }
                index += 1;
                offset += len;
                lines = 0;
                if let Some(c) = self.checkpoints {
                    if index.is_multiple_of(c.every_chunks) {
                        if !out.checkpoint(position) {
                            return Ok(());
                        }
                        barrier = Some(position);
                    }
                    if c.stop_after_chunks == Some(index) {
                        // Crash once the newest checkpoint is committed, so that every run
                        // makes progress; what was sent after it is replayed by the next run.
                        let deadline =
                            std::time::Instant::now() + std::time::Duration::from_secs(30);
                        while out.committed() < barrier && std::time::Instant::now() < deadline {
                            std::thread::sleep(std::time::Duration::from_millis(1));
                        }
                        out.stop();
                        return Ok(());
                    }
                }
            }
        }
        if !chunk.is_empty() {
            out.send(chunk, offset, wall(index));
        }
        Ok(())
    }
}
