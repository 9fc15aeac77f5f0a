//! Unit tests with the C apps compiled to WASI that are committed under
//! `examples/hostile` and `examples/checkpoint` (rebuilt by
//! `scripts/build-apps`): the sandbox against real libc code.

use super::*;

/// A committed example app, by its path under `examples/`.
macro_rules! example {
    ($path:literal) => {
        include_bytes!(concat!(env!("CARGO_MANIFEST_DIR"), "/../examples/", $path))
    };
}

const SPIN: &[u8] = example!("hostile/spin.wasm");
const MEMBOMB: &[u8] = example!("hostile/membomb.wasm");
const FLOOD: &[u8] = example!("hostile/flood.wasm");
const STDERR_FLOOD: &[u8] = example!("hostile/stderr_flood.wasm");
const RECURSE: &[u8] = example!("hostile/recurse.wasm");
const SNOOP: &[u8] = example!("hostile/snoop.wasm");
const CLOCKRAND: &[u8] = example!("hostile/clockrand.wasm");
const SUMPRIMES: &[u8] = example!("checkpoint/sumprimes.wasm");

fn app_task(name: &str, module: &[u8], input: &[u8], seed: u64, limits: Limits) -> Task {
    Task {
        app_digest: name.to_string(),
        module: Arc::from(module),
        input: input.to_vec(),
        random_seed: seed,
        limits,
        nan_canonicalization: false,
        checkpoint_dir: None,
        input_dir: None,
        output_dir: None,
        args: Vec::new(),
        env: Vec::new(),
    }
}

/// Runs a committed app on a fresh sandbox.
fn run_app(name: &str, module: &[u8], input: &[u8], limits: Limits) -> Outcome {
    Sandbox::new().expect("sandbox").run(&app_task(name, module, input, 1, limits), control())
}

fn success(outcome: &Outcome) -> String {
    match &outcome.status {
        Status::Success(output) => String::from_utf8(output.clone()).expect("UTF-8 output"),
        other => panic!("unexpected status {other:?}, stderr: {}", outcome.stderr_tail),
    }
}

#[test]
fn hostile_apps_end_with_the_limit_they_hit() {
    let table = [
        ("spin", SPIN, Limits::with_defaults(10_000_000, 0, 0, 0, 0), "fuel limit exceeded"),
        ("spin", SPIN, Limits::with_defaults(u64::MAX, 0, 0, 100, 0), "wall time limit exceeded"),
        ("membomb", MEMBOMB, Limits::with_defaults(0, 16 << 20, 0, 0, 0), "memory limit exceeded"),
        ("flood", FLOOD, Limits::with_defaults(0, 0, 64 << 10, 0, 0), "output limit exceeded"),
        ("stderr_flood", STDERR_FLOOD, Limits::with_defaults(0, 0, 0, 0, 64 << 10), "stderr limit exceeded"),
        ("stderr_flood", STDERR_FLOOD, Limits::default(), "stderr limit exceeded"),
        ("recurse", RECURSE, Limits::default(), "trap: call stack exhausted"),
    ];
    for (name, module, limits, expected) in table {
        let outcome = run_app(name, module, b"", limits);
        assert_eq!(outcome.status, Status::Error(expected.to_string()), "{name} with {limits:?}");
    }
}

#[test]
fn hostile_apps_leave_their_traces_on_stderr() {
    let outcome = run_app("membomb", MEMBOMB, b"", Limits::with_defaults(0, 16 << 20, 0, 0, 0));
    assert!(outcome.stderr_tail.starts_with("membomb: malloc failed after"), "{}", outcome.stderr_tail);
    let outcome = run_app("stderr_flood", STDERR_FLOOD, b"", Limits::default());
    assert_eq!(outcome.stderr_tail.len(), wasi::STDERR_TAIL_BYTES);
    assert!(outcome.stderr_tail.bytes().all(|byte| byte == b'E' || byte == b'\n'));
}

#[test]
fn recursion_within_the_stack_succeeds() {
    // The same app with a small depth: the trap above is the stack, not a bug.
    let outcome = run_app("recurse", RECURSE, b"100", Limits::default());
    assert_eq!(success(&outcome), "149\n");
}

/// What snoop sees in the sandbox, with or without a checkpoint directory.
const SNOOP_OUTPUT: &str = include_str!("../../../examples/hostile/snoop.expected");

