//! Rule filters compiled over one table of distinct tests, so that a test many rules share
//! (`event.category == "process"` opens half of a typical library) runs once per event rather
//! than once per rule.
//!
//! Every predicate of the rule set (filters, sequence steps, `until`) is rewritten into a
//! [`Node`] tree whose leaves index [`Filters::atoms`]; a [`Memo`] holds each atom's result for
//! the event at hand. Results are identical to [`Predicate::eval`]: the trees keep the
//! predicates' shape and short-circuit order, and an atom is pure in the event.

use std::collections::HashMap;

use vigil_dsl::{EventView, FieldId, Predicate, Test};
use vigil_operators::GroupBuilder;

/// A predicate whose tests are atoms of a [`Filters`] table.
#[derive(Debug)]
pub(crate) enum Node {
    Const(bool),
    And(Box<[Node]>),
    Or(Box<[Node]>),
    Not(Box<Node>),
    Atom(u32),
    /// A conjunction of atoms and negated atoms ([`NEGATED`] set), the shape of most filters
    /// and steps: evaluated in one loop, in order, where [`Node::And`] recurses per conjunct.
    Literals(Box<[u32]>),
}

/// The bit of a [`Node::Literals`] entry that negates its atom.
const NEGATED: u32 = 1 << 31;

/// The distinct tests of a rule set.
#[derive(Debug, Default)]
pub(crate) struct Filters {
    atoms: Vec<(FieldId, Test)>,
    /// Atom by its rendering (a `Test` holds regexes, which do not compare).
    index: HashMap<String, u32>,
}

/// What the rules compute for one event: each atom's result (0 not yet evaluated, 1 false,
/// 2 true), and the buffer a hit's group values are packed in.
#[derive(Debug, Default)]
pub(crate) struct Memo {
    atoms: Vec<u8>,
    pub(crate) group: GroupBuilder,
}

impl Memo {
    /// Forgets the previous event's results.
    pub(crate) fn reset(&mut self, filters: &Filters) {
        self.atoms.clear();
        self.atoms.resize(filters.atoms.len(), 0);
    }
}

impl Filters {
    /// Rewrites `p` over this table, adding the tests it has not seen yet.
    pub(crate) fn compile(&mut self, p: &Predicate) -> Node {
        let all = |s: &mut Self, ps: &[Predicate]| ps.iter().map(|p| s.compile(p)).collect();
        match p {
            Predicate::Const(b) => Node::Const(*b),
            Predicate::And(ps) => match ps.iter().map(literal).collect::<Option<Vec<_>>>() {
                Some(literals) => Node::Literals(
                    literals
                        .into_iter()
                        .map(|(f, t, negated)| {
                            self.atom_of(f, t) | if negated { NEGATED } else { 0 }
                        })
                        .collect(),
                ),
                None => Node::And(all(self, ps)),
            },
            Predicate::Or(ps) => Node::Or(all(self, ps)),
            Predicate::Not(p) => Node::Not(Box::new(self.compile(p))),
            Predicate::Test(f, t) => Node::Atom(self.atom_of(*f, t)),
        }
    }

    /// The atom of test `t` on `f`, added if new.
    fn atom_of(&mut self, f: FieldId, t: &Test) -> u32 {
        let key = format!("{}\u{0}{t:?}", f.0);
        let next = self.atoms.len() as u32;
        let id = *self.index.entry(key).or_insert(next);
        if id == next {
            self.atoms.push((f, t.clone()));
        }
        id
    }

    /// Number of distinct tests.
    #[cfg(test)]
    fn len(&self) -> usize {
        self.atoms.len()
    }

    /// Evaluates `n` on `e`, reusing and filling `memo` (reset for `e`).
    pub(crate) fn eval<E: EventView + ?Sized>(&self, n: &Node, e: &E, memo: &mut Memo) -> bool {
        match n {
            Node::Const(b) => *b,
            Node::And(ns) => ns.iter().all(|n| self.eval(n, e, memo)),
            Node::Or(ns) => ns.iter().any(|n| self.eval(n, e, memo)),
            Node::Not(n) => !self.eval(n, e, memo),
            Node::Atom(i) => self.atom(*i, e, memo),
            Node::Literals(ls) => ls
                .iter()
                .all(|&l| self.atom(l & !NEGATED, e, memo) != (l & NEGATED != 0)),
        }
    }

    /// Evaluates atom `i` on `e` (once per event: `memo` keeps the result).
    #[inline]
    pub(crate) fn atom<E: EventView + ?Sized>(&self, i: u32, e: &E, memo: &mut Memo) -> bool {
        match memo.atoms[i as usize] {
            0 => self.test(i as usize, e, memo),
            m => m == 2,
        }
    }

