//! The loaded rule set as the engine executes it: decode slots, filters, group slots, window
//! specs, and the conversion of firings into alerts.

use std::borrow::Cow;
use std::collections::BTreeMap;

use vigil_dsl::{
    AggKind, EventView, FieldId, RuleKind, RulePlan, RuleSet, ValueRef, WindowKind as DslWindow,
};
use vigil_model::{Alert, AlertWindow, Severity, TenantId, Threshold, alert_id};
use vigil_operators::window::{AggFn, WindowKind};
use vigil_operators::{
    EventId, Firing, Health, Hit, Measure, RuleSpec, SequenceSpec, SmallStr, WindowSpec,
};

use crate::decode::{Decoded, FieldTrie, Val};
use crate::filter::{Filters, Memo, Node, RuleIndex, set_bits};
use crate::quiet::Quiet;
use crate::source::window_key;

/// Most contributing event ids an alert lists.
pub const MAX_EVENT_REFS: usize = 10;

/// The per-rule facts the source operator needs.
#[derive(Debug)]
pub(crate) struct SourceRule {
    pub(crate) plan: RulePlan,
    pub(crate) group: Vec<u16>,
    pub(crate) distinct: Option<u16>,
    /// The numeric field a sum, min, max or avg reads.
    pub(crate) number: Option<u16>,
    pub(crate) title: Vec<u16>,
    /// The filter over [`Compiled::filters`].
    pub(crate) filter: Node,
    /// A sequence's steps, then its absent step, then `until`, over [`Compiled::filters`]: bit
    /// `i` of [`Hit::steps`](vigil_operators::Hit) is set when `steps[i]` holds (see
    /// [`rule_spec`]); `None` marks a step the rule does not have.
    pub(crate) steps: Vec<Option<Node>>,
}

/// The compiled rule set: decode trie, source rules and window specs, in rule-index order.
#[derive(Debug)]
pub struct Compiled {
    pub(crate) trie: FieldTrie,
    pub(crate) ts_slot: u16,
    pub(crate) tenant_slot: u16,
    pub(crate) id_slot: u16,
    pub(crate) rules: Vec<SourceRule>,
    /// The distinct tests of every rule's predicates.
    pub(crate) filters: Filters,
    pub(crate) specs: Vec<RuleSpec>,
    /// Per rule: xxh3 of (id, version, plan hash). Window keys and checkpoints use it, so that
    /// state survives rules being added or removed around an unchanged rule.
    identities: Vec<u64>,
    /// Dotted paths by slot.
    pub(crate) paths: Vec<String>,
    /// Per rule: the rules over alerts that read its alerts.
    readers: Vec<Vec<u32>>,
    /// The rules over events (level 0), the ones the source offers each event to, by the
    /// values their gates require.
    event_rules: RuleIndex,
    /// Per rule: its suppression across groups, applied by the alert stage.
    quiet: Vec<Option<Quiet>>,
}

/// The source of the hits a rule over alerts makes from alerts: never late (see
/// `docs/ARCHITECTURE.md`, Rules over alerts), so no source clock governs them.
pub(crate) const ALERT_SOURCE: u16 = u16::MAX;

/// What one rule makes of one decoded event.
pub(crate) enum Matched {
    /// The filter does not hold, or the event lacks what the rule keys or aggregates on.
    No,
    /// One of the rule's exceptions takes the event.
    Excepted,
    /// A hit for the rule's window state, pushed to the output.
    Hit,
}

/// Where a hit comes from: its epoch, source and time; the event id is computed on first use.
pub(crate) struct HitBase<'a> {
    pub(crate) epoch: u64,
    pub(crate) source: u16,
    pub(crate) ts: i64,
    pub(crate) prior_max: i64,
    pub(crate) tenant: &'a str,
    /// The same, as hits carry it (kept beside `tenant`: every rule reads the tenant, and a
    /// `SmallStr` checks its bytes as UTF-8 on each read).
    pub(crate) hit_tenant: &'a SmallStr,
}

