//! Rule filters compiled over one table of distinct tests, so that a test many rules share
//! (`event.category == "process"` opens half of a typical library) runs once per event rather
//! than once per rule.
//!
//! Every predicate of the rule set (filters, sequence steps, `until`) is rewritten into a
//! [`Node`] tree whose leaves index [`Filters::atoms`]; a [`Memo`] holds each atom's result for
//! the event at hand. Results are identical to [`Predicate::eval`]: the trees keep the
//! predicates' shape and short-circuit order, and an atom is pure in the event.

use std::collections::HashMap;
use std::hash::{BuildHasherDefault, Hasher};

use aho_corasick::AhoCorasick;
use xxhash_rust::xxh3::xxh3_64_with_seed;

use vigil_dsl::{Cidr, EventView, FieldId, Predicate, Test, ValueRef, parse_ip};
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

    /// Evaluates `n` on `e`, reusing and filling `memo` (reset for `e`). Inline for the
    /// shapes of most filters and steps (a conjunction of literals, one test); the recursive
    /// walk of other trees is out of line.
    #[inline]
    pub(crate) fn eval<E: EventView + ?Sized>(&self, n: &Node, e: &E, memo: &mut Memo) -> bool {
        match n {
            Node::Const(b) => *b,
            Node::Atom(i) => self.atom(*i, e, memo),
            Node::Literals(ls) => ls
                .iter()
                .all(|&l| self.atom(l & !NEGATED, e, memo) != (l & NEGATED != 0)),
            n => self.eval_tree(n, e, memo),
        }
    }

    /// [`Filters::eval`] of a tree.
    #[inline(never)]
    fn eval_tree<E: EventView + ?Sized>(&self, n: &Node, e: &E, memo: &mut Memo) -> bool {
        match n {
            Node::And(ns) => ns.iter().all(|n| self.eval(n, e, memo)),
            Node::Or(ns) => ns.iter().any(|n| self.eval(n, e, memo)),
            Node::Not(n) => !self.eval(n, e, memo),
            n => self.eval(n, e, memo),
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
        let r = e.passes(*f, t);
        memo.atoms[i] = 1 + u8::from(r);
        r
    }
}

/// The rules over events by the values their gates ([`Filters::gate`]) require of a field, so
/// that an event visits only the rules whose gate it can pass: `process.name =~ "certutil.exe"`
/// opens a handful of rules, and a logon need not visit them at all. A rule without a gate
/// (equality, `in`, substring or CIDR tests) is always visited.
#[derive(Debug, Default)]
pub(crate) struct RuleIndex {
    /// Bit per rule index: the rules every event visits.
    always: Vec<u64>,
    /// Per indexed field (by slot): the rules by the value their gate requires.
    fields: Vec<(u16, ByValue)>,
}

/// One field's rules (bits by rule index) by value: exact strings, lowercased strings (for
/// `=~` and `in~`), numbers (by their bits, zero unsigned), substrings (`contains`,
/// `contains~`), found all at once by one automaton each, and networks.
#[derive(Debug, Default)]
struct ByValue {
    exact: ValueMap<Box<str>>,
    folded: ValueMap<Box<str>>,
    nums: ValueMap<u64>,
    contains: Option<Substrings>,
    contains_ci: Option<Substrings>,
    /// Networks (`cidr`), each with its rules: a value is parsed as an address once and
    /// checked against each.
    cidrs: Vec<(Cidr, Vec<u64>)>,
}

/// Rule bits by an indexed value. Every event looks up each of its indexed fields' values, so
/// the map hashes with one-shot xxh3 rather than SipHash (its keys are rule literals: an event
/// can only look one up, never add one, so a chosen value cannot degrade the table).
type ValueMap<K> = HashMap<K, Vec<u64>, BuildHasherDefault<OneShot>>;

/// A hasher for short keys hashed once each: xxh3 of each written slice, chained by seed.
#[derive(Default)]
struct OneShot(u64);

impl Hasher for OneShot {
    fn finish(&self) -> u64 {
        self.0
    }
    fn write(&mut self, bytes: &[u8]) {
        self.0 = xxh3_64_with_seed(bytes, self.0);
    }
    // A `str` key ends with a 0xff byte: mix it in without another xxh3 pass.
    fn write_u8(&mut self, i: u8) {
        self.0 = (self.0 ^ u64::from(i)).wrapping_mul(0x9e37_79b9_7f4a_7c15);
    }
}

/// The rules gated on substrings of one field: an Aho-Corasick automaton over the needles
/// (ASCII-case-insensitive for `contains~`, whose needles are lowercase), and per needle the
/// rules.
#[derive(Debug)]
struct Substrings {
    automaton: AhoCorasick,
    rules: Vec<Vec<u64>>,
}

