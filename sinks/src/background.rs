//! A sink whose writes happen on its own runtime: the engine's worker threads hand items to a
//! bounded queue, a task batches them (by count, bytes and time) and writes each batch until
//! every item is stored or dead-lettered. Shared by the OpenSearch and Postgres sinks.
//!
//! - `send` blocks while the queue is full: a slow or absent service slows the engine
//!   (backpressure), it never drops alerts.
//! - `flush`, which the engine calls before every checkpoint, returns once everything sent
//!   before it has been written, so no checkpoint — and no acknowledgement of the input —
//!   covers an alert the service lacks.
//! - Dropping the sink closes the queue and waits for the last batch.

use std::future::Future;
use std::sync::{Mutex, MutexGuard, PoisonError};
use std::time::Duration;

use bytes::Bytes;
use tokio::sync::{mpsc, oneshot};
use vigil_bus::{Outgoing, Subject};
use vigil_engine::SinkError;
use vigil_model::TenantId;

/// A batch writer: what a background sink does with its items.
pub(crate) trait Batch: Send + 'static {
    /// One queued item.
    type Item: Send + 'static;
    /// The bytes `item` adds to a batch.
    fn size(item: &Self::Item) -> usize;
    /// Writes `batch` until every item is stored or dead-lettered (retrying what failed for
    /// a transient reason); leaves it empty.
    fn write_all(&mut self, batch: &mut Vec<Self::Item>) -> impl Future<Output = ()> + Send;
}

/// When a batch is written.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Limits {
    /// Items per batch at most.
    pub(crate) items: usize,
    /// Bytes per batch at most (a larger single item is written alone).
    pub(crate) bytes: usize,
    /// How long the first item of a batch waits for more.
    pub(crate) interval: Duration,
    /// Items queued before `send` blocks.
    pub(crate) queue: usize,
}

enum Cmd<T> {
    Item(T),
    Flush(oneshot::Sender<()>),
}

/// The queue and the task that drains it.
pub(crate) struct Background<T> {
    name: &'static str,
    rt: tokio::runtime::Runtime,
    tx: Mutex<Option<mpsc::Sender<Cmd<T>>>>,
    task: Mutex<Option<tokio::task::JoinHandle<()>>>,
}

impl<T> std::fmt::Debug for Background<T> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Background")
            .field("name", &self.name)
            .finish_non_exhaustive()
    }
}

/// A sink error of the sink `name`.
pub(crate) fn sink_error(name: &str, e: impl std::fmt::Display) -> SinkError {
    SinkError {
        sink: name.to_owned(),
        source: std::io::Error::other(e.to_string()),
    }
}

/// A one-thread runtime for the sink `name` (its connections live on it).
pub(crate) fn runtime(name: &'static str) -> Result<tokio::runtime::Runtime, SinkError> {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .thread_name(format!("vigil-{name}"))
        .enable_all()
        .build()
        .map_err(|e| sink_error(name, e))
}

impl<T: Send + 'static> Background<T> {
    /// Starts `writer` on `rt`.
    pub(crate) fn start<W: Batch<Item = T>>(
        name: &'static str,
        rt: tokio::runtime::Runtime,
        writer: W,
        limits: Limits,
    ) -> Self {
        let (tx, rx) = mpsc::channel(limits.queue.max(1));
        let task = rt.spawn(run(writer, limits, rx));
        Background {
            name,
            rt,
            tx: Mutex::new(Some(tx)),
            task: Mutex::new(Some(task)),
        }
    }

    fn sender(&self) -> Result<mpsc::Sender<Cmd<T>>, SinkError> {
        lock(&self.tx)
            .clone()
            .ok_or_else(|| sink_error(self.name, "the writer has stopped"))
    }

    /// Queues `item`; blocks while the queue is full. Call from a plain thread, not from
    /// async code.
    pub(crate) fn send(&self, item: T) -> Result<(), SinkError> {
        self.sender()?
            .blocking_send(Cmd::Item(item))
            .map_err(|e| sink_error(self.name, e))
    }

    /// Returns once everything queued before it is written.
    pub(crate) fn flush(&self) -> Result<(), SinkError> {
        let (done, wait) = oneshot::channel();
        self.sender()?
            .blocking_send(Cmd::Flush(done))
            .map_err(|e| sink_error(self.name, e))?;
        wait.blocking_recv().map_err(|e| sink_error(self.name, e))
    }
}

impl<T> Drop for Background<T> {
    fn drop(&mut self) {
        // Closing the queue lets the writer write what is left and end.
        lock(&self.tx).take();
        if let Some(task) = lock(&self.task).take() {
            let _ = self.rt.block_on(task);
        }
    }
}

