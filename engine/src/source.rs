//! The source operator: drains this worker's chunk channel, decodes every line, rejects bad
//! ones, evaluates every rule's filter and emits, per chunk (epoch):
//! - [`Hit`]s, one per (event, matching rule), to be exchanged by key;
//! - a [`ParsedChunk`] (per-event tenant and time, and the raw bytes) for the lateness operator;
//! - one [`EpochSummary`], to be broadcast, so that every worker tracks every watermark.

use std::cell::RefCell;
use std::rc::Rc;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc::{Receiver, TryRecvError};

use timely::dataflow::operators::generic::OutputBuilder;
use timely::dataflow::operators::generic::builder_rc::OperatorBuilder;
use timely::dataflow::{Scope, StreamVec};
use vigil_model::time::{epoch_millis, parse_rfc3339};
use vigil_model::{TenantId, is_valid_tenant};
use vigil_operators::lateness::EventTimes;
use vigil_operators::{EpochSummary, EventId, Group, Hit, HitVecs, SmallStr, TenantIndex};
use xxhash_rust::xxh3::{Xxh3, xxh3_128_with_seed};

use crate::decode::{Decoded, Val};
use crate::filter::Memo;
use crate::io::{Normalizer, Record, Reject, RejectReason, RejectSink};
use crate::rules::{Compiled, HitBase, Matched};
use crate::stats::WorkerStats;

/// A chunk of whole lines from a source, numbered in read order.
#[derive(Debug)]
pub(crate) struct Chunk {
    pub(crate) seq: u64,
    pub(crate) source: u16,
    pub(crate) offset: u64,
    pub(crate) data: Vec<u8>,
    /// Raw records, normalized into `data` on the worker (then `data` starts empty).
    pub(crate) records: Vec<Record>,
    pub(crate) wall_ms: Option<i64>,
    /// A checkpoint barrier (an empty chunk).
    pub(crate) barrier: bool,
}

/// Time and tenant of one valid event, by position in its chunk.
#[derive(Clone, Copy, Debug)]
pub(crate) struct EventMeta {
    tenant: u16,
    ts: i64,
    prior_max: i64,
    start: u32,
    len: u32,
    /// The line's number in its chunk.
    line: u32,
}

/// What the lateness operator needs of a chunk. Stays on its worker.
#[derive(Debug)]
pub(crate) struct ParsedChunk {
    pub(crate) epoch: u64,
    pub(crate) source: u16,
    pub(crate) offset: u64,
    pub(crate) data: Vec<u8>,
    pub(crate) tenants: Vec<String>,
    pub(crate) events: Vec<EventMeta>,
    /// For a chunk of records: the position of each line of `data`, by line number.
    pub(crate) positions: Vec<u64>,
}

impl ParsedChunk {
    /// The line of event `i`, its offset (a record's position) and its time.
    pub(crate) fn line(&self, i: usize) -> (&[u8], u64, i64) {
        let e = self.events[i];
        let start = e.start as usize;
        let offset = match self.positions.get(e.line as usize) {
            Some(&p) => p,
            None => self.offset + u64::from(e.start),
        };
        (&self.data[start..start + e.len as usize], offset, e.ts)
    }
}

impl ParsedChunk {
    /// The tenant of event `i`.
    pub(crate) fn tenant(&self, i: usize) -> &str {
        &self.tenants[usize::from(self.events[i].tenant)]
    }
}

impl EventTimes for ParsedChunk {
    fn epoch(&self) -> u64 {
        self.epoch
    }
    fn source(&self) -> u16 {
        self.source
    }
    fn for_each_event(&self, f: &mut dyn FnMut(usize, &str, i64, i64)) {
        for (i, e) in self.events.iter().enumerate() {
            f(i, &self.tenants[usize::from(e.tenant)], e.ts, e.prior_max);
        }
    }
}

/// Everything the source operator shares with the worker.
pub(crate) struct SourceCtx {
    pub(crate) rules: Arc<Compiled>,
    pub(crate) default_tenant: Option<TenantId>,
    pub(crate) source_name: Arc<str>,
    pub(crate) rejects: Option<Arc<dyn RejectSink>>,
    /// Normalizes the records of raw chunks (the dispatcher sends records only when there is
    /// one).
    pub(crate) normalizer: Option<Arc<dyn Normalizer>>,
    pub(crate) stats: Rc<RefCell<WorkerStats>>,
    /// Set when the engine stops without ending the input.
    pub(crate) abort: Arc<AtomicBool>,
    /// The vectors the hits go out in, handed back by the window operators.
    pub(crate) hit_vecs: HitVecs,
}

