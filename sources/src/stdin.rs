//! Standard input, a live source: lines are handed to the engine as they arrive (at the latest
//! after [`FLUSH_AFTER`]), every chunk carries the wall clock, and when input pauses the source
//! sends an empty chunk every [`TICK`] so that idle tenants' watermarks advance (see
//! `SEMANTICS.md`, idleness) and a burst followed by silence still fires.

use std::io::{BufRead, BufReader};
use std::sync::mpsc::{RecvTimeoutError, sync_channel};
use std::time::{Duration, Instant};

use vigil_engine::{ChunkSink, EventSource, SourceError};
use vigil_model::time::now_millis;

use crate::CHUNK_BYTES;

/// Longest time a line waits before it is handed to the engine.
pub const FLUSH_AFTER: Duration = Duration::from_millis(100);
/// Interval of idle ticks while no input arrives.
pub const TICK: Duration = Duration::from_millis(500);

/// Reads JSON lines from standard input.
#[derive(Debug, Default)]
pub struct StdinSource;

impl EventSource for StdinSource {
    fn name(&self) -> &str {
        "-"
    }

    fn run(self: Box<Self>, out: &mut dyn ChunkSink) -> Result<(), SourceError> {
        run_lines(Box::new(BufReader::new(std::io::stdin())), out, "-")
    }
}

/// Runs a live line reader over `input`; used by [`StdinSource`] and its tests.
pub(crate) fn run_lines(
    mut input: Box<dyn BufRead + Send>,
    out: &mut dyn ChunkSink,
    name: &str,
) -> Result<(), SourceError> {
    let (tx, rx) = sync_channel::<std::io::Result<Vec<u8>>>(1024);
    // Blocking reads happen on their own thread so that this one can flush on a timer.
    let reader = std::thread::spawn(move || {
        loop {
            let mut line = Vec::new();
            match input.read_until(b'\n', &mut line) {
                Ok(0) => return,
                Ok(_) => {
                    if tx.send(Ok(line)).is_err() {
                        return;
                    }
                }
                Err(e) => {
                    let _ = tx.send(Err(e));
                    return;
                }
            }
        }
    });
    let mut offset = 0u64;
    let mut buf: Vec<u8> = Vec::new();
    let mut first_at: Option<Instant> = None;
    let mut last_send = Instant::now();
    let mut flush = |buf: &mut Vec<u8>, offset: &mut u64| -> bool {
        let data = std::mem::take(buf);
        let len = data.len() as u64;
        let ok = out.send(data, *offset, Some(now_millis()));
        *offset += len;
        ok
    };
    let result = loop {
        let wait = match first_at {
            Some(t) => FLUSH_AFTER.saturating_sub(t.elapsed()),
            None => TICK.saturating_sub(last_send.elapsed()),
        };
        match rx.recv_timeout(wait) {
            Ok(Ok(line)) => {
                buf.extend_from_slice(&line);
                first_at.get_or_insert_with(Instant::now);
                if buf.len() >= CHUNK_BYTES {
                    if !flush(&mut buf, &mut offset) {
                        break Ok(());
                    }
                    first_at = None;
                    last_send = Instant::now();
                }
            }
            Ok(Err(error)) => {
                break Err(SourceError {
                    source_name: name.to_owned(),
                    error,
                });
            }
            Err(RecvTimeoutError::Timeout) => {
                // Either lines waited long enough, or the input is idle: send what there is
                // (possibly nothing, as an idle tick).
                if !flush(&mut buf, &mut offset) {
                    break Ok(());
                }
                first_at = None;
                last_send = Instant::now();
            }
            Err(RecvTimeoutError::Disconnected) => {
                if !buf.is_empty() {
                    flush(&mut buf, &mut offset);
                }
                break Ok(());
            }
        }
    };
    drop(rx);
    let _ = reader.join();
    result
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testing::Collect;

    #[test]
    fn lines_arrive_with_wall_clock_and_in_order() {
        let input = b"{\"a\":1}\n{\"a\":2}\n{\"a\":3}".to_vec();
        let mut out = Collect::default();
        run_lines(Box::new(std::io::Cursor::new(input.clone())), &mut out, "-").unwrap();
        let mut all = Vec::new();
        for (data, offset, wall) in &out.0 {
            assert_eq!(*offset as usize, all.len());
            assert!(wall.is_some());
            all.extend_from_slice(data);
        }
        assert_eq!(all, input);
    }
}