    /// Runs atom `i`'s test on `e` and keeps the result. Not inlined: the memoized path of
    /// [`Filters::atom`], taken for most atoms, stays small in the loops that call it.
    #[inline(never)]
    fn test<E: EventView + ?Sized>(&self, i: usize, e: &E, memo: &mut Memo) -> bool {
        let (f, t) = &self.atoms[i];
        let r = match t {
            Test::Exists => e.has(*f),
            t => e.any_value(*f, &mut |v| t.test(v)),
        };
        memo.atoms[i] = 1 + u8::from(r);
        r
    }
}

/// The rules over events by the string their gate ([`Node::gate`]) requires of a field, so
/// that an event visits only the rules whose gate it can pass: `event.category == "process"`
/// opens a third of a typical library, and an authentication event need not visit those
/// rules at all. A rule whose gate is not an equality or `in` over strings is always visited.
#[derive(Debug, Default)]
pub(crate) struct RuleIndex {
    /// Bit per rule index: the rules every event visits.
    always: Vec<u64>,
    /// Per indexed field: its slot, and per value the rules gated on it.
    fields: Vec<(u16, ByValue)>,
}

/// Rules (bits by rule index) by the value their gate requires.
type ByValue = HashMap<Box<str>, Vec<u64>>;

impl RuleIndex {
    /// Indexes `rules` (rule index and gate) among `n` rules; `filters` holds the gates' atoms.
    pub(crate) fn new(
        filters: &Filters,
        n: usize,
        rules: impl IntoIterator<Item = (u32, Option<u32>)>,
    ) -> RuleIndex {
        let words = n.div_ceil(64);
        let mut index = RuleIndex {
            always: vec![0; words],
            fields: Vec::new(),
        };
        for (rule, gate) in rules {
            let (word, bit) = (rule as usize / 64, 1u64 << (rule % 64));
            let (field, values): (FieldId, &[String]) =
                match gate.map(|g| &filters.atoms[g as usize]) {
                    Some((f, Test::EqStr(v))) => (*f, std::slice::from_ref(v)),
                    Some((f, Test::InStr(vs))) => (*f, vs),
                    _ => {
                        index.always[word] |= bit;
                        continue;
                    }
                };
            let at = match index.fields.iter().position(|(f, _)| *f == field.0) {
                Some(at) => at,
                None => {
                    index.fields.push((field.0, HashMap::new()));
                    index.fields.len() - 1
                }
            };
            for v in values {
                let bits = index.fields[at]
                    .1
                    .entry(v.as_str().into())
                    .or_insert_with(|| vec![0; words]);
                bits[word] |= bit;
            }
        }
        index
    }

    /// The rules the event whose string values `strs` gives by slot visits, as bits by rule
    /// index (into `bits`).
    pub(crate) fn visits<'e, I: Iterator<Item = &'e str>>(
        &self,
        strs: impl Fn(u16) -> I,
        bits: &mut Vec<u64>,
    ) {
        bits.clone_from(&self.always);
        for (slot, by_value) in &self.fields {
            for v in strs(*slot) {
                if let Some(rules) = by_value.get(v) {
                    for (b, r) in bits.iter_mut().zip(rules) {
                        *b |= r;
                    }
                }
            }
        }
    }
}

/// The indexes of the bits set in `bits`, in increasing order.
pub(crate) fn set_bits(bits: &[u64]) -> impl Iterator<Item = u32> + '_ {
    bits.iter().enumerate().flat_map(|(w, &word)| {
        let mut rest = word;
        std::iter::from_fn(move || {
            (rest != 0).then(|| {
                let b = rest.trailing_zeros();
                rest &= rest - 1;
                w as u32 * 64 + b
            })
        })
    })
}

/// A test or a negated test: (field, test, negated).
fn literal(p: &Predicate) -> Option<(FieldId, &Test, bool)> {
    match p {
        Predicate::Test(f, t) => Some((*f, t, false)),
        Predicate::Not(p) => match &**p {
            Predicate::Test(f, t) => Some((*f, t, true)),
            _ => None,
        },
        _ => None,
    }
}