type Outputs<'s> = (
    StreamVec<'s, u64, Hit>,
    StreamVec<'s, u64, ParsedChunk>,
    StreamVec<'s, u64, EpochSummary>,
    Rc<[usize]>,
);

/// Builds the source operator on `scope`; returns its three outputs and its address (for the
/// reader thread's activator).
pub(crate) fn source<'s>(
    scope: Scope<'s, u64>,
    rx: Receiver<Chunk>,
    ctx: SourceCtx,
) -> Outputs<'s> {
    let mut builder = OperatorBuilder::new("Source".to_owned(), scope);
    let info = builder.operator_info();
    let (hits_out, hits) = builder.new_output();
    let (chunks_out, chunks) = builder.new_output();
    let (sums_out, sums) = builder.new_output();
    let mut hits_out = OutputBuilder::from(hits_out);
    let mut chunks_out = OutputBuilder::from(chunks_out);
    let mut sums_out = OutputBuilder::from(sums_out);
    let me = scope.index() as u64;
    let peers = scope.peers() as u64;
    let self_activator = scope.activator_for(info.address.clone());
    let address = info.address.clone();
    builder.build(move |mut caps| {
        for c in &mut caps {
            c.downgrade(&me);
        }
        let mut caps = Some(caps);
        let abort = Arc::clone(&ctx.abort);
        let mut parser = Parser::new(ctx);
        move |_frontiers| {
            let Some(held) = caps.as_mut() else { return };
            // A bounded amount of work per activation keeps the worker responsive.
            for _ in 0..4 {
                match rx.try_recv() {
                    Ok(chunk) => {
                        let seq = chunk.seq;
                        let (mut hits, parsed, summary) = parser.chunk(chunk);
                        if !hits.is_empty() {
                            // The chunk's hits go out as one vector, not copied into
                            // timely's buffers.
                            let mut h = hits_out.activate();
                            h.session(&held[0].delayed(&seq)).give_container(&mut hits);
                        }
                        parser.ctx.hit_vecs.give(hits);
                        let mut c = chunks_out.activate();
                        c.session(&held[1].delayed(&seq)).give(parsed);
                        let mut s = sums_out.activate();
                        s.session(&held[2].delayed(&seq)).give(summary);
                        for c in held.iter_mut() {
                            c.downgrade(&(seq + peers));
                        }
                    }
                    Err(TryRecvError::Empty) => return,
                    Err(TryRecvError::Disconnected) => {
                        // Stopped, not ended: keep the capabilities so that nothing flushes;
                        // the worker leaves its loop.
                        if !abort.load(Ordering::SeqCst) {
                            caps = None;
                        }
                        return;
                    }
                }
            }
            self_activator.activate();
        }
    });
    (hits, chunks, sums, address)
}

struct Parser {
    ctx: SourceCtx,
    scratch: Option<Decoded<'static>>,
    /// Test results for the event at hand, kept to reuse the allocation.
    memo: Memo,
}

impl Parser {
    fn new(ctx: SourceCtx) -> Self {
        Parser {
            ctx,
            scratch: Some(Decoded::default()),
            memo: Memo::default(),
        }
    }

    /// Counts and writes a reject; `record` for a raw record that failed normalization.
    fn reject(&self, r: Rejected, offset: u64, line: &[u8], record: bool) {
        let (reason, detail, tenant) = r;
        self.ctx.stats.borrow_mut().reject(reason);
        if let Some(sink) = &self.ctx.rejects {
            let r = Reject {
                reason,
                detail,
                source: &self.ctx.source_name,
                tenant: tenant.as_deref(),
                offset,
                line,
                record: record.then_some(offset),
            };
            if let Err(e) = sink.write(&r) {
                self.ctx.stats.borrow_mut().sink_error(e);
            }
        }
    }

    /// Normalizes `records` into lines of canonical JSON, rejecting those that fail; returns
    /// the lines and the position of each.
    fn normalize(&self, normalizer: &dyn Normalizer, records: &[Record]) -> (Vec<u8>, Vec<u64>) {
        let mut data = Vec::with_capacity(records.len() * 400);
        let mut positions = Vec::with_capacity(records.len());
        for r in records {
            let start = data.len();
            match normalizer.normalize(r, &mut data) {
                Ok(()) => {
                    debug_assert!(
                        !data[start..].contains(&b'\n'),
                        "a normalizer wrote more than one line"
                    );
                    data.push(b'\n');
                    positions.push(r.position);
                }
                Err((reason, detail)) => {
                    data.truncate(start);
                    self.reject(
                        (reason, detail, Some(r.tenant.as_str().to_owned())),
                        r.position,
                        &r.payload,
                        true,
                    );
                }
            }
        }
        (data, positions)
    }