impl Substrings {
    fn new(needles: ValueMap<Box<str>>, folded: bool) -> Option<Substrings> {
        if needles.is_empty() {
            return None;
        }
        let (needles, rules): (Vec<Box<str>>, Vec<Vec<u64>>) = needles.into_iter().unzip();
        let automaton = AhoCorasick::builder()
            .ascii_case_insensitive(folded)
            .build(needles.iter().map(|n| n.as_bytes()))
            .expect("the needles of rule tests build an automaton");
        Some(Substrings { automaton, rules })
    }

    /// The rules of every needle `hay` contains, into `or`.
    fn find(&self, hay: &str, or: &mut impl FnMut(Option<&Vec<u64>>)) {
        for m in self.automaton.find_overlapping_iter(hay) {
            or(self.rules.get(m.pattern().as_usize()));
        }
    }
}

/// The key of number `n` in [`ByValue::nums`]: `-0 == 0`, and NaN equals nothing.
fn num_key(n: f64) -> Option<u64> {
    (!n.is_nan()).then(|| if n == 0.0 { 0 } else { n.to_bits() })
}

impl RuleIndex {
    /// Indexes `rules` (rule index and gate) among `n` rules; `filters` holds the gates' atoms.
    pub(crate) fn new(
        filters: &Filters,
        n: usize,
        rules: impl IntoIterator<Item = (u32, Option<Vec<u32>>)>,
    ) -> RuleIndex {
        let words = n.div_ceil(64);
        let mut index = RuleIndex {
            always: vec![0; words],
            fields: Vec::new(),
        };
        // Per indexed field: the needles of `contains` and of `contains~` (automata built last).
        let mut needles: Vec<[ValueMap<Box<str>>; 2]> = Vec::new();
        for (rule, gate) in rules {
            let (word, bit) = (rule as usize / 64, 1u64 << (rule % 64));
            let Some(gate) = gate else {
                index.always[word] |= bit;
                continue;
            };
            let set = |bits: &mut Vec<u64>| {
                bits.resize(words, 0);
                bits[word] |= bit;
            };
            for atom in gate {
                let (field, test) = &filters.atoms[atom as usize];
                let at = match index.fields.iter().position(|(f, _)| *f == field.0) {
                    Some(at) => at,
                    None => {
                        index.fields.push((field.0, ByValue::default()));
                        needles.push(Default::default());
                        index.fields.len() - 1
                    }
                };
                let by = &mut index.fields[at].1;
                let [contains, contains_ci] = &mut needles[at];
                let one = std::slice::from_ref;
                let (map, values): (&mut ValueMap<Box<str>>, &[String]) = match test {
                    Test::EqStr(v) => (&mut by.exact, one(v)),
                    Test::InStr(vs) => (&mut by.exact, vs),
                    Test::EqStrCi(v) => (&mut by.folded, one(v)),
                    Test::InStrCi(vs) => (&mut by.folded, vs),
                    Test::Contains(v) => (contains, one(v)),
                    Test::ContainsCi(v) => (contains_ci, one(v)),
                    Test::Cidr(nets) => {
                        for net in nets {
                            match by.cidrs.iter_mut().find(|(n, _)| n == net) {
                                Some((_, bits)) => set(bits),
                                None => {
                                    let mut bits = Vec::new();
                                    set(&mut bits);
                                    by.cidrs.push((*net, bits));
                                }
                            }
                        }
                        continue;
                    }
                    Test::EqNum(_) | Test::InNum(_) => {
                        let nums = match test {
                            Test::EqNum(v) => std::slice::from_ref(v),
                            Test::InNum(vs) => vs.as_slice(),
                            _ => &[],
                        };
                        for k in nums.iter().filter_map(|v| num_key(*v)) {
                            set(by.nums.entry(k).or_default());
                        }
                        continue;
                    }
                    _ => unreachable!("a gate holds indexed tests only"),
                };
                for v in values {
                    set(map.entry(v.as_str().into()).or_default());
                }
            }
        }
        for ((_, by), [contains, contains_ci]) in index.fields.iter_mut().zip(needles) {
            by.contains = Substrings::new(contains, false);
            by.contains_ci = Substrings::new(contains_ci, true);
        }
        index
    }