impl Compiled {
    /// Prepares a rule set for execution.
    pub fn new(set: &RuleSet) -> Compiled {
        let mut paths = set.fields.clone();
        let mut slot_of = |p: &str| -> u16 {
            let i = match paths.iter().position(|q| q == p) {
                Some(i) => i,
                None => {
                    paths.push(p.to_owned());
                    paths.len() - 1
                }
            };
            u16::try_from(i).unwrap_or(u16::MAX)
        };
        let ts_slot = slot_of("@timestamp");
        let tenant_slot = slot_of("tenant_id");
        let id_slot = slot_of("event.id");
        let slot = |f: FieldId| f.0;
        let mut rules = Vec::new();
        let mut specs = Vec::new();
        let mut identities = Vec::new();
        let mut filters = Filters::default();
        for plan in &set.rules {
            identities.push(identity(plan));
            let spec = rule_spec(&plan.kind);
            let group = match &plan.kind {
                RuleKind::Single(Some(s)) => s.by.iter().map(|&f| slot(f)).collect(),
                kind => kind
                    .group_by()
                    .map_or_else(Vec::new, |g| g.iter().map(|&f| slot(f)).collect()),
            };
            let agg_field = match &plan.kind {
                RuleKind::Aggregate(a) => a.agg.field().map(slot),
                _ => None,
            };
            let agg = match &spec {
                RuleSpec::Window(w) => w.agg,
                RuleSpec::Sequence(_) => AggFn::Count,
            };
            let distinct = agg_field.filter(|_| agg == AggFn::Distinct);
            let number = agg_field.filter(|_| agg != AggFn::Distinct);
            let filter = filters.compile(&plan.filter);
            rules.push(SourceRule {
                plan: plan.clone(),
                group,
                distinct,
                number,
                title: plan.alert_fields.iter().map(|&f| slot(f)).collect(),
                filter,
                steps: match &plan.kind {
                    RuleKind::Sequence(q) => q
                        .steps
                        .iter()
                        .map(|s| Some(&s.predicate))
                        .chain([q.absent.as_ref().map(|a| &a.predicate), q.until.as_ref()])
                        .map(|p| p.map(|p| filters.compile(p)))
                        .collect(),
                    _ => Vec::new(),
                },
            });
            specs.push(spec);
        }
        let readers = set
            .rules
            .iter()
            .map(|read| {
                (0..set.rules.len() as u32)
                    .filter(|&r| {
                        let reader = &set.rules[r as usize];
                        reader.input.reads(&read.id, read.level)
                    })
                    .collect()
            })
            .collect();
        let event_rules = RuleIndex::new(
            &filters,
            rules.len(),
            (0..rules.len() as u32)
                .filter(|&r| set.rules[r as usize].level == 0)
                .map(|r| {
                    let rule = &rules[r as usize];
                    (
                        r,
                        filters.gate(&rule.filter, rule.steps.iter().flatten(), &paths),
                    )
                }),
        );
        Compiled {
            readers,
            event_rules,
            quiet: set.rules.iter().map(Quiet::of).collect(),
            trie: FieldTrie::new(&paths),
            ts_slot,
            tenant_slot,
            id_slot,
            rules,
            filters,
            specs,
            identities,
            paths,
        }
    }

    /// The identity of rule `i` (see [`Compiled::identities`]).
    pub(crate) fn identity(&self, i: u32) -> u64 {
        self.identities[i as usize]
    }

