//! How results are compared: bitwise agreement by output digest, and BOINC's
//! rule for finding a group that agrees.

use super::{Digest, ResultId};

/// Finds the largest group of candidates with equal outputs, if it has at least
/// `agreement_size` members. Ties go to the group whose first result is
/// earliest. The group is returned in result-id order, so its first member is
/// the canonical result.
pub fn find_agreement(candidates: &[(ResultId, &Digest)], agreement_size: usize) -> Option<Vec<ResultId>> {
    let mut groups: Vec<(&Digest, Vec<ResultId>)> = Vec::new();
    let mut sorted = candidates.to_vec();
    sorted.sort_by_key(|(id, _)| *id);
    for (id, digest) in sorted {
        match groups.iter_mut().find(|(d, _)| *d == digest) {
            Some((_, members)) => members.push(id),
            None => groups.push((digest, vec![id])),
        }
    }
    // `max_by_key` keeps the last of equal maxima; reverse so the earliest group wins ties.
    groups
        .into_iter()
        .rev()
        .max_by_key(|(_, members)| members.len())
        .map(|(_, members)| members)
        .filter(|members| members.len() >= agreement_size)
}

/// Whether an output agrees with the canonical one (bitwise, by digest).
pub fn agree(output: Option<&Digest>, canonical: &Digest) -> bool {
    output == Some(canonical)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn digest(c: char) -> Digest {
        Digest::from_hex(c.to_string().repeat(64))
    }

    fn check(outputs: &[char], agreement_size: usize, expected: Option<&[i64]>) {
        let digests: Vec<Digest> = outputs.iter().map(|&c| digest(c)).collect();
        let candidates: Vec<(ResultId, &Digest)> =
            digests.iter().enumerate().map(|(i, d)| (ResultId(i as i64 + 1), d)).collect();
        let found = find_agreement(&candidates, agreement_size);
        let expected = expected.map(|ids| ids.iter().map(|&i| ResultId(i)).collect::<Vec<_>>());
        assert_eq!(found, expected, "{outputs:?} with agreement size {agreement_size}");
    }

    #[test]
    fn agreement_groups() {
        check(&['a', 'a'], 2, Some(&[1, 2]));
        check(&['a', 'b'], 2, None);
        check(&['a', 'b', 'a'], 2, Some(&[1, 3]));
        check(&['b', 'a', 'a'], 2, Some(&[2, 3]));
        check(&['a'], 1, Some(&[1]));
        check(&['a', 'b'], 1, Some(&[1]));
        check(&['a', 'b', 'b', 'a'], 2, Some(&[1, 4]));
        check(&['a', 'b', 'c'], 2, None);
        check(&['a', 'a', 'b', 'b', 'b'], 3, Some(&[3, 4, 5]));
        check(&[], 1, None);
    }
}