async fn run<W: Batch>(mut writer: W, limits: Limits, mut rx: mpsc::Receiver<Cmd<W::Item>>) {
    let mut batch = Vec::new();
    let mut bytes = 0usize;
    let mut deadline = None;
    loop {
        let cmd = match deadline {
            Some(at) => tokio::select! {
                c = rx.recv() => c,
                _ = tokio::time::sleep_until(at) => {
                    writer.write_all(&mut batch).await;
                    bytes = 0;
                    deadline = None;
                    continue;
                }
            },
            None => rx.recv().await,
        };
        match cmd {
            Some(Cmd::Item(item)) => {
                if batch.is_empty() {
                    deadline = Some(tokio::time::Instant::now() + limits.interval);
                }
                bytes += W::size(&item);
                batch.push(item);
                if batch.len() >= limits.items || bytes >= limits.bytes {
                    writer.write_all(&mut batch).await;
                    bytes = 0;
                    deadline = None;
                }
            }
            Some(Cmd::Flush(done)) => {
                writer.write_all(&mut batch).await;
                bytes = 0;
                deadline = None;
                let _ = done.send(());
            }
            None => {
                writer.write_all(&mut batch).await;
                return;
            }
        }
    }
}

/// A dead letter of the sink `sink` for `tenant`: the refused item's `body`, with the
/// refusal's kind and message in headers; `key` (unique per sink and item) makes the
/// `Nats-Msg-Id`, so a retried dead letter is stored once.
pub(crate) fn dead_letter(
    subject: Subject,
    tenant: &TenantId,
    key: &str,
    body: Bytes,
    sink: &'static str,
    kind: String,
    message: &str,
) -> Outgoing {
    Outgoing {
        subject: subject.for_tenant(tenant),
        msg_id: vigil_bus::msg_id(tenant, key),
        payload: body,
        headers: vec![
            ("Vigil-Reject-Reason", kind),
            ("Vigil-Reject-Message", message.replace(['\r', '\n'], " ")),
            ("Vigil-Sink", sink.to_owned()),
        ],
    }
}

/// Locks `m`, through a poisoned lock (the data are counters and handles).
pub(crate) fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(PoisonError::into_inner)
}

/// `base` plus up to 50% of itself, varied by attempt (no two writers retry in step).
pub(crate) fn jitter(base: Duration, attempt: u32) -> Duration {
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.subsec_nanos());
    let spread = (u64::from(nanos) ^ u64::from(attempt).wrapping_mul(0x9e37_79b9)) % 1_000;
    base + base.mul_f64(spread as f64 / 2_000.0)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Arc;

    #[test]
    fn jitter_stays_within_half_again() {
        for attempt in 0..100 {
            let d = jitter(Duration::from_millis(100), attempt);
            assert!(d >= Duration::from_millis(100) && d <= Duration::from_millis(150));
        }
    }

    /// Records the batches it is given.
    struct Recorder(Arc<Mutex<Vec<Vec<u32>>>>);

    impl Batch for Recorder {
        type Item = u32;
        fn size(_: &u32) -> usize {
            10
        }
        async fn write_all(&mut self, batch: &mut Vec<u32>) {
            if !batch.is_empty() {
                lock(&self.0).push(std::mem::take(batch));
            }
        }
    }

    #[test]
    fn batches_by_count_and_bytes_and_flushes_on_demand_and_drop() {
        let seen = Arc::new(Mutex::new(Vec::new()));
        let limits = Limits {
            items: 3,
            bytes: 25,
            interval: Duration::from_secs(3600),
            queue: 2,
        };
        let bg = Background::start(
            "test",
            runtime("test").unwrap(),
            Recorder(seen.clone()),
            limits,
        );
        // 25 bytes: the third item closes the batch.
        for i in 0..7 {
            bg.send(i).unwrap();
        }
        bg.flush().unwrap();
        assert_eq!(*lock(&seen), [vec![0, 1, 2], vec![3, 4, 5], vec![6]]);
        bg.send(7).unwrap();
        drop(bg);
        assert_eq!(lock(&seen).last(), Some(&vec![7]));
    }

    #[test]
    fn a_batch_waits_at_most_the_interval() {
        let seen = Arc::new(Mutex::new(Vec::new()));
        let limits = Limits {
            items: 100,
            bytes: 1 << 20,
            interval: Duration::from_millis(50),
            queue: 10,
        };
        let bg = Background::start(
            "test",
            runtime("test").unwrap(),
            Recorder(seen.clone()),
            limits,
        );
        bg.send(1).unwrap();
        let start = std::time::Instant::now();
        while lock(&seen).is_empty() {
            assert!(start.elapsed() < Duration::from_secs(10), "never written");
            std::thread::sleep(Duration::from_millis(5));
        }
        assert_eq!(*lock(&seen), [vec![1]]);
    }
}
