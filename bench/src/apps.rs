//! The apps of the `worker` benchmark: each a WebAssembly module, the inputs
//! of its work units, and the same computation done natively, whose outputs
//! every sandboxed output is checked against.
//!
//! - **primes**: the primes example (`examples/primes/primes.wat`, trial
//!   division by 64-bit integers), native in Rust with the module's
//!   algorithm; units are ranges of numbers.
//! - **nbody**, **matmul**, **fft**, **stencil**, **sort**: the C kernels of
//!   `apps/kernels` (floating point, memory streams, integer compares and
//!   swaps), compiled to WebAssembly with clang (committed `.wasm`) and
//!   natively with gcc -O2 by the build script, called here through FFI;
//!   units are the kernels' parameter lines, `work` scaling their size.

use std::ffi::{CString, c_char, c_int};
use std::fmt;
use std::str::FromStr;

use anyhow::Context as _;
use serde::Serialize;

/// The primes example, as shipped.
pub const PRIMES_WAT: &str = include_str!("../../examples/primes/primes.wat");

/// One app of the benchmark.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum App {
    Primes,
    Nbody,
    Matmul,
    Fft,
    Stencil,
    Sort,
}

/// One work unit: its name and its stdin.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Unit {
    pub name: String,
    pub input: Vec<u8>,
}

/// How the units of a kernel app are made.
#[derive(Debug, Clone, Copy)]
pub struct KernelUnits {
    /// Work units per kernel app.
    pub count: usize,
    /// Size of each unit, 1.0 for about 0.15-0.25 s of native time on this
    /// machine's cores (the units "of 0.1 s or more").
    pub work: f64,
}

impl App {
    pub const ALL: [App; 6] = [App::Primes, App::Nbody, App::Matmul, App::Fft, App::Stencil, App::Sort];

    pub fn name(self) -> &'static str {
        match self {
            App::Primes => "primes",
            App::Nbody => "nbody",
            App::Matmul => "matmul",
            App::Fft => "fft",
            App::Stencil => "stencil",
            App::Sort => "sort",
        }
    }

    /// The app's WebAssembly module.
    pub fn module(self) -> anyhow::Result<Vec<u8>> {
        Ok(match self {
            App::Primes => wat::parse_str(PRIMES_WAT).context("cannot convert primes.wat")?,
            App::Nbody => include_bytes!("../apps/kernels/nbody.wasm").to_vec(),
            App::Matmul => include_bytes!("../apps/kernels/matmul.wasm").to_vec(),
            App::Fft => include_bytes!("../apps/kernels/fft.wasm").to_vec(),
            App::Stencil => include_bytes!("../apps/kernels/stencil.wasm").to_vec(),
            App::Sort => include_bytes!("../apps/kernels/sort.wasm").to_vec(),
        })
    }

    /// The work units of a kernel app: `units.count` parameter lines, each
    /// with its own seed (or size), scaled by `units.work`. Not for primes
    /// (its units are ranges: [`prime_units`]).
    pub fn kernel_units(self, units: KernelUnits) -> Vec<Unit> {
        let scaled = |full: f64, least: u64| ((full * units.work).round() as u64).max(least);
        (0..units.count)
            .map(|i| {
                let i = i as u64;
                let input = match self {
                    App::Primes => unreachable!("primes units are ranges"),
                    App::Nbody => format!("{}\n", scaled(2_000_000.0, 1) + i),
                    App::Matmul => format!("320 {} {i}\n", scaled(6.0, 1)),
                    App::Fft => format!("18 {} {i}\n", scaled(6.0, 1)),
                    App::Stencil => format!("1024 {}\n", scaled(200.0, 1) + i % 3),
                    App::Sort => format!("{} {i}\n", scaled(2_000_000.0, 16)),
                };
                Unit { name: format!("{}-{i}", self.name()), input: input.into_bytes() }
            })
            .collect()
    }

    /// The app's output for `input`, computed natively.
    pub fn native(self, input: &[u8]) -> anyhow::Result<Vec<u8>> {
        let kernel = match self {
            App::Primes => {
                let text = std::str::from_utf8(input).context("primes input is not UTF-8")?;
                let mut numbers = text.split_whitespace().map(u64::from_str);
                let (Some(Ok(start)), Some(Ok(end))) = (numbers.next(), numbers.next()) else {
                    anyhow::bail!("primes input {text:?} is not \"START END\"");
                };
                return Ok(format!("{}\n", count_primes(start, end)).into_bytes());
            }
            App::Nbody => quorum_nbody_kernel,
            App::Matmul => quorum_matmul_kernel,
            App::Fft => quorum_fft_kernel,
            App::Stencil => quorum_stencil_kernel,
            App::Sort => quorum_sort_kernel,
        };
        let input = CString::new(input).context("kernel input holds a NUL byte")?;
        let mut output = vec![0u8; 4096];
        // SAFETY: the kernels read `input` up to its NUL, write at most
        // `output.len()` bytes into `output` (snprintf) and keep neither
        // pointer; they allocate and free their own buffers.
        let len = unsafe { kernel(input.as_ptr(), output.as_mut_ptr().cast(), output.len()) };
        let len = usize::try_from(len).ok().filter(|&len| len < output.len());
        let len = len.with_context(|| format!("{self} refused its input {input:?}"))?;
        output.truncate(len);
        Ok(output)
    }
}

