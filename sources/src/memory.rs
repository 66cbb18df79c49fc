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
}

impl MemorySource {
    /// Serves `data` in chunks of `lines_per_chunk` lines (at least 1).
    pub fn new(name: impl Into<String>, data: impl Into<Vec<u8>>, lines_per_chunk: usize) -> Self {
        MemorySource {
            name: name.into(),
            data: data.into(),
            lines_per_chunk: lines_per_chunk.max(1),
            wall_ms: None,
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
}

impl EventSource for MemorySource {
    fn name(&self) -> &str {
        &self.name
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
        for line in self.data.split_inclusive(|&b| b == b'\n') {
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
            }
        }
        if !chunk.is_empty() {
            out.send(chunk, offset, wall(index));
        }
        Ok(())
    }
}