    fn chunk(&mut self, mut chunk: Chunk) -> (Vec<Hit>, ParsedChunk, EpochSummary) {
        let mut positions = Vec::new();
        if let Some(normalizer) = self.ctx.normalizer.clone()
            && !chunk.records.is_empty()
        {
            let records = std::mem::take(&mut chunk.records);
            (chunk.data, positions) = self.normalize(normalizer.as_ref(), &records);
        }
        let rules = Arc::clone(&self.ctx.rules);
        let mut hits = self.ctx.hit_vecs.take();
        let mut excepted: Vec<(u32, usize)> = Vec::new();
        let mut tenants = TenantIndex::default();
        let mut maxima: Vec<i64> = Vec::new();
        // The chunk's tenants as hits carry them, by index.
        let mut small: Vec<SmallStr> = Vec::new();
        let mut events = Vec::new();
        let mut lines = 0u64;
        let mut line_no = 0u32;
        let data = &chunk.data;
        let mut start = 0usize;
        let mut scratch = self.scratch.take().unwrap_or_default();
        let mut memo = std::mem::take(&mut self.memo);
        // The rules an event visits, as bits.
        let mut visits = Vec::new();
        while start < data.len() {
            let end = memchr::memchr(b'\n', &data[start..]).map_or(data.len(), |i| start + i);
            let raw = &data[start..end];
            let line_start = start;
            start = end + 1;
            let this_line = line_no;
            line_no += 1;
            let line = raw.strip_suffix(b"\r").unwrap_or(raw);
            if line.iter().all(u8::is_ascii_whitespace) {
                continue;
            }
            lines += 1;
            let offset = match positions.get(this_line as usize) {
                Some(&p) => p,
                None => chunk.offset + line_start as u64,
            };
            let mut d = scratch.recycle();
            if let Err(e) = d.decode(&rules.trie, line) {
                self.reject(
                    (RejectReason::InvalidJson, e.to_string(), None),
                    offset,
                    line,
                    false,
                );
                scratch = d.recycle();
                continue;
            }
            let event = match self.identify(&rules, &d) {
                Ok(v) => v,
                Err(r) => {
                    self.reject(r, offset, line, false);
                    scratch = d.recycle();
                    continue;
                }
            };
            let (tenant, ts) = event;
            let ti = tenants.index(tenant) as usize;
            if ti == maxima.len() {
                maxima.push(i64::MIN);
                small.push(SmallStr::from(tenant));
            }
            let prior_max = maxima[ti];
            maxima[ti] = prior_max.max(ts);
            events.push(EventMeta {
                tenant: u16::try_from(ti).unwrap_or(u16::MAX),
                ts,
                prior_max,
                start: line_start as u32,
                len: line.len() as u32,
                line: this_line,
            });
            let mut event_id: Option<EventId> = None;
            memo.reset(&rules.filters);
            let at = HitBase {
                epoch: chunk.seq,
                source: chunk.source,
                ts,
                prior_max,
                tenant,
                hit_tenant: &small[ti],
            };
            let mut id = || {
                event_id
                    .get_or_insert_with(|| match d.first(rules.id_slot).and_then(Val::as_str) {
                        Some(id) => EventId::new(id),
                        None => EventId::new(&derived_id(offset, line)),
                    })
                    .clone()
            };
            for ri in rules.event_rules(&d, &mut visits) {
                if let Matched::Excepted = rules.matches(ri, &d, &mut memo, &at, &mut id, &mut hits)
                {
                    excepted.push((ri, ti));
                }
            }
            scratch = d.recycle();
        }
        self.scratch = Some(scratch);
        self.memo = memo;
        {
            let mut per_tenant = vec![0u64; tenants.names().len()];
            for e in &events {
                per_tenant[usize::from(e.tenant)] += 1;
            }
            let mut st = self.ctx.stats.borrow_mut();
            st.lines += lines;
            st.events += events.len() as u64;
            for (t, n) in tenants.names().iter().zip(per_tenant) {
                match st.events_by_tenant.get_mut(t) {
                    Some(c) => *c += n,
                    None => {
                        st.events_by_tenant.insert(t.clone(), n);
                    }
                }
            }
            for (rule, ti) in excepted {
                let tenant = tenants.name(ti as u32).to_owned();
                *st.excepted.entry((rule, tenant)).or_default() += 1;
            }
        }
        let summary = EpochSummary {
            epoch: chunk.seq,
            source: chunk.source,
            tenants: tenants.names().iter().cloned().zip(maxima).collect(),
            wall_ms: chunk.wall_ms,
            checkpoint: chunk.barrier,
        };
        let parsed = ParsedChunk {
            epoch: chunk.seq,
            source: chunk.source,
            offset: chunk.offset,
            data: chunk.data,
            tenants: tenants.into_names(),
            events,
            positions,
        };
        self.ctx.hit_vecs.note(hits.len());
        (hits, parsed, summary)
    }