    /// Every rule's identity, in rule-index order: xxh3 of its id, version and plan hash.
    pub fn identities(&self) -> impl Iterator<Item = u64> + '_ {
        self.identities.iter().copied()
    }

    /// Number of rules.
    pub fn len(&self) -> usize {
        self.rules.len()
    }

    /// Whether there are no rules.
    pub fn is_empty(&self) -> bool {
        self.rules.is_empty()
    }

    /// The id of rule `i`.
    pub fn rule_id(&self, i: u32) -> &str {
        &self.rules[i as usize].plan.id
    }

    /// Stages of the dataflow: 1 over events, one more per level of rules over alerts.
    pub fn stages(&self) -> u32 {
        self.rules
            .iter()
            .map(|r| r.plan.level)
            .max()
            .map_or(1, |l| l + 1)
    }

    /// The rules over events that the event `d` may match (the others' gates fail), in
    /// rule-index order; `bits` is scratch space.
    pub(crate) fn event_rules<'b>(
        &self,
        d: &Decoded<'_>,
        bits: &'b mut Vec<u64>,
    ) -> impl Iterator<Item = u32> + 'b {
        self.event_rules.visits(|slot| d.refs(slot), bits);
        set_bits(bits)
    }

    /// The level of rule `i`: 0 over events (`RulePlan::level`).
    pub(crate) fn level(&self, i: u32) -> u32 {
        self.rules[i as usize].plan.level
    }

    /// Rule `i`'s suppression across groups, if it has one.
    pub(crate) fn quiet(&self, i: u32) -> Option<&Quiet> {
        self.quiet[i as usize].as_ref()
    }

    /// The rules over alerts that read rule `i`'s alerts.
    pub(crate) fn readers(&self, i: u32) -> &[u32] {
        &self.readers[i as usize]
    }

    /// What rule `ri` makes of the decoded event `d` (`memo` reset for `d`); a hit goes to
    /// `out`.
    pub(crate) fn matches(
        &self,
        ri: u32,
        d: &Decoded<'_>,
        memo: &mut Memo,
        at: &HitBase<'_>,
        event_id: &mut dyn FnMut() -> EventId,
        out: &mut Vec<Hit>,
    ) -> Matched {
        let rule = &self.rules[ri as usize];
        if !rule.plan.tenants.admits(at.tenant) || !self.filters.eval(&rule.filter, d, memo) {
            return Matched::No;
        }
        // A sequence takes an event one of its steps takes.
        let steps = match &rule.plan.kind {
            RuleKind::Sequence(_) => match rule.step_mask(&self.filters, d, memo) {
                0 => return Matched::No,
                m => m,
            },
            _ => 0,
        };
        if rule
            .plan
            .exceptions
            .iter()
            .any(|x| x.applies(at.tenant, at.ts, d))
        {
            return Matched::Excepted;
        }
        // A stateful rule skips an event without its group: it belongs to no group. A
        // suppressed single-event rule alerts on it anyway, keyed by an empty value.
        let single = matches!(rule.plan.kind, RuleKind::Single(_));
        let builder = &mut memo.group;
        builder.clear();
        for &s in &rule.group {
            match d.first(s).and_then(canonical) {
                Some(v) => builder.push(&v),
                None if single => builder.push(""),
                None => return Matched::No,
            }
        }
        let group = builder.group();
        // A rule reads at most one of the two. Sums, minima, maxima and averages read numbers
        // only: an event whose field is absent, null or not a number does not contribute.
        let measure = match (rule.distinct, rule.number) {
            (Some(s), _) => match d.first(s).and_then(canonical) {
                Some(v) => Measure::distinct(xxhash_rust::xxh3::xxh3_128(v.as_bytes())),
                None => return Matched::No,
            },
            (None, Some(s)) => match d.first(s) {
                Some(&Val::Num(n)) if n.is_finite() => Measure::Number(n),
                _ => return Matched::No,
            },
            (None, None) => Measure::None,
        };
        let title_values = rule
            .title
            .iter()
            .map(|&s| d.first(s).and_then(canonical).map(Cow::into_owned))
            .collect();
        out.push(Hit {
            epoch: at.epoch,
            key: window_key(at.tenant, self.identity(ri), &group),
            rule: ri,
            source: at.source,
            ts: at.ts,
            prior_max: at.prior_max,
            tenant: at.hit_tenant.clone(),
            event_id: event_id(),
            group,
            measure,
            steps,
            title_values,
        });
        Matched::Hit
    }

    /// An alert as the event a rule over alerts reads, one JSON line: `@timestamp`,
    /// `tenant_id`, `event.id` (the alert id), `event.kind` (`alert`), `event.risk_score`,
    /// `rule.id`, `rule.version`, `rule.severity`, `message` (the title), `tags`, and the
    /// fields the alert names — its group, and for a single-event rule the fields its title,
    /// description and severity conditions render — typed as the schema types them.
    pub(crate) fn alert_event(
        &self,
        rule: u32,
        alert: &Alert,
        title_values: &[Option<String>],
    ) -> Vec<u8> {
        use serde_json::{Map, Value, json};
        let mut root = Map::new();
        let mut put = |path: &str, v: Value| {
            let mut node = &mut root;
            let mut parts = path.split('.').peekable();
            while let Some(p) = parts.next() {
                if parts.peek().is_none() {
                    node.insert(p.to_owned(), v);
                    return;
                }
                let child = node
                    .entry(p.to_owned())
                    .or_insert_with(|| Value::Object(Map::new()));
                let Value::Object(m) = child else { return };
                node = m;
            }
        };
        let typed = |path: &str, v: &str| {
            let ty = vigil_dsl::Schema::canonical().field(path).map(|f| f.ty);
            let parsed = match ty {
                Some(t) if t.is_numeric() => v.parse::<f64>().ok().map(Value::from),
                Some(vigil_dsl::FieldType::Boolean) => v.parse::<bool>().ok().map(Value::from),
                _ => None,
            };
            parsed.unwrap_or_else(|| Value::from(v))
        };
        let plan = &self.rules[rule as usize].plan;
        let rendered = plan
            .alert_fields
            .iter()
            .zip(title_values)
            .filter_map(|(f, v)| Some((self.paths[usize::from(f.0)].as_str(), v.as_deref()?)));
        for (path, v) in alert
            .group
            .iter()
            .map(|(k, v)| (k.as_str(), v.as_str()))
            .chain(rendered)
        {
            if path != "event.id" {
                put(path, typed(path, v));
            }
        }
        put("@timestamp", json!(alert.timestamp));
        put("tenant_id", json!(alert.tenant_id.as_str()));
        put("event.id", json!(alert.id));
        put("event.kind", json!("alert"));
        put("event.risk_score", json!(alert.risk_score));
        put("rule.id", json!(alert.rule_id));
        put("rule.version", json!(alert.rule_version));
        put("rule.severity", json!(alert.severity.as_str()));
        put("message", json!(alert.title));
        put("tags", json!(alert.tags));
        serde_json::to_vec(&Value::Object(root)).unwrap_or_default()
    }

    /// A rule's group fields by path, with the values of a firing.
    fn group_map(&self, rule: &SourceRule, values: &[String]) -> BTreeMap<String, String> {
        rule.group
            .iter()
            .map(|&s| self.paths[usize::from(s)].clone())
            .zip(values.iter().cloned())
            .collect()
    }

    /// The health alert of a health event ([`Firing::health`]): rule id
    /// `vigil.health.key_cap` or `vigil.health.alert_rate`, the rule it is about in its group,
    /// one per rule, tenant and period (the id anchors at the period's start).
    pub(crate) fn health_alert(&self, f: &Firing, detected_at: i64) -> Alert {
        let rule = &self.rules[f.rule as usize].plan.id;
        let (id, title, description) = match f.health {
            Some(Health::KeyCap { cap }) => (
                "vigil.health.key_cap",
                format!("Live-key cap reached for rule {rule}: new keys shed"),
                format!(
                    "The tenant holds {cap} live window keys on one worker, its cap: events of \
                     {rule} that would open another key are dropped (counted in \
                     vigil_engine_shed_total{{reason=\"key_cap\"}}) until keys expire. One alert \
                     per rule and hour of event time."
                ),
            ),
            _ => (
                "vigil.health.alert_rate",
                format!("Alert-rate cap reached for rule {rule}: alerts shed"),
                format!(
                    "Rule {rule} raised {} alerts for the tenant within one minute of event \
                     time, its cap: the rest of that minute's are dropped (counted in \
                     vigil_engine_shed_total{{reason=\"alert_rate\"}}). One alert per rule and \
                     minute.",
                    f.value
                ),
            ),
        };
        let group: BTreeMap<String, String> = [("rule.id".to_owned(), rule.clone())].into();
        Alert {
            id: alert_id(
                &f.tenant,
                id,
                1,
                group.iter().map(|(k, v)| (k.as_str(), v.as_str())),
                f.end,
            ),
            schema_version: vigil_model::SCHEMA_VERSION,
            tenant_id: TenantId::parse(&f.tenant).unwrap_or_else(|_| unreachable_tenant(&f.tenant)),
            rule_id: id.to_owned(),
            rule_version: 1,
            title,
            severity: Severity::Medium,
            risk_score: 0,
            tags: vec!["vigil.health".to_owned()],
            description: Some(description),
            group,
            window: AlertWindow {
                start: f.start,
                end: f.end,
            },
            value: f.value,
            timestamp: f.end,
            detected_at,
            events: Vec::new(),
            event_count: 0,
        }
    }

    /// Builds the alert for a firing.
    pub(crate) fn alert(&self, f: Firing, detected_at: i64) -> Alert {
        let rule = &self.rules[f.rule as usize];
        let plan = &rule.plan;
        // The fields the alert renders (title, description, severity conditions): a
        // single-event rule's from its event, a stateful rule's from its group.
        let (group, view) = if rule.specs_single() {
            // Its event, and the suppression key of a suppressed rule.
            let mut group: BTreeMap<String, String> = self.group_map(rule, &f.group);
            group.insert("event.id".to_owned(), f.event_id.clone());
            let view = AlertView(
                plan.alert_fields
                    .iter()
                    .zip(&f.title_values)
                    .filter_map(|(&id, v)| Some((id, v.as_deref()?)))
                    .collect(),
            );
            (group, view)
        } else {
            let group = self.group_map(rule, &f.group);
            let ids = plan.kind.group_by().unwrap_or_default();
            let view = AlertView(
                ids.iter()
                    .zip(&f.group)
                    .map(|(&id, v)| (id, v.as_str()))
                    .collect(),
            );
            (group, view)
        };
        let value_of = |p: &str| {
            view.0
                .iter()
                .find(|(f, _)| self.paths[usize::from(f.0)] == p)
                .map(|(_, v)| *v)
        };
        let title = plan.title.render(value_of);
        let description = plan.description.as_ref().map(|d| d.render(value_of));
        let severity = plan
            .severity_if
            .iter()
            .find(|(_, p)| p.eval(&view))
            .map_or(plan.severity, |(s, _)| *s);
        let id = alert_id(
            &f.tenant,
            &plan.id,
            plan.version,
            group.iter().map(|(k, v)| (k.as_str(), v.as_str())),
            f.end,
        );
        Alert {
            id,
            schema_version: vigil_model::SCHEMA_VERSION,
            // The tenant was validated when the event was decoded.
            tenant_id: TenantId::parse(&f.tenant).unwrap_or_else(|_| unreachable_tenant(&f.tenant)),
            rule_id: plan.id.clone(),
            rule_version: plan.version,
            title,
            severity,
            risk_score: plan.risk_score,
            tags: plan.tags.clone(),
            description,
            group,
            window: AlertWindow {
                start: f.start,
                end: f.end,
            },
            value: f.value,
            timestamp: f.end,
            detected_at,
            events: f.events,
            event_count: f.event_count,
        }
    }
}