    /// The rules the event whose values `values` gives by slot visits, as bits by rule index
    /// (into `bits`).
    pub(crate) fn visits<'e, I: Iterator<Item = ValueRef<'e>>>(
        &self,
        values: impl Fn(u16) -> I,
        bits: &mut Vec<u64>,
    ) {
        bits.clone_from(&self.always);
        let mut or = |rules: Option<&Vec<u64>>| {
            for (b, r) in bits.iter_mut().zip(rules.into_iter().flatten()) {
                *b |= r;
            }
        };
        let mut lower = String::new();
        for (slot, by) in &self.fields {
            for v in values(*slot) {
                match v {
                    ValueRef::Str(s) => {
                        if !by.exact.is_empty() {
                            or(by.exact.get(s));
                        }
                        if !by.folded.is_empty() {
                            or(by.folded.get(fold(s, &mut lower)));
                        }
                        if let Some(subs) = &by.contains {
                            subs.find(s, &mut or);
                        }
                        if let Some(subs) = &by.contains_ci {
                            // As `contains~` compares: ASCII in either case, else lowercased.
                            let hay = if s.is_ascii() { s } else { fold(s, &mut lower) };
                            subs.find(hay, &mut or);
                        }
                        if !by.cidrs.is_empty()
                            && let Some(ip) = parse_ip(s)
                        {
                            for (net, rules) in &by.cidrs {
                                if net.contains(ip) {
                                    or(Some(rules));
                                }
                            }
                        }
                    }
                    ValueRef::Num(n) if !by.nums.is_empty() => {
                        or(num_key(n).and_then(|k| by.nums.get(&k)));
                    }
                    _ => {}
                }
            }
        }
    }
}

/// `s` lowercased as the case-insensitive tests compare it (`buf` holds the result when it
/// differs from `s`).
fn fold<'a>(s: &'a str, buf: &'a mut String) -> &'a str {
    if s.is_ascii() {
        if !s.bytes().any(|b| b.is_ascii_uppercase()) {
            return s;
        }
        buf.clear();
        buf.push_str(s);
        buf.make_ascii_lowercase();
    } else {
        *buf = s.to_lowercase();
    }
    buf
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

/// The ECS categorization fields: a handful of allowed values each over all events, so the
/// gates that test them are passed by a large share of events.
const CATEGORIZATION: [&str; 4] = [
    "event.kind",
    "event.category",
    "event.type",
    "event.outcome",
];

impl Filters {
    /// The gate of a rule whose filter is `filter` and whose sequence steps (if any) are
    /// `steps`: atoms one of which holds whenever the rule takes an event, each an equality,
    /// `in`, substring or CIDR test, so that [`RuleIndex`] finds the rule by the value it
    /// requires.
    /// `None` when there is no such set: every event visits the rule.
    ///
    /// A conjunction gates on one conjunct, preferring a field that tells entities apart
    /// (`process.name`, `user.name`) over the other `event.*` fields (`event.action`), and
    /// those over the categorization fields (`event.category` and the like), which far more
    /// events pass; among equals, the first. A disjunction gates on the union of its operands'
    /// gates, and a sequence on the union of its steps' (it takes an event one of its steps
    /// takes).
    pub(crate) fn gate<'n>(
        &self,
        filter: &Node,
        steps: impl IntoIterator<Item = &'n Node>,
        paths: &[String],
    ) -> Option<Vec<u32>> {
        let rank = |atom: u32| -> u8 {
            let field = usize::from(self.atoms[atom as usize].0.0);
            match paths.get(field).map(String::as_str) {
                Some(p) if CATEGORIZATION.contains(&p) => 2,
                Some(p) if p.starts_with("event.") => 1,
                _ => 0,
            }
        };
        let mut steps = steps.into_iter().peekable();
        let of_steps = match steps.peek() {
            None => None,
            Some(_) => steps
                .map(|n| self.gates(n, &rank))
                .collect::<Option<Vec<_>>>()
                .map(|gs| union(gs.into_iter())),
        };
        best(
            [self.gates(filter, &rank), of_steps].into_iter().flatten(),
            &rank,
        )
    }

    /// The indexed gate of `n` (see [`Filters::gate`]); `rank` orders atoms by how many
    /// events pass them.
    fn gates(&self, n: &Node, rank: &dyn Fn(u32) -> u8) -> Option<Vec<u32>> {
        match n {
            Node::Const(false) => Some(Vec::new()),
            Node::Const(true) | Node::Not(_) => None,
            Node::Atom(i) => self.indexed(*i).then(|| vec![*i]),
            Node::Literals(ls) => best(
                ls.iter()
                    .filter(|&&l| l & NEGATED == 0 && self.indexed(l))
                    .map(|&l| vec![l]),
                rank,
            ),
            Node::And(ns) => best(ns.iter().filter_map(|n| self.gates(n, rank)), rank),
            Node::Or(ns) => ns
                .iter()
                .map(|n| self.gates(n, rank))
                .collect::<Option<Vec<_>>>()
                .map(|gs| union(gs.into_iter())),
        }
    }

    /// Whether atom `i` is a test [`RuleIndex`] can look up by value.
    fn indexed(&self, i: u32) -> bool {
        matches!(
            self.atoms[i as usize].1,
            Test::EqStr(_)
                | Test::InStr(_)
                | Test::EqStrCi(_)
                | Test::InStrCi(_)
                | Test::EqNum(_)
                | Test::InNum(_)
                | Test::Cidr(_)
        ) || matches!(&self.atoms[i as usize].1, Test::Contains(n) | Test::ContainsCi(n) if !n.is_empty())
    }
}