impl Node {
    /// An atom that must hold for the node to hold (the first conjunct that is one), by which
    /// the rules sharing it are skipped together with one memoized check.
    pub(crate) fn gate(&self) -> Option<u32> {
        match self {
            Node::Atom(i) => Some(*i),
            Node::And(ns) => ns.iter().find_map(Node::gate),
            Node::Literals(ls) => ls.iter().find(|&&l| l & NEGATED == 0).copied(),
            _ => None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use vigil_dsl::ValueRef;

    /// Fields 0..n with string values; counts the tests run.
    struct Ev(Vec<Option<&'static str>>, std::cell::Cell<usize>);

    impl EventView for Ev {
        fn any_value(&self, f: FieldId, g: &mut dyn FnMut(ValueRef<'_>) -> bool) -> bool {
            self.1.set(self.1.get() + 1);
            match self.0.get(usize::from(f.0)).copied().flatten() {
                Some(v) => g(ValueRef::Str(v)),
                None => false,
            }
        }
    }

    fn eq(f: u16, v: &str) -> Predicate {
        Predicate::Test(FieldId(f), Test::EqStr(v.into()))
    }

    #[test]
    fn a_shared_test_runs_once_per_event_and_results_match_the_predicates() {
        let preds = [
            Predicate::And(vec![eq(0, "process"), eq(1, "cmd.exe")]),
            Predicate::And(vec![
                eq(0, "process"),
                Predicate::Not(Box::new(eq(1, "java"))),
            ]),
            Predicate::Or(vec![eq(2, "x"), eq(0, "process")]),
            Predicate::And(vec![eq(0, "network"), eq(1, "cmd.exe")]),
            Predicate::Const(false),
            // Not only literals: evaluated as a tree.
            Predicate::And(vec![
                Predicate::Not(Box::new(eq(2, "x"))),
                Predicate::Or(vec![eq(1, "cmd.exe"), eq(1, "java")]),
                eq(0, "process"),
            ]),
        ];
        let mut filters = Filters::default();
        let nodes: Vec<Node> = preds.iter().map(|p| filters.compile(p)).collect();
        assert_eq!(filters.len(), 5, "process, cmd.exe, java, x, network");
        let events = [
            vec![Some("process"), Some("cmd.exe"), None],
            vec![Some("process"), Some("java"), Some("x")],
            vec![Some("network"), Some("cmd.exe"), None],
            vec![None, None, None],
        ];
        let mut memo = Memo::default();
        for fields in events {
            let plain = Ev(fields.clone(), Default::default());
            let want: Vec<bool> = preds.iter().map(|p| p.eval(&plain)).collect();
            let memoed = Ev(fields, Default::default());
            memo.reset(&filters);
            let got: Vec<bool> = nodes
                .iter()
                .map(|n| filters.eval(n, &memoed, &mut memo))
                .collect();
            assert_eq!(got, want);
            assert!(memoed.1.get() <= filters.len());
            assert!(memoed.1.get() < plain.1.get(), "shared tests ran once");
        }
        let gates: Vec<Option<u32>> = nodes.iter().map(Node::gate).collect();
        assert_eq!(gates, [Some(0), Some(0), None, Some(4), None, Some(0)]);
        assert!(matches!(nodes[1], Node::Literals(_)));
        assert!(matches!(nodes[5], Node::And(_)));
    }

    #[test]
    fn an_event_visits_exactly_the_rules_whose_gate_it_can_pass() {
        // Rule 70 (past one word of bits) is gated on a list; rule 3 on a prefix (not
        // indexed); rule 5 has no gate.
        let preds = [
            (0, Predicate::And(vec![eq(0, "process"), eq(1, "cmd.exe")])),
            (1, eq(0, "network")),
            (3, Predicate::Test(FieldId(1), Test::StartsWith("c".into()))),
            (5, Predicate::Or(vec![eq(2, "x"), eq(0, "process")])),
            (
                70,
                Predicate::Test(FieldId(2), Test::InStr(vec!["a".into(), "process".into()])),
            ),
        ];
        let mut filters = Filters::default();
        let rules: Vec<(u32, Option<u32>)> = preds
            .iter()
            .map(|(r, p)| (*r, filters.compile(p).gate()))
            .collect();
        let index = RuleIndex::new(&filters, 71, rules);
        let visits = |fields: [&[&'static str]; 3]| {
            let mut bits = Vec::new();
            index.visits(|slot| fields[usize::from(slot)].iter().copied(), &mut bits);
            set_bits(&bits).collect::<Vec<u32>>()
        };
        assert_eq!(visits([&["process"], &[], &[]]), [0, 3, 5]);
        assert_eq!(visits([&["network", "process"], &[], &[]]), [0, 1, 3, 5]);
        assert_eq!(visits([&[], &[], &["a"]]), [3, 5, 70]);
        assert_eq!(
            visits([&["Process"], &["cmd.exe"], &["process"]]),
            [3, 5, 70]
        );
    }
}