/// The values an alert renders, by field: canonical strings, offered to a severity condition as
/// a string, and as a number or boolean when they read as one (the checker has made sure each
/// test meets the field's type).
struct AlertView<'a>(Vec<(FieldId, &'a str)>);

impl EventView for AlertView<'_> {
    fn any_value(&self, field: FieldId, f: &mut dyn FnMut(ValueRef<'_>) -> bool) -> bool {
        let Some(&(_, v)) = self.0.iter().find(|(id, _)| *id == field) else {
            return false;
        };
        f(ValueRef::Str(v))
            || v.parse::<f64>().is_ok_and(|n| f(ValueRef::Num(n)))
            || v.parse::<bool>().is_ok_and(|b| f(ValueRef::Bool(b)))
    }
}

/// What the window operator runs for a rule.
fn rule_spec(kind: &RuleKind) -> RuleSpec {
    let ms = |v: u64| i64::try_from(v).unwrap_or(i64::MAX);
    match kind {
        // A suppressed single-event rule is a count of at least one over a 1 ms sliding window
        // per key, quiet for the suppression after each alert: the first match of a key
        // alerts, the next one after the quiet period alerts again.
        RuleKind::Single(Some(s)) => RuleSpec::Window(WindowSpec {
            kind: WindowKind::Sliding,
            agg: AggFn::Count,
            window_ms: 1,
            threshold: Threshold::at_least(1.0),
            suppress_ms: ms(s.ms),
            max_refs: MAX_EVENT_REFS,
        }),
        RuleKind::Single(None) => RuleSpec::Window(WindowSpec {
            kind: WindowKind::Single,
            agg: AggFn::Count,
            window_ms: 0,
            threshold: Threshold::at_least(1.0),
            suppress_ms: 0,
            max_refs: MAX_EVENT_REFS,
        }),
        RuleKind::Aggregate(a) => RuleSpec::Window(WindowSpec {
            kind: match a.window {
                DslWindow::Sliding => WindowKind::Sliding,
                DslWindow::Tumbling => WindowKind::Tumbling,
                DslWindow::Hopping { slide_ms } => WindowKind::Hopping {
                    slide_ms: ms(slide_ms),
                },
                DslWindow::Session { max_ms } => WindowKind::Session { max_ms: ms(max_ms) },
                DslWindow::FirstSeen => WindowKind::FirstSeen,
            },
            agg: match a.agg {
                AggKind::Count => AggFn::Count,
                AggKind::DistinctCount(_) => AggFn::Distinct,
                AggKind::Sum(_) => AggFn::Sum,
                AggKind::Min(_) => AggFn::Min,
                AggKind::Max(_) => AggFn::Max,
                AggKind::Avg(_) => AggFn::Avg,
            },
            window_ms: ms(a.window_ms),
            threshold: a.threshold,
            suppress_ms: ms(a.suppress_ms),
            max_refs: MAX_EVENT_REFS,
        }),
        RuleKind::Sequence(q) => {
            // Bits of `Hit::steps`: the steps in order, then the absent step, then `until`
            // (see `step_mask`).
            let n = q.steps.len() as u8;
            RuleSpec::Sequence(SequenceSpec {
                stages: (0..n)
                    .flat_map(|i| std::iter::repeat_n(i, q.steps[usize::from(i)].runs as usize))
                    .collect(),
                absent: q.absent.as_ref().map(|_| n),
                until: q.until.as_ref().map(|_| n + 1),
                span_ms: ms(q.span_ms),
                suppress_ms: ms(q.suppress_ms),
                max_refs: MAX_EVENT_REFS,
            })
        }
    }
}