/// Of alternative gates of one conjunction, the first of those whose worst atom ranks best.
fn best(gates: impl Iterator<Item = Vec<u32>>, rank: &dyn Fn(u32) -> u8) -> Option<Vec<u32>> {
    gates.min_by_key(|g| g.iter().map(|&a| rank(a)).max().unwrap_or(0))
}

/// The atoms of several gates, each once.
fn union(gates: impl Iterator<Item = Vec<u32>>) -> Vec<u32> {
    let mut all: Vec<u32> = gates.flatten().collect();
    all.sort_unstable();
    all.dedup();
    all
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

    /// Fields by slot, each with its values.
    struct Fields<'a>(&'a [(u16, &'a [ValueRef<'a>])]);

    impl EventView for Fields<'_> {
        fn any_value(&self, f: FieldId, g: &mut dyn FnMut(ValueRef<'_>) -> bool) -> bool {
            let of = self.0.iter().find(|(s, _)| *s == f.0);
            of.is_some_and(|(_, vs)| vs.iter().any(|&v| g(v)))
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
        // Atoms: process 0, cmd.exe 1, java 2, x 3, network 4. A conjunction gates on a test
        // of a field other than `event.category` when it has one; a disjunction on the union.
        let paths = ["event.category", "process.name", "x"].map(String::from);
        let gates: Vec<Option<Vec<u32>>> =
            nodes.iter().map(|n| filters.gate(n, [], &paths)).collect();
        let want: [Option<&[u32]>; 6] = [
            Some(&[1]),
            Some(&[0]),
            Some(&[0, 3]),
            Some(&[1]),
            Some(&[]),
            Some(&[1, 2]),
        ];
        assert_eq!(gates, want.map(|g| g.map(<[u32]>::to_vec)));
        assert!(matches!(nodes[1], Node::Literals(_)));
        assert!(matches!(nodes[5], Node::And(_)));
    }

    #[test]
    fn an_event_visits_exactly_the_rules_whose_gate_it_can_pass() {
        let test = |f: u16, t: Test| Predicate::Test(FieldId(f), t);
        let and = Predicate::And;
        // Rule 70 (past one word of bits) is gated on a list; rule 3 on a prefix (not
        // indexed: always visited); rule 5 on either of two fields; rule 6 on a name in any
        // case, not on its category; rule 7 on a number; rule 8 is a sequence, gated on its
        // steps (its filter is `true`); rule 9 can match nothing; rule 10 on a substring,
        // rule 11 on a substring in any case or a name; rule 12 on `event.action` rather than
        // on its category; rule 13 on networks.
        let rules: Vec<(u32, Predicate, Vec<Predicate>)> = vec![
            (0, and(vec![eq(0, "process"), eq(1, "cmd.exe")]), vec![]),
            (1, eq(0, "network"), vec![]),
            (3, test(1, Test::StartsWith("c".into())), vec![]),
            (5, Predicate::Or(vec![eq(2, "x"), eq(0, "process")]), vec![]),
            (
                6,
                and(vec![
                    eq(0, "process"),
                    test(1, Test::EqStrCi("certutil.exe".into())),
                ]),
                vec![],
            ),
            (
                7,
                and(vec![
                    eq(0, "network"),
                    test(3, Test::InNum(vec![22.0, 0.0])),
                ]),
                vec![],
            ),
            (
                8,
                Predicate::Const(true),
                vec![
                    eq(0, "authentication"),
                    and(vec![eq(0, "network"), eq(2, "y")]),
                ],
            ),
            (9, Predicate::Const(false), vec![]),
            (
                10,
                and(vec![
                    eq(0, "process"),
                    test(2, Test::Contains("\\temp\\".into())),
                ]),
                vec![],
            ),
            (
                11,
                Predicate::Or(vec![
                    test(2, Test::ContainsCi("suspicious".into())),
                    eq(1, "okta"),
                ]),
                vec![],
            ),
            (
                12,
                and(vec![eq(0, "authentication"), eq(4, "logon")]),
                vec![],
            ),
            (
                13,
                and(vec![
                    eq(0, "authentication"),
                    test(
                        5,
                        Test::Cidr(
                            ["10.0.0.0/8", "2001:db8::/32"]
                                .map(|n| Cidr::parse(n).unwrap())
                                .to_vec(),
                        ),
                    ),
                ]),
                vec![],
            ),
            (
                70,
                test(2, Test::InStr(vec!["a".into(), "process".into()])),
                vec![],
            ),
        ];
        let paths = [
            "event.category",
            "process.name",
            "x",
            "port",
            "event.action",
            "source.ip",
        ]
        .map(String::from);
        let mut filters = Filters::default();
        let gates: Vec<(u32, Option<Vec<u32>>)> = rules
            .iter()
            .map(|(r, p, steps)| {
                let filter = filters.compile(p);
                let steps: Vec<Node> = steps.iter().map(|s| filters.compile(s)).collect();
                (*r, filters.gate(&filter, &steps, &paths))
            })
            .collect();
        let index = RuleIndex::new(&filters, 71, gates);
        let visits = |fields: &[(u16, &[ValueRef<'static>])]| {
            let mut bits = Vec::new();
            let values = |slot: u16| {
                let of = fields.iter().find(|(f, _)| *f == slot);
                of.map_or(&[][..], |(_, vs)| *vs).iter().copied()
            };
            index.visits(values, &mut bits);
            let visited: Vec<u32> = set_bits(&bits).collect();
            // Never skips a rule that takes the event.
            let view = Fields(fields);
            for (r, p, steps) in &rules {
                let takes =
                    p.eval(&view) && (steps.is_empty() || steps.iter().any(|s| s.eval(&view)));
                assert!(!takes || visited.contains(r), "rule {r} takes {fields:?}");
            }
            visited
        };
        let s = ValueRef::Str;
        let num = ValueRef::Num;
        assert_eq!(visits(&[(0, &[s("process")])]), [3, 5]);
        assert_eq!(visits(&[(1, &[s("cmd.exe")])]), [0, 3]);
        assert_eq!(visits(&[(1, &[s("CertUtil.EXE")])]), [3, 6]);
        assert_eq!(visits(&[(1, &[s("certutil.exe")])]), [3, 6]);
        assert_eq!(visits(&[(0, &[s("network")])]), [1, 3]);
        assert_eq!(visits(&[(3, &[num(22.0)])]), [3, 7]);
        assert_eq!(visits(&[(3, &[num(-0.0)])]), [3, 7]);
        assert_eq!(visits(&[(3, &[s("22")])]), [3]);
        assert_eq!(visits(&[(0, &[s("authentication")])]), [3, 8]);
        assert_eq!(visits(&[(2, &[s("y")])]), [3, 8]);
        assert_eq!(visits(&[(2, &[s("x")])]), [3, 5]);
        assert_eq!(visits(&[(0, &[s("network"), s("process")])]), [1, 3, 5]);
        assert_eq!(visits(&[(2, &[s("a")])]), [3, 70]);
        assert_eq!(
            visits(&[
                (0, &[s("Process")]),
                (1, &[s("cmd.exe")]),
                (2, &[s("process")])
            ]),
            [0, 3, 70]
        );
        assert_eq!(visits(&[(2, &[s("c:\\Temp\\x")])]), [3]);
        assert_eq!(visits(&[(2, &[s("c:\\temp\\x")])]), [3, 10]);
        assert_eq!(visits(&[(2, &[s("A SusPicious one")])]), [3, 11]);
        assert_eq!(visits(&[(2, &[s("ÉTÉ SUSPICIOUS")])]), [3, 11]);
        assert_eq!(visits(&[(2, &[s("suspiciou")])]), [3]);
        assert_eq!(visits(&[(1, &[s("okta")])]), [3, 11]);
        assert_eq!(visits(&[(4, &[s("logon")])]), [3, 12]);
        assert_eq!(visits(&[(5, &[s("10.1.2.3")])]), [3, 13]);
        assert_eq!(visits(&[(5, &[s("::ffff:10.0.0.1")])]), [3, 13]);
        assert_eq!(visits(&[(5, &[s("2001:db8::7")])]), [3, 13]);
        assert_eq!(visits(&[(5, &[s("11.0.0.1"), s("x")])]), [3]);
        assert_eq!(
            visits(&[(0, &[s("authentication")]), (4, &[s("logoff")])]),
            [3, 8]
        );
    }
}
