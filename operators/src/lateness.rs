//! `lateness`: classifies every event of a chunk as on time or late, with the same watermarks as
//! [`crate::keyed_windows`], and hands the late ones to a callback (the engine routes them to
//! the late output: the rejects file with reason `late`).
//!
//! Hits decide lateness again on their own worker (per rule); this operator sees every event,
//! including those that match no rule, so that `normalized = processed + late` holds exactly.

use timely::dataflow::channels::pact::Pipeline;
use timely::dataflow::operators::generic::Operator;
use timely::dataflow::{Stream, StreamVec};

use std::collections::BTreeMap;

use crate::keyed_windows::OnCheckpoint;
use crate::records::EpochSummary;
use crate::snapshot;
use crate::watermark::WatermarkTracker;

/// Per-event facts the lateness operator needs; one per valid event of a chunk.
pub trait EventTimes {
    /// The chunk's epoch.
    fn epoch(&self) -> u64;
    /// The chunk's source.
    fn source(&self) -> u16;
    /// Calls `f(index, tenant, ts, prior_max)` for each event of the chunk.
    fn for_each_event(&self, f: &mut dyn FnMut(usize, &str, i64, i64));
}

/// Extension trait for the `lateness` operator.
pub trait Lateness<'scope, C> {
    /// Starting from `tracker` (fresh or restored), calls `on_late(chunk, event index)` for
    /// every late event, and `on_done(chunk, late)` once per chunk with its number of late
    /// events, in epoch order; at a checkpoint barrier, hands the encoded tracker to
    /// `on_checkpoint`.
    fn lateness(
        self,
        summaries: StreamVec<'scope, u64, EpochSummary>,
        tracker: WatermarkTracker,
        on_late: impl FnMut(&C, usize) + 'static,
        on_done: impl FnMut(&C, u64) + 'static,
        on_checkpoint: OnCheckpoint,
    );
}

impl<'scope, C: EventTimes + 'static> Lateness<'scope, C> for Stream<'scope, u64, Vec<C>> {
    fn lateness(
        self,
        summaries: StreamVec<'scope, u64, EpochSummary>,
        mut tracker: WatermarkTracker,
        mut on_late: impl FnMut(&C, usize) + 'static,
        mut on_done: impl FnMut(&C, u64) + 'static,
        mut on_checkpoint: OnCheckpoint,
    ) {
        self.binary_frontier::<_, timely::container::CapacityContainerBuilder<Vec<()>>, _, _, _, _>(
            summaries,
            Pipeline,
            Pipeline,
            "Lateness",
            move |_cap, _info| {
                let mut chunks: BTreeMap<u64, Vec<C>> = BTreeMap::new();
                let mut sums: BTreeMap<u64, Vec<EpochSummary>> = BTreeMap::new();
                move |(chunks_in, chunks_frontier), (sum_in, sum_frontier), _output| {
                    chunks_in.for_each(|_, data| {
                        for c in data.drain(..) {
                            chunks.entry(c.epoch()).or_default().push(c);
                        }
                    });
                    sum_in.for_each(|_, data| {
                        for s in data.drain(..) {
                            sums.entry(s.epoch).or_default().push(s);
                        }
                    });
                    // Every epoch has a summary, so the summaries drive the order.
                    while let Some(entry) = sums.first_entry() {
                        let e = *entry.key();
                        if chunks_frontier.less_equal(&e) || sum_frontier.less_equal(&e) {
                            break;
                        }
                        for c in chunks.remove(&e).unwrap_or_default() {
                            let mut late = 0;
                            c.for_each_event(&mut |i, tenant, ts, prior| {
                                if tracker.is_late(c.source(), tenant, ts, prior) {
                                    late += 1;
                                    on_late(&c, i);
                                }
                            });
                            on_done(&c, late);
                        }
                        let mut barrier = false;
                        for s in entry.remove() {
                            barrier |= s.checkpoint;
                            tracker.apply(&s);
                        }
                        if barrier {
                            on_checkpoint(e, snapshot::encode(&tracker));
                        }
                    }
                }
            },
        );
    }
}
