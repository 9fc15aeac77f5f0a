//! How results are compared: BOINC's agreement rule over any notion of
//! "these two outputs agree", and the bitwise notion used by default.

use std::collections::HashMap;

use super::ResultId;
use super::fuzzy::{self, FuzzyError, Parsed, Tolerance};
use super::lifecycle::ResultCopy;

/// A group of agreeing results: the canonical candidate and every member in id order.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Agreement {
    pub canonical: ResultId,
    pub members: Vec<ResultId>,
}

/// BOINC's rule: for each candidate in id order, the candidates that agree
/// with it (itself included) form its group; the largest group wins (ties go
/// to the earliest), if it has at least `agreement_size` members. The
/// candidate whose group it is becomes canonical. Works for relations that
/// are not transitive (fuzzy comparison), and equals plain grouping by value
/// for bitwise comparison.
pub fn find_agreement<T>(
    candidates: &[(ResultId, T)],
    agreement_size: usize,
    agree: impl Fn(&T, &T) -> bool,
) -> Option<Agreement> {
    let mut sorted: Vec<&(ResultId, T)> = candidates.iter().collect();
    sorted.sort_by_key(|(id, _)| *id);
    let mut best: Option<Agreement> = None;
    for (pivot, value) in &sorted {
        let members: Vec<ResultId> =
            sorted.iter().filter(|(id, other)| id == pivot || agree(value, other)).map(|(id, _)| *id).collect();
        if best.as_ref().is_none_or(|b| members.len() > b.members.len()) {
            best = Some(Agreement { canonical: *pivot, members });
        }
    }
    best.filter(|b| b.members.len() >= agreement_size)
}

/// Compares the outputs of two successful results of one work unit. The
/// caller supplies what the comparison needs (parsed outputs, a validator
/// module): the lifecycle rules only ask questions.
pub trait Comparator {
    /// Whether the result's output can be compared at all; an unreadable one
    /// ends as a validate error.
    fn readable(&self, _result: &ResultCopy) -> bool {
        true
    }

    /// Whether the two outputs agree.
    fn outputs_agree(&self, a: &ResultCopy, b: &ResultCopy) -> bool;
}

/// Byte-for-byte comparison, by output digest.
pub struct Bitwise;

impl Comparator for Bitwise {
    fn outputs_agree(&self, a: &ResultCopy, b: &ResultCopy) -> bool {
        a.output_digest.is_some() && a.output_digest == b.output_digest
    }
}

/// Comparison within a tolerance of outputs the caller has parsed.
pub struct Fuzzy {
    pub tolerance: Tolerance,
    /// Every candidate's parsed output; a missing or unparsable one is unreadable.
    pub parsed: HashMap<ResultId, Result<Parsed, FuzzyError>>,
}

impl Comparator for Fuzzy {
    fn readable(&self, result: &ResultCopy) -> bool {
        matches!(self.parsed.get(&result.id), Some(Ok(_)))
    }

    fn outputs_agree(&self, a: &ResultCopy, b: &ResultCopy) -> bool {
        match (self.parsed.get(&a.id), self.parsed.get(&b.id)) {
            (Some(Ok(a)), Some(Ok(b))) => fuzzy::agree(a, b, &self.tolerance),
            _ => false,
        }
    }
}

