//! A JSON-lines file, read once from the start. Replayed input: no wall clock, so watermarks
//! move only with event time and results are deterministic.

use std::fs::File;
use std::path::PathBuf;

use vigil_engine::{ChunkSink, EventSource, SourceError};

use crate::{CHUNK_BYTES, pump};

/// Reads a file of JSON lines.
#[derive(Debug)]
pub struct FileSource {
    path: PathBuf,
    name: String,
}

impl FileSource {
    /// A source reading `path`.
    pub fn new(path: impl Into<PathBuf>) -> Self {
        let path = path.into();
        let name = path.display().to_string();
        FileSource { path, name }
    }
}

impl EventSource for FileSource {
    fn name(&self) -> &str {
        &self.name
    }

    fn run(self: Box<Self>, out: &mut dyn ChunkSink) -> Result<(), SourceError> {
        let err = |error| SourceError {
            source_name: self.name.clone(),
            error,
        };
        let mut f = File::open(&self.path).map_err(err)?;
        pump(&mut f, out, CHUNK_BYTES).map_err(err)?;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testing::Collect;

    #[test]
    fn missing_file_is_a_clear_error() {
        let s = Box::new(FileSource::new("/nonexistent/events.jsonl"));
        let e = s.run(&mut Collect::default()).unwrap_err();
        assert!(
            e.to_string()
                .starts_with("failed to read /nonexistent/events.jsonl: "),
            "{e}"
        );
    }
}
