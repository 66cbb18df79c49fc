//! The condition an aggregation rule fires on: the aggregate's value within bounds, such as
//! `>= 10`, `< 5` or `between 10 and 100`. Shared by the rule compiler, which builds it, and the
//! window operators, which test it.

use std::fmt;

/// One bound of a [`Threshold`].
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Bound {
    /// The bound's value.
    pub value: f64,
    /// Whether the value itself satisfies the bound (`>=`, `<=`, `between`).
    pub inclusive: bool,
}

/// A range of aggregate values, open on a side without a bound. `==` is the range from a value
/// to itself, both ends inclusive.
#[derive(Clone, Copy, Debug, PartialEq, Default)]
pub struct Threshold {
    /// Lower bound.
    pub lo: Option<Bound>,
    /// Upper bound.
    pub hi: Option<Bound>,
}

impl Threshold {
    /// `>= n`.
    pub fn at_least(n: f64) -> Self {
        Threshold {
            lo: Some(Bound {
                value: n,
                inclusive: true,
            }),
            hi: None,
        }
    }

    /// Whether `v` satisfies every bound (never for NaN).
    pub fn holds(&self, v: f64) -> bool {
        let lo = self.lo.is_none_or(|b| {
            if b.inclusive {
                v >= b.value
            } else {
                v > b.value
            }
        });
        let hi = self.hi.is_none_or(|b| {
            if b.inclusive {
                v <= b.value
            } else {
                v < b.value
            }
        });
        lo && hi && !v.is_nan()
    }
}

impl fmt::Display for Threshold {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match (self.lo, self.hi) {
            (Some(l), Some(h)) if l.value == h.value && l.inclusive && h.inclusive => {
                write!(f, "== {}", l.value)
            }
            (Some(l), Some(h)) if l.inclusive && h.inclusive => {
                write!(f, "between {} and {}", l.value, h.value)
            }
            (lo, hi) => {
                let mut sep = "";
                if let Some(l) = lo {
                    write!(f, "{} {}", if l.inclusive { ">=" } else { ">" }, l.value)?;
                    sep = " and ";
                }
                if let Some(h) = hi {
                    let op = if h.inclusive { "<=" } else { "<" };
                    write!(f, "{sep}{op} {}", h.value)?;
                }
                Ok(())
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn b(value: f64, inclusive: bool) -> Option<Bound> {
        Some(Bound { value, inclusive })
    }

    #[test]
    fn bounds_are_inclusive_or_not_as_written() {
        let ge = Threshold::at_least(10.0);
        assert!(ge.holds(10.0) && ge.holds(11.0) && !ge.holds(9.999));
        let gt = Threshold {
            lo: b(10.0, false),
            hi: None,
        };
        assert!(!gt.holds(10.0) && gt.holds(10.5));
        let between = Threshold {
            lo: b(10.0, true),
            hi: b(100.0, true),
        };
        assert!(between.holds(10.0) && between.holds(100.0));
        assert!(!between.holds(9.0) && !between.holds(100.5));
        let lt = Threshold {
            lo: None,
            hi: b(5.0, false),
        };
        assert!(lt.holds(-1.0) && !lt.holds(5.0));
        assert!(!ge.holds(f64::NAN) && !lt.holds(f64::NAN));
    }

    #[test]
    fn displays_as_written() {
        assert_eq!(Threshold::at_least(10.0).to_string(), ">= 10");
        let eq = Threshold {
            lo: b(3.0, true),
            hi: b(3.0, true),
        };
        assert_eq!(eq.to_string(), "== 3");
        let between = Threshold {
            lo: b(1.5, true),
            hi: b(9.0, true),
        };
        assert_eq!(between.to_string(), "between 1.5 and 9");
        let lt = Threshold {
            lo: None,
            hi: b(5.0, false),
        };
        assert_eq!(lt.to_string(), "< 5");
    }
}