/// Whether two successful results agree: their outputs agree, and, when both
/// ran on the same engine version in one piece, they report the same fuel
/// (fuel is an exact instruction count there, so a difference means a copy
/// misreported its work). A copy resumed from a checkpoint counts only the
/// segments it ran, so its fuel is not compared.
pub fn agree(comparator: &dyn Comparator, a: &ResultCopy, b: &ResultCopy) -> bool {
    let fuel_comparable = a.engine == b.engine && !a.resumed && !b.resumed;
    (!fuel_comparable || a.fuel_used == b.fuel_used) && comparator.outputs_agree(a, b)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn check(outputs: &[char], agreement_size: usize, expected: Option<(i64, &[i64])>) {
        let candidates: Vec<(ResultId, char)> =
            outputs.iter().enumerate().map(|(i, &c)| (ResultId(i as i64 + 1), c)).collect();
        let found = find_agreement(&candidates, agreement_size, |a, b| a == b);
        let expected = expected.map(|(canonical, members)| Agreement {
            canonical: ResultId(canonical),
            members: members.iter().map(|&i| ResultId(i)).collect(),
        });
        assert_eq!(found, expected, "{outputs:?} with agreement size {agreement_size}");
    }

    #[test]
    fn agreement_groups() {
        check(&['a', 'a'], 2, Some((1, &[1, 2])));
        check(&['a', 'b'], 2, None);
        check(&['a', 'b', 'a'], 2, Some((1, &[1, 3])));
        check(&['b', 'a', 'a'], 2, Some((2, &[2, 3])));
        check(&['a'], 1, Some((1, &[1])));
        check(&['a', 'b'], 1, Some((1, &[1])));
        check(&['a', 'b', 'b', 'a'], 2, Some((1, &[1, 4])));
        check(&['a', 'b', 'c'], 2, None);
        check(&['a', 'a', 'b', 'b', 'b'], 3, Some((3, &[3, 4, 5])));
        check(&[], 1, None);
    }

    #[test]
    fn non_transitive_relations_pick_the_largest_neighbourhood() {
        // 1 ~ 2, 2 ~ 3, 1 !~ 3: result 2 agrees with both and becomes canonical.
        let candidates = [(ResultId(1), 1.0), (ResultId(2), 2.0), (ResultId(3), 3.0)];
        let found = find_agreement(&candidates, 2, |a: &f64, b: &f64| (a - b).abs() <= 1.0);
        assert_eq!(
            found,
            Some(Agreement { canonical: ResultId(2), members: vec![ResultId(1), ResultId(2), ResultId(3)] })
        );
    }

    #[test]
    fn same_engine_copies_must_report_the_same_fuel() {
        use crate::domain::Digest;
        let copy = |fuel, engine: &str| ResultCopy {
            output_digest: Some(Digest::from_hex("a".repeat(64))),
            fuel_used: fuel,
            engine: Some(engine.to_owned()),
            ..ResultCopy::unsent(ResultId(1))
        };
        let agree = |a: &ResultCopy, b: &ResultCopy| agree(&Bitwise, a, b);
        assert!(agree(&copy(5, "wasmtime 48"), &copy(5, "wasmtime 48")));
        assert!(!agree(&copy(5, "wasmtime 48"), &copy(6, "wasmtime 48")));
        assert!(agree(&copy(5, "wasmtime 48"), &copy(6, "wasmtime 49")));
        let other = ResultCopy { output_digest: Some(Digest::from_hex("b".repeat(64))), ..copy(5, "wasmtime 48") };
        assert!(!agree(&copy(5, "wasmtime 48"), &other));
    }

    #[test]
    fn fuel_of_a_resumed_copy_is_not_compared() {
        use crate::domain::Digest;
        let copy = |fuel, resumed| ResultCopy {
            output_digest: Some(Digest::from_hex("a".repeat(64))),
            fuel_used: fuel,
            engine: Some("wasmtime 48".to_owned()),
            resumed,
            ..ResultCopy::unsent(ResultId(1))
        };
        let agree = |a: &ResultCopy, b: &ResultCopy| agree(&Bitwise, a, b);
        assert!(agree(&copy(5, false), &copy(3, true)), "the resumed one ran only its last segments");
        assert!(agree(&copy(3, true), &copy(5, false)));
        assert!(agree(&copy(2, true), &copy(3, true)));
        assert!(!agree(&copy(5, false), &copy(3, false)), "both whole: fuel must be equal");
        let other = ResultCopy { output_digest: Some(Digest::from_hex("b".repeat(64))), ..copy(5, true) };
        assert!(!agree(&copy(5, false), &other), "outputs still count");
    }
}

#[cfg(test)]
mod fuzzy_tests {
    use super::*;
    use crate::domain::fuzzy::{Format, parse};

    #[test]
    fn fuzzy_comparator_reads_parsed_outputs() {
        let copy = |id| ResultCopy { engine: Some("e".into()), ..ResultCopy::unsent(ResultId(id)) };
        let comparator = Fuzzy {
            tolerance: Tolerance::new(1e-3, 0.0).unwrap(),
            parsed: HashMap::from([
                (ResultId(1), parse(Format::Whitespace, b"1.0000 2")),
                (ResultId(2), parse(Format::Whitespace, b"1.0001 2")),
                (ResultId(3), parse(Format::Whitespace, b"1.1 2")),
                (ResultId(4), parse(Format::Json, b"{")),
            ]),
        };
        assert!(agree(&comparator, &copy(1), &copy(2)));
        assert!(!agree(&comparator, &copy(1), &copy(3)));
        assert!(comparator.readable(&copy(1)));
        assert!(!comparator.readable(&copy(4)), "unparsable");
        assert!(!comparator.readable(&copy(5)), "not parsed at all");
    }
}