impl SourceRule {
    /// The steps of a sequence `e` matches, as the bits [`rule_spec`] numbers them (0 for other
    /// rules).
    pub(crate) fn step_mask<E: EventView + ?Sized>(
        &self,
        filters: &Filters,
        e: &E,
        memo: &mut Memo,
    ) -> u64 {
        let mut mask = 0u64;
        for (i, step) in self.steps.iter().enumerate() {
            if step.as_ref().is_some_and(|n| filters.eval(n, e, memo)) {
                mask |= 1 << i;
            }
        }
        mask
    }
}

/// xxh3-64 over the length-prefixed id, the version and the plan hash: equal exactly when the
/// rule is unchanged (`SEMANTICS.md`, Alerts).
fn identity(plan: &RulePlan) -> u64 {
    let mut x = xxhash_rust::xxh3::Xxh3::new();
    x.update(&(plan.id.len() as u64).to_le_bytes());
    x.update(plan.id.as_bytes());
    x.update(&plan.version.to_le_bytes());
    x.update(plan.plan_hash.as_bytes());
    x.digest()
}

#[cold]
fn unreachable_tenant(t: &str) -> TenantId {
    panic!("tenant `{t}` reached the sink without validation")
}

impl SourceRule {
    fn specs_single(&self) -> bool {
        matches!(self.plan.kind, RuleKind::Single(_))
    }
}

/// The canonical string of a value used as a group key or distinct value; `None` for `null`.
pub(crate) fn canonical<'v>(v: &'v Val<'_>) -> Option<Cow<'v, str>> {
    match v {
        Val::Str(s) => Some(Cow::Borrowed(s)),
        Val::Owned(s) => Some(Cow::Borrowed(s)),
        Val::Num(n) if n.fract() == 0.0 && n.abs() < 9_007_199_254_740_992.0 => {
            Some(Cow::Owned(format!("{}", *n as i64)))
        }
        Val::Num(n) => Some(Cow::Owned(format!("{n}"))),
        Val::Bool(b) => Some(Cow::Owned(b.to_string())),
        Val::Null => None,
    }
}