#[test]
fn snoop_is_denied_everything() {
    assert_eq!(success(&run_app("snoop", SNOOP, b"", Limits::default())), SNOOP_OUTPUT);
    // With a checkpoint directory, escaping it is denied too.
    let parent = tempfile::tempdir().expect("temp dir");
    let dir = parent.path().join("checkpoint");
    std::fs::create_dir(&dir).expect("checkpoint dir");
    let mut task = app_task("snoop", SNOOP, b"", 1, Limits::default());
    task.checkpoint_dir = Some(dir.clone());
    let outcome = Sandbox::new().expect("sandbox").run(&task, control());
    assert_eq!(success(&outcome), SNOOP_OUTPUT);
    assert_eq!(std::fs::read_dir(parent.path()).expect("parent").count(), 1, "nothing written beside the dir");
    assert_eq!(std::fs::read_dir(&dir).expect("dir").count(), 0, "nothing written in the dir");
}

#[test]
fn clockrand_depends_only_on_the_seed() {
    let sandbox = Sandbox::new().expect("sandbox");
    let output =
        |seed| success(&sandbox.run(&app_task("clockrand", CLOCKRAND, b"", seed, Limits::default()), control()));
    let first = output(7);
    assert_eq!(first, output(7), "same seed, same output");
    let other = output(8);
    let lines = |text: &str| text.lines().map(str::to_string).collect::<Vec<_>>();
    let (first, other) = (lines(&first), lines(&other));
    assert_eq!(
        first[..4],
        [
            "time: 946684800",
            "realtime: 946684800.000000000",
            "monotonic: 1.000000000",
            // The sleep took no time, yet the virtual clock moved by what was asked.
            "monotonic after sleep(1): 2.000000000"
        ]
    );
    assert_eq!(first[..4], other[..4], "clocks do not depend on the seed");
    assert!(first[4].starts_with("getentropy: ") && first[5].starts_with("arc4random: "), "{first:?}");
    assert_ne!(first[4], other[4], "getentropy depends on the seed");
    assert_ne!(first[5], other[5], "arc4random depends on the seed");
    assert_eq!(first[6], other[6], "rand() is libc's own generator, seeded with 1");
}

// The checkpointing app.

/// `COUNT SUM\n` of the primes in `[start, end)`, computed here.
fn primes_count_and_sum(start: u64, end: u64) -> String {
    let is_prime = |n: u64| n >= 2 && (2..).take_while(|d| d * d <= n).all(|d| !n.is_multiple_of(d));
    let primes: Vec<u64> = (start..end).filter(|&n| is_prime(n)).collect();
    format!("{} {}\n", primes.len(), primes.iter().fold(0u64, |sum, &p| sum.wrapping_add(p)))
}

fn sumprimes_task(input: &str, checkpoint_dir: Option<&std::path::Path>) -> Task {
    let mut task = app_task("sumprimes", SUMPRIMES, input.as_bytes(), 1, Limits::default());
    task.checkpoint_dir = checkpoint_dir.map(std::path::Path::to_path_buf);
    task
}

#[test]
fn sumprimes_counts_and_sums_primes() {
    for (start, end) in [(0, 100), (0, 2), (2, 3), (999_990, 1_012_345)] {
        let outcome = run_app("sumprimes", SUMPRIMES, format!("{start} {end}").as_bytes(), Limits::default());
        assert_eq!(success(&outcome), primes_count_and_sum(start, end), "{start} {end}");
    }
    assert_eq!(run_app("sumprimes", SUMPRIMES, b"5 1", Limits::default()).status, Status::Error("exit code 1".into()));
}

