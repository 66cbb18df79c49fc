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
}

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
            Predicate::And(ps) => Node::And(all(self, ps)),
            Predicate::Or(ps) => Node::Or(all(self, ps)),
            Predicate::Not(p) => Node::Not(Box::new(self.compile(p))),
            Predicate::Test(f, t) => {
                let key = format!("{}\u{0}{t:?}", f.0);
                let next = self.atoms.len() as u32;
                let id = *self.index.entry(key).or_insert(next);
                if id == next {
                    self.atoms.push((*f, t.clone()));
                }
                Node::Atom(id)
            }
        }
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
        }
    }

    /// Evaluates atom `i` on `e` (once per event: `memo` keeps the result).
    #[inline]
    pub(crate) fn atom<E: EventView + ?Sized>(&self, i: u32, e: &E, memo: &mut Memo) -> bool {
        let i = i as usize;
        match memo.atoms[i] {
            0 => {
                let (f, t) = &self.atoms[i];
                let r = match t {
                    Test::Exists => e.has(*f),
                    t => e.any_value(*f, &mut |v| t.test(v)),
                };
                memo.atoms[i] = 1 + u8::from(r);
                r
            }
            m => m == 2,
        }
    }
}

impl Node {
    /// An atom that must hold for the node to hold (the first conjunct that is one), by which
    /// the rules sharing it are skipped together with one memoized check.
    pub(crate) fn gate(&self) -> Option<u32> {
        match self {
            Node::Atom(i) => Some(*i),
            Node::And(ns) => ns.iter().find_map(Node::gate),
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
        assert_eq!(gates, [Some(0), Some(0), None, Some(4), None]);
    }
}
