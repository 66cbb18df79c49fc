//! JSON lines: one alert (schema `docs/schema/alert.schema.json`) or one reject per line.
//!
//! A reject line is `{"reason":…,"error":…,"source":…,"offset":…,"line":…}`, with the line as
//! read (invalid UTF-8 replaced by U+FFFD).

use std::io::{BufWriter, Write};
use std::path::Path;
use std::sync::Mutex;

use serde_json::json;
use vigil_engine::{AlertSink, Reject, RejectSink, SinkError};
use vigil_model::Alert;

struct Writer {
    name: String,
    out: Mutex<BufWriter<Box<dyn Write + Send>>>,
}

impl Writer {
    fn new(name: String, w: Box<dyn Write + Send>) -> Self {
        Writer {
            name,
            out: Mutex::new(BufWriter::with_capacity(64 * 1024, w)),
        }
    }

    fn err(&self, source: std::io::Error) -> SinkError {
        SinkError {
            sink: self.name.clone(),
            source,
        }
    }

    fn with<R>(
        &self,
        f: impl FnOnce(&mut BufWriter<Box<dyn Write + Send>>) -> std::io::Result<R>,
    ) -> Result<R, SinkError> {
        // A poisoned lock means another worker panicked mid-write; the engine reports that
        // failure itself, and the buffer is still usable.
        let mut out = self
            .out
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        f(&mut out).map_err(|e| self.err(e))
    }
}

fn create(path: &Path) -> Result<Box<dyn Write + Send>, SinkError> {
    open(path, false)
}

/// Stdout for `-`; else the file, truncated or appended to.
fn open(path: &Path, append: bool) -> Result<Box<dyn Write + Send>, SinkError> {
    if path.as_os_str() == "-" {
        return Ok(Box::new(std::io::stdout()));
    }
    std::fs::OpenOptions::new()
        .create(true)
        .write(true)
        .append(append)
        .truncate(!append)
        .open(path)
        .map(|f| Box::new(f) as Box<dyn Write + Send>)
        .map_err(|source| SinkError {
            sink: path.display().to_string(),
            source,
        })
}

/// Writes alerts as JSON lines.
pub struct JsonlAlerts(Writer);

impl JsonlAlerts {
    /// Alerts to `path`, or to stdout for `-`.
    pub fn create(path: &Path) -> Result<Self, SinkError> {
        Ok(JsonlAlerts(Writer::new(display(path), create(path)?)))
    }

    /// Alerts appended to `path` (stdout for `-`): a service restarted from a checkpoint keeps
    /// what it wrote before. Replayed alerts appear again with the same id.
    pub fn append(path: &Path) -> Result<Self, SinkError> {
        Ok(JsonlAlerts(Writer::new(display(path), open(path, true)?)))
    }

    /// Alerts to any writer.
    pub fn to_writer(name: &str, w: Box<dyn Write + Send>) -> Self {
        JsonlAlerts(Writer::new(name.to_owned(), w))
    }
}

impl std::fmt::Debug for JsonlAlerts {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "JsonlAlerts({})", self.0.name)
    }
}

fn display(path: &Path) -> String {
    if path.as_os_str() == "-" {
        "stdout".to_owned()
    } else {
        path.display().to_string()
    }
}

impl AlertSink for JsonlAlerts {
    fn write(&self, alerts: &[Alert]) -> Result<(), SinkError> {
        self.0.with(|out| {
            for a in alerts {
                serde_json::to_writer(&mut *out, a)?;
                out.write_all(b"\n")?;
            }
            // Each batch goes out whole and at once, so that whoever tails a live run sees
            // its alerts as they are raised (one write per batch; alerts are rare).
            out.flush()
        })
    }

    fn flush(&self) -> Result<(), SinkError> {
        self.0.with(|out| out.flush())
    }
}

/// Writes rejects as JSON lines.
pub struct JsonlRejects(Writer);

impl JsonlRejects {
    /// Rejects to `path`, or to stdout for `-`.
    pub fn create(path: &Path) -> Result<Self, SinkError> {
        Ok(JsonlRejects(Writer::new(display(path), create(path)?)))
    }

    /// Rejects appended to `path` (stdout for `-`).
    pub fn append(path: &Path) -> Result<Self, SinkError> {
        Ok(JsonlRejects(Writer::new(display(path), open(path, true)?)))
    }
}

impl std::fmt::Debug for JsonlRejects {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "JsonlRejects({})", self.0.name)
    }
}

impl RejectSink for JsonlRejects {
    fn write(&self, r: &Reject<'_>) -> Result<(), SinkError> {
        let v = json!({
            "reason": r.reason.as_str(),
            "error": r.detail,
            "source": r.source,
            "offset": r.offset,
            "line": String::from_utf8_lossy(r.line),
        });
        self.0.with(|out| {
            serde_json::to_writer(&mut *out, &v)?;
            out.write_all(b"\n")
        })
    }

    fn flush(&self) -> Result<(), SinkError> {
        self.0.with(|out| out.flush())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use vigil_engine::RejectReason;

    #[test]
    fn rejects_keep_the_line_and_reason() {
        let dir = std::env::temp_dir().join(format!("vigil-sinks-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("rejects.jsonl");
        let sink = JsonlRejects::create(&path).unwrap();
        sink.write(&Reject {
            reason: RejectReason::InvalidJson,
            detail: "expected value at line 1 column 1".into(),
            source: "in.jsonl",
            tenant: None,
            offset: 42,
            line: b"not json \xff",
            record: None,
        })
        .unwrap();
        sink.flush().unwrap();
        let text = std::fs::read_to_string(&path).unwrap();
        let v: serde_json::Value = serde_json::from_str(text.trim()).unwrap();
        assert_eq!(v["reason"], "invalid_json");
        assert_eq!(v["offset"], 42);
        assert_eq!(v["line"], "not json \u{fffd}");
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn unwritable_path_is_a_clear_error() {
        let e = JsonlAlerts::create(Path::new("/nonexistent/dir/alerts.jsonl")).unwrap_err();
        assert!(
            e.to_string()
                .starts_with("failed to write to /nonexistent/dir/alerts.jsonl: "),
            "{e}"
        );
    }
}