#[test]
fn sumprimes_resumes_from_its_checkpoint_with_identical_output() {
    // 10 chunks of 10,000 numbers: a checkpoint after each of the first 9.
    const INPUT: &str = "1000000000 1000100000";
    let sandbox = Arc::new(Sandbox::new().expect("sandbox"));
    let uninterrupted = sandbox.run(&sumprimes_task(INPUT, None), control());
    let expected = success(&uninterrupted);

    let dir = tempfile::tempdir().expect("temp dir");
    let state = dir.path().join("state");
    let control = control();
    let first = {
        let (sandbox, task, control) = (sandbox.clone(), sumprimes_task(INPUT, Some(dir.path())), control.clone());
        std::thread::spawn(move || sandbox.run(&task, control))
    };
    // Waits for the first checkpoint (an event no channel reports: the file).
    while !state.exists() {
        assert!(!first.is_finished(), "the app ended without a checkpoint");
        std::thread::yield_now();
    }
    control.abort();
    let first = first.join().expect("task thread");
    assert_eq!(first.status, Status::Aborted);
    let saved = std::fs::read_to_string(&state).expect("state");
    assert!(saved.starts_with("sumprimes-1 1000000000 1000100000 "), "{saved}");

    let resumed = sandbox.run(&sumprimes_task(INPUT, Some(dir.path())), TaskControl::new(Gate::new()));
    assert_eq!(success(&resumed), expected, "byte-identical output after a resume");
    assert!(resumed.stderr_tail.starts_with("sumprimes: resuming at "), "{}", resumed.stderr_tail);
    assert!(
        resumed.fuel_used < uninterrupted.fuel_used,
        "the second segment ({}) did less work than a full run ({})",
        resumed.fuel_used,
        uninterrupted.fuel_used
    );
}

#[test]
fn sumprimes_ignores_a_checkpoint_of_another_range() {
    let dir = tempfile::tempdir().expect("temp dir");
    std::fs::write(dir.path().join("state"), "sumprimes-1 0 50 40 12 197\n").expect("state");
    let outcome = Sandbox::new().expect("sandbox").run(&sumprimes_task("0 100", Some(dir.path())), control());
    assert_eq!(success(&outcome), primes_count_and_sum(0, 100));
    assert!(outcome.stderr_tail.contains("ignoring a checkpoint"), "{}", outcome.stderr_tail);
}

// The C kernels of `quorum-bench worker` (bench/apps/kernels).

/// A kernel of `bench/apps/kernels` and a small input for it.
macro_rules! kernel {
    ($name:literal, $input:literal) => {
        ($name, include_bytes!(concat!(env!("CARGO_MANIFEST_DIR"), "/../bench/apps/kernels/", $name, ".wasm")), $input)
    };
}

const KERNELS: [(&str, &[u8], &str); 5] = [
    kernel!("nbody", "2000\n"),
    kernel!("matmul", "48 2 7\n"),
    kernel!("fft", "10 2 7\n"),
    kernel!("stencil", "48 20\n"),
    kernel!("sort", "20000 7\n"),
];

/// Honest copies of float-heavy C code agree byte for byte and by fuel under
/// both NaN policies, whether their host compiled the module (a fresh
/// sandbox, so a fresh engine) or loaded it compiled from disk after a
/// restart; and these kernels, which make no NaN, print the same under both.
#[test]
fn honest_copies_agree_by_output_and_fuel_under_every_policy() {
    let cache = tempfile::tempdir().expect("cache dir");
    for (name, module, input) in KERNELS {
        // The compiled cache keys modules by their digest, as the worker does.
        let digest = sha256_hex(module);
        let mut outputs = Vec::new();
        for nan_canonicalization in [false, true] {
            let mut task = app_task(&digest, module, input.as_bytes(), 1, Limits::default());
            task.nan_canonicalization = nan_canonicalization;
            let cached = || Sandbox::new().expect("sandbox").with_compiled_cache(cache.path());
            let (writer, restarted) = (cached(), cached());
            let copies = [
                Sandbox::new().expect("sandbox").run(&task, control()),
                Sandbox::new().expect("sandbox").run(&task, control()),
                // Compiles and writes the module to disk, then a "restarted"
                // host loads it from there.
                writer.run(&task, control()),
                restarted.run(&task, control()),
            ];
            assert_eq!((writer.compilations(), restarted.compilations()), (1, 0), "{name}");
            let first = success(&copies[0]);
            assert!(!first.is_empty(), "{name}");
            for copy in &copies[1..] {
                assert_eq!(success(copy), first, "{name}, NaN canonicalization {nan_canonicalization}");
                assert_eq!(copy.fuel_used, copies[0].fuel_used, "{name}, NaN canonicalization {nan_canonicalization}");
            }
            outputs.push(first);
        }
        assert_eq!(outputs[0], outputs[1], "{name}: no NaN, so the policies print the same");
    }
    let cached = std::fs::read_dir(cache.path()).expect("cache dir").count();
    assert_eq!(cached, 2 * KERNELS.len(), "one compiled file per kernel and policy");
}