    /// The event's tenant and time, or why the line is rejected.
    fn identify<'d>(
        &'d self,
        rules: &Compiled,
        d: &'d Decoded<'_>,
    ) -> Result<(&'d str, i64), Rejected> {
        let tenant = match d.first(rules.tenant_slot) {
            None | Some(Val::Null) => match &self.ctx.default_tenant {
                Some(t) => t.as_str(),
                None => {
                    return Err((
                        RejectReason::MissingTenant,
                        "event has no tenant_id and no default tenant was given (--tenant)"
                            .to_owned(),
                        None,
                    ));
                }
            },
            Some(v) => {
                let Some(t) = v.as_str().filter(|t| is_valid_tenant(t)) else {
                    return Err((
                        RejectReason::InvalidTenant,
                        format!(
                            "tenant_id {} does not match ^[a-z0-9][a-z0-9_]{{0,62}}$",
                            show(v)
                        ),
                        None,
                    ));
                };
                if let Some(default) = &self.ctx.default_tenant
                    && default.as_str() != t
                {
                    return Err((
                        RejectReason::TenantMismatch,
                        format!("tenant_id `{t}` differs from the input's tenant `{default}`"),
                        Some(default.as_str().to_owned()),
                    ));
                }
                t
            }
        };
        let ts = match d.first(rules.ts_slot) {
            None | Some(Val::Null) => {
                return Err((
                    RejectReason::MissingTimestamp,
                    "event has no @timestamp".to_owned(),
                    Some(tenant.to_owned()),
                ));
            }
            Some(v) => {
                let ts = match v {
                    Val::Num(n) => epoch_millis(*n),
                    _ => v.as_str().and_then(parse_rfc3339),
                };
                ts.ok_or_else(|| {
                    (
                        RejectReason::InvalidTimestamp,
                        format!(
                            "@timestamp {} is neither RFC 3339 nor epoch milliseconds",
                            show(v)
                        ),
                        Some(tenant.to_owned()),
                    )
                })?
            }
        };
        Ok((tenant, ts))
    }
}

fn show(v: &Val<'_>) -> String {
    match v {
        Val::Str(s) => format!("`{s}`"),
        Val::Owned(s) => format!("`{s}`"),
        Val::Num(n) => format!("`{n}`"),
        Val::Bool(b) => format!("`{b}`"),
        Val::Null => "`null`".to_owned(),
    }
}

/// `event.id` for an event that has none: 128 bits of xxh3 over the line's byte offset and its
/// content, so two runs over one file agree and identical lines at different offsets differ.
pub(crate) fn derived_id(offset: u64, line: &[u8]) -> String {
    let h = xxh3_128_with_seed(line, offset);
    format!("{h:032x}")
}

/// A rejected line: reason, detail, and the tenant it belongs to when known.
type Rejected = (RejectReason, String, Option<String>);

/// The window key of a hit ([`Hit::key`]): xxh3-128 over (tenant, rule identity, group values),
/// length-prefixed, so that every process routes a key to the same worker and a restored key
/// meets the new hits of the same rule version.
pub(crate) fn window_key(tenant: &str, rule_identity: u64, group: &Group) -> [u64; 2] {
    let mut x = Xxh3::new();
    x.update(&(tenant.len() as u64).to_le_bytes());
    x.update(tenant.as_bytes());
    x.update(&rule_identity.to_le_bytes());
    for g in group.iter_bytes() {
        x.update(&(g.len() as u64).to_le_bytes());
        x.update(g);
    }
    let h = x.digest128();
    [(h >> 64) as u64, h as u64]
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn derived_ids_depend_on_position_and_content() {
        let a = derived_id(0, b"{}");
        assert_eq!(a.len(), 32);
        assert_eq!(a, derived_id(0, b"{}"));
        assert_ne!(a, derived_id(3, b"{}"));
        assert_ne!(a, derived_id(0, b"{ }"));
    }

    #[test]
    fn window_keys_are_pinned() {
        // Routing and restored state rely on keys agreeing across processes and releases.
        let alice = window_key("acme", 0, &["alice"].into_iter().collect());
        assert_eq!(
            alice,
            // Computed independently with Python's `xxhash.xxh3_128` over the same bytes.
            [0x1224_b2f2_d359_686c, 0xa321_6981_1b3c_fcd2],
            "the key encoding changed: checkpoints of earlier releases would not restore"
        );
        assert_ne!(
            alice,
            window_key("acme", 1, &["alice"].into_iter().collect())
        );
        assert_ne!(
            window_key("ac", 0, &["mealice"].into_iter().collect()),
            alice
        );
    }
}
