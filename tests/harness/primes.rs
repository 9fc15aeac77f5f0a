//! The primes example app (`examples/primes/primes.wat`), manifests that use
//! it, and an independent prime count to check its outputs against.

use std::fmt::Write as _;
use std::path::PathBuf;

/// The repository's `examples/primes/primes.wat`.
pub fn app_path() -> PathBuf {
    let path = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("..").join("examples").join("primes").join("primes.wat");
    assert!(path.is_file(), "{} is missing", path.display());
    path
}

/// The number of primes p with `start <= p < end`, by trial division: written
/// independently of the app, to check the canonical outputs.
pub fn count_primes(start: u64, end: u64) -> u64 {
    fn is_prime(n: u64) -> bool {
        if n < 2 {
            return false;
        }
        if n < 4 {
            return true;
        }
        if n.is_multiple_of(2) {
            return false;
        }
        let mut divisor = 3;
        while divisor * divisor <= n {
            if n.is_multiple_of(divisor) {
                return false;
            }
            divisor += 2;
        }
        true
    }
    (start..end).filter(|&n| is_prime(n)).count() as u64
}

/// The expected output of the work unit named `START-END`.
pub fn expected_output(work_unit_name: &str) -> String {
    let (start, end) =
        work_unit_name.split_once('-').unwrap_or_else(|| panic!("work unit name {work_unit_name:?} is not START-END"));
    let start: u64 = start.parse().expect("START is a number");
    let end: u64 = end.parse().expect("END is a number");
    format!("{}\n", count_primes(start, end))
}

/// A manifest (TOML text) for the primes app over `start..end` in chunks of
/// `chunk`, with `policy` as the body of its `[policy]` table (e.g.
/// `"min_quorum = 2\ndeadline = \"3s\""`).
pub fn manifest(name: &str, start: u64, end: u64, chunk: u64, policy: &str) -> String {
    let mut text = String::new();
    writeln!(text, "name = {name:?}").expect("write to a String");
    writeln!(text, "app = {:?}", app_path().display().to_string()).expect("write to a String");
    writeln!(text, "[policy]\n{policy}").expect("write to a String");
    writeln!(text, "[work_units]\nrange = {{ start = {start}, end = {end}, chunk = {chunk} }}")
        .expect("write to a String");
    text
}

#[cfg(test)]
mod tests {
    use super::count_primes;

    #[test]
    fn counts_known_ranges() {
        for (start, end, expected) in [(0, 100, 25), (0, 2, 0), (2, 3, 1), (100, 200, 21)] {
            assert_eq!(count_primes(start, end), expected, "{start}..{end}");
        }
    }
}