impl fmt::Display for App {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

impl FromStr for App {
    type Err = String;

    fn from_str(name: &str) -> Result<App, String> {
        App::ALL.into_iter().find(|app| app.name() == name).ok_or_else(|| {
            let names: Vec<&str> = App::ALL.iter().map(|app| app.name()).collect();
            format!("unknown app {name:?}: one of {}, or all", names.join(", "))
        })
    }
}

unsafe extern "C" {
    fn quorum_nbody_kernel(input: *const c_char, output: *mut c_char, capacity: usize) -> c_int;
    fn quorum_matmul_kernel(input: *const c_char, output: *mut c_char, capacity: usize) -> c_int;
    fn quorum_fft_kernel(input: *const c_char, output: *mut c_char, capacity: usize) -> c_int;
    fn quorum_stencil_kernel(input: *const c_char, output: *mut c_char, capacity: usize) -> c_int;
    fn quorum_sort_kernel(input: *const c_char, output: *mut c_char, capacity: usize) -> c_int;
}

/// `start..end` in chunks of `chunk` numbers, the last one shortened, named
/// as `quorum submit` names range chunks: the units of primes.
pub fn prime_units(start: u64, end: u64, chunk: u64) -> Vec<Unit> {
    let mut units = Vec::new();
    let mut next = start;
    while next < end {
        let stop = next.saturating_add(chunk).min(end);
        units.push(Unit { name: format!("{next}-{stop}"), input: format!("{next} {stop}\n").into_bytes() });
        next = stop;
    }
    units
}

/// 1 if `n` is prime: primes.wat's `$is_prime`, in Rust.
pub fn is_prime(n: u64) -> bool {
    if n < 2 {
        return false;
    }
    if n < 4 {
        return true;
    }
    if n & 1 == 0 {
        return false;
    }
    let mut d = 3;
    loop {
        // d > sqrt(n) exactly when n / d < d (no overflow, unlike d * d).
        let q = n / d;
        if q < d {
            return true;
        }
        if q * d == n {
            return false;
        }
        d += 2;
    }
}

/// The number of primes in `start..end`, as primes.wat counts them.
pub fn count_primes(start: u64, end: u64) -> u64 {
    (start..end).filter(|&n| is_prime(n)).count() as u64
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn splits_ranges_like_quorum_submit() {
        let units = prime_units(0, 10_000_000, 50_000);
        assert_eq!(units.len(), 200);
        assert_eq!(units[0], Unit { name: "0-50000".into(), input: b"0 50000\n".to_vec() });
        assert_eq!(units[199].input, b"9950000 10000000\n");
        assert_eq!(prime_units(0, 7, 3).last().map(|unit| unit.input.clone()), Some(b"6 7\n".to_vec()));
    }

    #[test]
    fn native_count_matches_known_values() {
        assert_eq!(count_primes(0, 100), 25);
        assert_eq!(count_primes(0, 1_000_000), 78_498);
        assert!(!is_prime(1) && is_prime(2) && is_prime(3) && !is_prime(9) && is_prime(97));
        assert_eq!(App::Primes.native(b"0 100\n").unwrap(), b"25\n");
    }

    #[test]
    fn native_kernels_compute_known_values() {
        // The Benchmarks Game's published energies for 1,000 steps.
        assert_eq!(App::Nbody.native(b"1000\n").unwrap(), b"-0.169075164 -0.169087605\n");
        let sorted = App::Sort.native(b"1000 7\n").unwrap();
        assert_eq!(sorted, App::Sort.native(b"1000 7\n").unwrap(), "deterministic");
        // A round trip through the FFT and back loses almost nothing.
        let fft = String::from_utf8(App::Fft.native(b"10 1 3\n").unwrap()).unwrap();
        let error: f64 = fft.split_whitespace().next().unwrap().parse().unwrap();
        assert!(error < 1e-12, "round-trip error {error}");
        assert!(App::Matmul.native(b"0 1 1\n").is_err(), "a kernel refuses bad input");
    }

    #[test]
    fn kernel_units_scale_and_vary() {
        let units = App::Sort.kernel_units(KernelUnits { count: 3, work: 0.001 });
        let inputs: Vec<&[u8]> = units.iter().map(|unit| unit.input.as_slice()).collect();
        assert_eq!(inputs, [b"2000 0\n".as_slice(), b"2000 1\n", b"2000 2\n"]);
        assert_eq!(units[2].name, "sort-2");
        assert_eq!("fft".parse::<App>(), Ok(App::Fft));
        assert!("fortran".parse::<App>().is_err());
    }
}
