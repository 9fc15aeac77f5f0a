//! How results are compared: BOINC's agreement rule over any notion of
//! "these two outputs agree", and the bitwise notion used by default.

use super::ResultId;
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

/// Bitwise agreement of two successful results: the same output digest, and,
/// when both ran on the same engine version, the same fuel (fuel is an exact
/// instruction count there, so a difference means a copy misreported its work).
pub fn bitwise_agree(a: &ResultCopy, b: &ResultCopy) -> bool {
    a.output_digest.is_some() && a.output_digest == b.output_digest && (a.engine != b.engine || a.fuel_used == b.fuel_used)
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
        assert_eq!(found, Some(Agreement { canonical: ResultId(2), members: vec![ResultId(1), ResultId(2), ResultId(3)] }));
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
        assert!(bitwise_agree(&copy(5, "wasmtime 48"), &copy(5, "wasmtime 48")));
        assert!(!bitwise_agree(&copy(5, "wasmtime 48"), &copy(6, "wasmtime 48")));
        assert!(bitwise_agree(&copy(5, "wasmtime 48"), &copy(6, "wasmtime 49")));
        let other = ResultCopy { output_digest: Some(Digest::from_hex("b".repeat(64))), ..copy(5, "wasmtime 48") };
        assert!(!bitwise_agree(&copy(5, "wasmtime 48"), &other));
    }
}
