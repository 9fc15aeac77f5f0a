//! Unit tests of the sandbox: real wasmtime, tiny WAT apps and validators
//! written inline; `apps` runs the committed C apps.

use super::*;

mod apps;

/// WASI imports most test apps need.
const IMPORTS: &str = r#"
  (import "wasi_snapshot_preview1" "fd_read" (func $fd_read (param i32 i32 i32 i32) (result i32)))
  (import "wasi_snapshot_preview1" "fd_write" (func $fd_write (param i32 i32 i32 i32) (result i32)))
  (import "wasi_snapshot_preview1" "proc_exit" (func $proc_exit (param i32)))
"#;

/// Copies stdin to stdout, 4 KiB at a time.
const ECHO: &str = r#"
  (memory (export "memory") 1)
  (func (export "_start")
    (local $n i32)
    (block $done
      (loop $next
        (i32.store (i32.const 0) (i32.const 1024))
        (i32.store (i32.const 4) (i32.const 4096))
        (i32.store (i32.const 8) (i32.const 0))
        (drop (call $fd_read (i32.const 0) (i32.const 0) (i32.const 1) (i32.const 8)))
        (local.set $n (i32.load (i32.const 8)))
        (br_if $done (i32.eqz (local.get $n)))
        (i32.store (i32.const 4) (local.get $n))
        (drop (call $fd_write (i32.const 1) (i32.const 0) (i32.const 1) (i32.const 8)))
        (br $next))))
"#;

fn app(body: &str) -> String {
    format!("(module {IMPORTS} {body})")
}

fn task(wat: &str, input: &[u8], seed: u64, limits: Limits) -> Task {
    Task {
        // Tests key the module cache by the source text itself: distinct apps
        // must not share an entry.
        app_digest: wat.to_string(),
        module: Arc::from(wat.as_bytes()),
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

/// A control for a task on its own open gate.
fn control() -> Arc<TaskControl> {
    TaskControl::new(Gate::new())
}

fn run_with(sandbox: &Sandbox, wat: &str, input: &[u8], seed: u64, limits: Limits) -> Outcome {
    sandbox.run(&task(wat, input, seed, limits), control())
}

/// Runs `wat` with `limits` on a fresh sandbox and checks the status.
fn check(wat: &str, input: &[u8], limits: Limits, expected: Status) -> Outcome {
    let sandbox = Sandbox::new().expect("sandbox");
    let outcome = run_with(&sandbox, wat, input, 1, limits);
    assert_eq!(outcome.status, expected, "stderr: {}", outcome.stderr_tail);
    outcome
}

fn error(message: &str) -> Status {
    Status::Error(message.to_string())
}

/// Prints its command line, "--", then its environment (see the file).
const PRINT_ARGS: &str = include_str!(concat!(env!("CARGO_MANIFEST_DIR"), "/../tests/apps/print_args.wat"));

/// The app sees the task's command line and environment, in the order
/// given, and nothing of the host's; without a command line, `["app"]`.
#[test]
fn args_and_env_reach_the_app() {
    let mut with_args = task(PRINT_ARGS, b"", 1, Limits::default());
    with_args.args = vec!["demo".into(), "--steps".into(), "100".into(), "".into(), "two words".into()];
    with_args.env = vec![("A".into(), "1".into()), ("EMPTY".into(), String::new()), ("Z".into(), "x=y".into())];
    let outcome = Sandbox::new().expect("sandbox").run(&with_args, control());
    assert_eq!(outcome.status, Status::Success(b"demo\n--steps\n100\n\ntwo words\n--\nA=1\nEMPTY=\nZ=x=y\n".to_vec()));

    let outcome = Sandbox::new().expect("sandbox").run(&task(PRINT_ARGS, b"", 1, Limits::default()), control());
    assert_eq!(outcome.status, Status::Success(b"app\n--\n".to_vec()), "no command line, no environment");
}

#[test]
fn echo_copies_stdin_to_stdout() {
    let input: Vec<u8> = (0..10_000u32).map(|i| (i % 251) as u8).collect();
    let outcome = check(&app(ECHO), &input, Limits::default(), Status::Success(input.clone()));
    assert!(outcome.fuel_used > 0);
}

#[test]
fn fuel_is_identical_across_runs() {
    let sandbox = Sandbox::new().expect("sandbox");
    let wat = app(ECHO);
    let first = run_with(&sandbox, &wat, b"hello world\n", 1, Limits::default());
    let second = run_with(&sandbox, &wat, b"hello world\n", 1, Limits::default());
    assert_eq!(first.status, Status::Success(b"hello world\n".to_vec()));
    assert_eq!(first.fuel_used, second.fuel_used);
    // And on a second sandbox (fresh engine, fresh compilation).
    let third = run_with(&Sandbox::new().expect("sandbox"), &wat, b"hello world\n", 1, Limits::default());
    assert_eq!(first.fuel_used, third.fuel_used);
}

#[test]
fn exit_codes() {
    let exit = |code: i32| {
        app(&format!(
            r#"(memory (export "memory") 1)
               (func (export "_start") (call $proc_exit (i32.const {code})))"#
        ))
    };
    check(&exit(0), b"", Limits::default(), Status::Success(Vec::new()));
    // Any status as the app gave it (wasmtime-wasi traps from 126 on).
    for code in [1, 3, 125, 126, 255, -1] {
        check(&exit(code), b"", Limits::default(), error(&format!("exit code {code}")));
    }
}

#[test]
fn trap_is_reported() {
    let wat = app(r#"(memory (export "memory") 1) (func (export "_start") unreachable)"#);
    let outcome = check(&wat, b"", Limits::default(), error("trap: wasm `unreachable` instruction executed"));
    assert!(outcome.fuel_used > 0);
}

const INFINITE_LOOP: &str = r#"(memory (export "memory") 1) (func (export "_start") (loop $l (br $l)))"#;

/// An endless loop that calls a function on every iteration: compiled code
/// saves its fuel counter where the epoch callback can read it only at calls
/// and returns, so progress shows only for code that makes calls.
const INFINITE_LOOP_WITH_CALLS: &str = r#"(memory (export "memory") 1)
  (func $step)
  (func (export "_start") (loop $l (call $step) (br $l)))"#;

#[test]
fn infinite_loop_hits_the_fuel_limit() {
    let limits = Limits::with_defaults(1_000_000, 0, 0, 0, 0);
    let outcome = check(&app(INFINITE_LOOP), b"", limits, error("fuel limit exceeded"));
    assert_eq!(outcome.fuel_used, 1_000_000);
}

#[test]
fn infinite_loop_with_huge_fuel_hits_the_wall_time_limit() {
    let limits = Limits::with_defaults(u64::MAX, 0, 0, 200, 0);
    check(&app(INFINITE_LOOP), b"", limits, error("wall time limit exceeded"));
}

#[test]
fn aborted_control_stops_a_task() {
    let sandbox = Sandbox::new().expect("sandbox");
    let limits = Limits::with_defaults(u64::MAX, 0, 0, 0, 0);
    let control = control();
    control.abort();
    let outcome = sandbox.run(&task(&app(INFINITE_LOOP), b"", 1, limits), control);
    assert_eq!(outcome.status, Status::Aborted);
}

#[test]
fn memory_grow_beyond_the_cap() {
    // Grows by 64 pages (4 MiB) against a 1 MiB cap, traps if that failed.
    let wat = app(r#"(memory (export "memory") 1)
           (func (export "_start")
             (if (i32.eq (memory.grow (i32.const 64)) (i32.const -1)) (then unreachable)))"#);
    check(&wat, b"", Limits::with_defaults(0, 1 << 20, 0, 0, 0), error("memory limit exceeded"));
    // The same app within its cap succeeds.
    check(&wat, b"", Limits::with_defaults(0, 8 << 20, 0, 0, 0), Status::Success(Vec::new()));
}

#[test]
fn output_over_the_limit() {
    let input = vec![b'x'; 100];
    check(&app(ECHO), &input, Limits::with_defaults(0, 0, 10, 0, 0), error("output limit exceeded"));
    check(&app(ECHO), &input, Limits::with_defaults(0, 0, 100, 0, 0), Status::Success(input.clone()));
}

#[test]
fn app_without_start_is_rejected() {
    let wat = r#"(module (memory (export "memory") 1) (func (export "main")))"#;
    check(wat, b"", Limits::default(), error("app has no _start export"));
}

#[test]
fn invalid_module_is_an_error() {
    let sandbox = Sandbox::new().expect("sandbox");
    let outcome = run_with(&sandbox, "not wasm", b"", 1, Limits::default());
    assert!(
        matches!(&outcome.status, Status::Error(message) if message.starts_with("invalid module")),
        "{:?}",
        outcome.status
    );
}

/// Writes the wall clock, the monotonic clock and 16 random bytes to stdout.
const CLOCKS_AND_RANDOM: &str = r#"
  (import "wasi_snapshot_preview1" "clock_time_get" (func $clock_time_get (param i32 i64 i32) (result i32)))
  (import "wasi_snapshot_preview1" "random_get" (func $random_get (param i32 i32) (result i32)))
  (memory (export "memory") 1)
  (func (export "_start")
    (drop (call $clock_time_get (i32.const 0) (i64.const 0) (i32.const 16)))
    (drop (call $clock_time_get (i32.const 1) (i64.const 0) (i32.const 24)))
    (drop (call $random_get (i32.const 32) (i32.const 16)))
    (i32.store (i32.const 0) (i32.const 16))
    (i32.store (i32.const 4) (i32.const 32))
    (drop (call $fd_write (i32.const 1) (i32.const 0) (i32.const 1) (i32.const 8))))
"#;

#[test]
fn clocks_and_randomness_are_deterministic() {
    let sandbox = Sandbox::new().expect("sandbox");
    let wat = app(CLOCKS_AND_RANDOM);
    let output = |seed| match run_with(&sandbox, &wat, b"", seed, Limits::default()).status {
        Status::Success(output) => output,
        other => panic!("unexpected status {other:?}"),
    };
    let first = output(42);
    assert_eq!(first.len(), 32);
    assert_eq!(first, output(42));
    let wall_clock_nanos = u64::from_le_bytes(first[..8].try_into().expect("8 bytes"));
    assert_eq!(wall_clock_nanos, 946_684_800 * 1_000_000_000);
    let other_seed = output(43);
    assert_eq!(first[..16], other_seed[..16], "clocks do not depend on the seed");
    assert_ne!(first[16..], other_seed[16..], "random bytes do");
}

#[test]
fn no_filesystem() {
    // path_open on fd 3 (the first preopen, if there were one); exits with the errno.
    let wat = app(r#"(import "wasi_snapshot_preview1" "path_open"
             (func $path_open (param i32 i32 i32 i32 i32 i64 i64 i32 i32) (result i32)))
           (memory (export "memory") 1)
           (data (i32.const 100) "etc/passwd")
           (func (export "_start")
             (call $proc_exit (call $path_open (i32.const 3) (i32.const 0) (i32.const 100) (i32.const 10)
               (i32.const 0) (i64.const 2) (i64.const 0) (i32.const 0) (i32.const 200))))"#);
    // errno 8: badf.
    check(&wat, b"", Limits::default(), error("exit code 8"));
}

/// An app that polls `subscriptions` (WAT statements filling the 48-byte
/// subscriptions from offset 1000; `n` of them), then writes to stdout the
/// number of events (u32), the first event's userdata (u64) and the
/// monotonic clock afterwards (u64).
fn poller(subscriptions: &str, n: usize) -> String {
    app(&format!(
        r#"(import "wasi_snapshot_preview1" "poll_oneoff" (func $poll_oneoff (param i32 i32 i32 i32) (result i32)))
           (import "wasi_snapshot_preview1" "clock_time_get" (func $clock_time_get (param i32 i64 i32) (result i32)))
           (memory (export "memory") 1)
           (func (export "_start")
             {subscriptions}
             (if (call $poll_oneoff (i32.const 1000) (i32.const 2000) (i32.const {n}) (i32.const 100))
               (then unreachable))
             (i64.store (i32.const 104) (i64.load (i32.const 2000)))
             (if (call $clock_time_get (i32.const 1) (i64.const 0) (i32.const 112)) (then unreachable))
             (i32.store (i32.const 0) (i32.const 100))
             (i32.store (i32.const 4) (i32.const 20))
             (drop (call $fd_write (i32.const 1) (i32.const 0) (i32.const 1) (i32.const 8))))"#
    ))
}

/// WAT filling subscription `index`: a relative monotonic clock of `nanos`.
fn clock_subscription(index: usize, userdata: u64, nanos: u64) -> String {
    let at = 1000 + index * 48;
    format!(
        "(i64.store (i32.const {at}) (i64.const {userdata})) (i32.store8 (i32.const {}) (i32.const 0)) \
         (i32.store (i32.const {}) (i32.const 1)) (i64.store (i32.const {}) (i64.const {nanos}))",
        at + 8,
        at + 16,
        at + 24
    )
}

/// WAT filling subscription `index`: `fd` ready for writing (type 2) or reading (1).
fn fd_subscription(index: usize, userdata: u64, event_type: u8, fd: u32) -> String {
    let at = 1000 + index * 48;
    format!(
        "(i64.store (i32.const {at}) (i64.const {userdata})) (i32.store8 (i32.const {}) (i32.const {event_type})) \
         (i32.store (i32.const {}) (i32.const {fd}))",
        at + 8,
        at + 16
    )
}

/// What `poller` printed: events, first userdata, monotonic nanoseconds.
fn polled(outcome: &Outcome) -> (u32, u64, u64) {
    let Status::Success(out) = &outcome.status else { panic!("{:?}", outcome.status) };
    let word = |range: std::ops::Range<usize>| out[range].iter().rev().fold(0u64, |acc, b| acc << 8 | u64::from(*b));
    (word(0..4) as u32, word(4..12), word(12..20))
}

const HOUR_NANOS: u64 = 3_600_000_000_000;
const START_NANOS: u64 = 1_000_000_000;

#[test]
fn a_sleep_returns_at_once_and_advances_the_virtual_clock() {
    // Two clocks: the earlier fires alone, and the clock moves by exactly its
    // timeout. wasmtime-wasi's own version would block the thread for it.
    let subscriptions = clock_subscription(0, 7, HOUR_NANOS) + &clock_subscription(1, 8, 2 * HOUR_NANOS);
    let sandbox = Sandbox::new().expect("sandbox");
    let outcome = run_with(&sandbox, &poller(&subscriptions, 2), b"", 1, Limits::default());
    assert_eq!(polled(&outcome), (1, 7, START_NANOS + HOUR_NANOS));
}

#[test]
fn ready_descriptors_answer_a_poll_and_no_clock_fires_with_them() {
    // stdout writable and a clock: only the descriptor's event, time stands still.
    let both = clock_subscription(0, 7, 200_000_000) + &fd_subscription(1, 9, 2, 1);
    let sandbox = Sandbox::new().expect("sandbox");
    assert_eq!(polled(&run_with(&sandbox, &poller(&both, 2), b"", 1, Limits::default())), (1, 9, START_NANOS));
    // stdin readable and stderr writable, alone: both ready.
    let descriptors = fd_subscription(0, 3, 1, 0) + &fd_subscription(1, 4, 2, 2);
    assert_eq!(polled(&run_with(&sandbox, &poller(&descriptors, 2), b"x", 1, Limits::default())), (2, 3, START_NANOS));
}

#[test]
fn stderr_tail_is_kept() {
    let wat = app(r#"(memory (export "memory") 1)
           (data (i32.const 100) "oops")
           (func (export "_start")
             (i32.store (i32.const 0) (i32.const 100))
             (i32.store (i32.const 4) (i32.const 4))
             (drop (call $fd_write (i32.const 2) (i32.const 0) (i32.const 1) (i32.const 8)))
             (call $proc_exit (i32.const 1)))"#);
    let outcome = check(&wat, b"", Limits::default(), error("exit code 1"));
    assert_eq!(outcome.stderr_tail, "oops");
}

#[test]
fn zero_limits_mean_worker_defaults() {
    assert_eq!(
        Limits::with_defaults(0, 0, 0, 0, 0),
        Limits {
            fuel: DEFAULT_FUEL,
            memory_bytes: DEFAULT_MEMORY_BYTES,
            output_bytes: DEFAULT_OUTPUT_BYTES,
            wall_time: DEFAULT_WALL_TIME,
            stderr_bytes: DEFAULT_STDERR_BYTES,
        }
    );
    assert_eq!(Limits::with_defaults(5, 6, 7, 8, 0).wall_time, Duration::from_millis(8));
}

// The checkpoint directory.

/// Probes the filesystem: writes to stdout the errno of `fd_prestat_get(3)`,
/// the name of preopen 3, the errnos of `fd_prestat_get(4)`, of opening
/// `../x` and `/etc/passwd` from fd 3, and of creating `out` in fd 3; then
/// writes "hello" into `out`.
const FS_PROBE: &str = r#"
  (import "wasi_snapshot_preview1" "path_open"
    (func $path_open (param i32 i32 i32 i32 i32 i64 i64 i32 i32) (result i32)))
  (import "wasi_snapshot_preview1" "fd_prestat_get" (func $fd_prestat_get (param i32 i32) (result i32)))
  (import "wasi_snapshot_preview1" "fd_prestat_dir_name" (func $fd_prestat_dir_name (param i32 i32 i32) (result i32)))
  (memory (export "memory") 1)
  (data (i32.const 100) "../x")
  (data (i32.const 110) "/etc/passwd")
  (data (i32.const 130) "out")
  (data (i32.const 140) "hello")
  ;; Writes memory[ptr, ptr + len) to stdout (iovec at 0, count at 8).
  (func $put (param $ptr i32) (param $len i32)
    (i32.store (i32.const 0) (local.get $ptr))
    (i32.store (i32.const 4) (local.get $len))
    (drop (call $fd_write (i32.const 1) (i32.const 0) (i32.const 1) (i32.const 8))))
  (func $byte (param $b i32)
    (i32.store8 (i32.const 20) (local.get $b))
    (call $put (i32.const 20) (i32.const 1)))
  ;; Opens a path relative to fd 3 with every right; the new fd goes to 24.
  (func $open (param $path i32) (param $len i32) (param $oflags i32) (result i32)
    (call $path_open (i32.const 3) (i32.const 0) (local.get $path) (local.get $len) (local.get $oflags)
      (i64.const 0x1FFFFFFF) (i64.const 0x1FFFFFFF) (i32.const 0) (i32.const 24)))
  (func (export "_start")
    (call $byte (call $fd_prestat_get (i32.const 3) (i32.const 32)))
    (drop (call $fd_prestat_dir_name (i32.const 3) (i32.const 200) (i32.load (i32.const 36))))
    (call $put (i32.const 200) (i32.load (i32.const 36)))
    (call $byte (call $fd_prestat_get (i32.const 4) (i32.const 32)))
    (call $byte (call $open (i32.const 100) (i32.const 4) (i32.const 1)))
    (call $byte (call $open (i32.const 110) (i32.const 11) (i32.const 0)))
    ;; oflags 9: create, truncate.
    (call $byte (call $open (i32.const 130) (i32.const 3) (i32.const 9)))
    (i32.store (i32.const 0) (i32.const 140))
    (i32.store (i32.const 4) (i32.const 5))
    (drop (call $fd_write (i32.load (i32.const 24)) (i32.const 0) (i32.const 1) (i32.const 8))))
"#;

/// WASI errno 8: bad file descriptor.
const ERRNO_BADF: u8 = 8;

#[test]
fn checkpoint_dir_is_the_only_preopen_and_cannot_be_escaped() {
    let dir = tempfile::tempdir().expect("temp dir");
    let sandbox = Sandbox::new().expect("sandbox");
    let mut task = task(&app(FS_PROBE), b"", 1, Limits::default());
    task.checkpoint_dir = Some(dir.path().to_path_buf());
    let outcome = sandbox.run(&task, control());
    let Status::Success(output) = outcome.status else { panic!("unexpected status {:?}", outcome.status) };
    let (head, errnos) = output.split_at(output.len() - 4);
    assert_eq!(head, b"\0/checkpoint", "fd 3 is /checkpoint");
    let [no_fd_4, dot_dot, etc_passwd, create] = errnos.try_into().expect("4 errnos");
    assert_eq!(no_fd_4, ERRNO_BADF, "no second preopen");
    assert_ne!(dot_dot, 0, "../x must not open");
    assert_ne!(etc_passwd, 0, "/etc/passwd must not open");
    assert_eq!(create, 0, "creating a file in /checkpoint works");
    assert_eq!(std::fs::read(dir.path().join("out")).expect("out written"), b"hello");
    assert!(!dir.path().parent().expect("parent").join("x").exists());
}

#[test]
fn without_checkpoint_dir_there_is_no_filesystem() {
    // No preopen, so no name, and every call answers "bad file descriptor".
    check(&app(FS_PROBE), b"", Limits::default(), Status::Success(vec![ERRNO_BADF; 5]));
}

#[test]
fn missing_checkpoint_dir_is_an_error() {
    let dir = tempfile::tempdir().expect("temp dir");
    let sandbox = Sandbox::new().expect("sandbox");
    let mut task = task(&app(FS_PROBE), b"", 1, Limits::default());
    task.checkpoint_dir = Some(dir.path().join("missing"));
    let outcome = sandbox.run(&task, control());
    assert!(
        matches!(&outcome.status, Status::Error(message) if message.starts_with("cannot open the checkpoint directory")),
        "{:?}",
        outcome.status
    );
}

// stderr.

/// Writes "oops" to stderr `$n` times (`$n` = the first byte of stdin, 0
/// meaning forever).
const STDERR_WRITER: &str = r#"
  (memory (export "memory") 1)
  (data (i32.const 100) "oops")
  (func (export "_start")
    (local $n i32)
    (i32.store (i32.const 0) (i32.const 200))
    (i32.store (i32.const 4) (i32.const 1))
    (drop (call $fd_read (i32.const 0) (i32.const 0) (i32.const 1) (i32.const 8)))
    (local.set $n (i32.load8_u (i32.const 200)))
    (i32.store (i32.const 0) (i32.const 100))
    (i32.store (i32.const 4) (i32.const 4))
    (loop $l
      (if (call $fd_write (i32.const 2) (i32.const 0) (i32.const 1) (i32.const 8)) (then unreachable))
      (local.set $n (i32.sub (local.get $n) (i32.const 1)))
      (br_if $l (local.get $n))))
"#;

#[test]
fn stderr_over_the_limit() {
    let limits = Limits::with_defaults(0, 0, 0, 0, 100);
    let outcome = check(&app(STDERR_WRITER), &[0], limits, error("stderr limit exceeded"));
    assert!(outcome.stderr_tail.ends_with("oopsoops"), "{}", outcome.stderr_tail);
    // 25 writes of 4 bytes are exactly the limit.
    let outcome = check(&app(STDERR_WRITER), &[25], limits, Status::Success(Vec::new()));
    assert_eq!(outcome.stderr_tail, "oops".repeat(25));
}

// Pause, throttle, abort, progress.

/// Runs `wat` on a thread of its own under `control`.
fn spawn_run(
    sandbox: &Arc<Sandbox>,
    wat: &str,
    limits: Limits,
    control: &Arc<TaskControl>,
) -> std::thread::JoinHandle<Outcome> {
    let (sandbox, task, control) = (sandbox.clone(), task(wat, b"", 1, limits), control.clone());
    std::thread::spawn(move || sandbox.run(&task, control))
}

/// Waits until `control`'s task shows more progress than `fuel` (it has run
/// past an epoch tick): an event no channel reports, so it is polled.
fn wait_for_progress(control: &TaskControl, fuel: u64) {
    while control.fuel_used() <= fuel {
        std::thread::yield_now();
    }
}

#[test]
fn paused_gate_holds_every_task_until_resumed() {
    let sandbox = Arc::new(Sandbox::new().expect("sandbox"));
    let gate = Gate::new();
    // Endless loops, without a wall time limit that could end them before
    // the pause: the test aborts them once they have run again.
    let limits = Limits::with_defaults(u64::MAX, 0, 0, 0, 0);
    let controls = [TaskControl::new(gate.clone()), TaskControl::new(gate.clone())];
    let threads: Vec<_> =
        controls.iter().map(|control| spawn_run(&sandbox, &app(INFINITE_LOOP_WITH_CALLS), limits, control)).collect();
    for control in &controls {
        wait_for_progress(control, 0);
    }
    gate.pause();
    assert!(gate.is_paused());
    gate.wait_for_waiting(2);
    let fuel_at_pause: Vec<u64> = controls.iter().map(|control| control.fuel_used()).collect();
    for thread in &threads {
        assert!(!thread.is_finished(), "a paused task is held");
    }
    gate.resume();
    assert!(!gate.is_paused());
    for (control, fuel_at_pause) in controls.iter().zip(&fuel_at_pause) {
        // Progress beyond the pause: the task runs again.
        wait_for_progress(control, *fuel_at_pause);
        control.abort();
    }
    for (thread, control) in threads.into_iter().zip(&controls) {
        let outcome = thread.join().expect("task thread");
        assert_eq!(outcome.status, Status::Aborted);
        assert_eq!(control.fuel_used(), outcome.fuel_used, "final progress is exact");
        assert!(control.idle() > Duration::ZERO);
    }
}

#[test]
fn task_started_on_a_paused_gate_waits_before_running() {
    let sandbox = Arc::new(Sandbox::new().expect("sandbox"));
    let gate = Gate::new();
    gate.pause();
    let control = TaskControl::new(gate.clone());
    let thread = spawn_run(&sandbox, &app(ECHO), Limits::default(), &control);
    gate.wait_for_waiting(1);
    assert!(!thread.is_finished());
    assert_eq!(control.fuel_used(), 0, "nothing ran");
    gate.resume();
    assert_eq!(thread.join().expect("task thread").status, Status::Success(Vec::new()));
    assert!(control.fuel_used() > 0);
}

#[test]
fn aborting_a_paused_task_ends_it() {
    let sandbox = Arc::new(Sandbox::new().expect("sandbox"));
    let gate = Gate::new();
    let control = TaskControl::new(gate.clone());
    let limits = Limits::with_defaults(u64::MAX, 0, 0, 0, 0);
    let thread = spawn_run(&sandbox, &app(INFINITE_LOOP_WITH_CALLS), limits, &control);
    wait_for_progress(&control, 0);
    gate.pause();
    gate.wait_for_waiting(1);
    control.abort();
    assert!(control.is_aborted());
    assert_eq!(thread.join().expect("task thread").status, Status::Aborted);
    assert!(gate.is_paused(), "aborting a task leaves the gate paused");
    // So is one aborted while it waits to start.
    let control = TaskControl::new(gate.clone());
    let thread = spawn_run(&sandbox, &app(INFINITE_LOOP), limits, &control);
    gate.wait_for_waiting(1);
    control.abort();
    assert_eq!(thread.join().expect("task thread").status, Status::Aborted);
}

/// An endless loop that keeps a float and a vector in registers across its
/// loop header, where the fuel and epoch checks are, and traps if either
/// ever differs from the integer count it derives from: the checks' calls
/// (vendor/README.md) must leave every register as it was. It calls a
/// function once every 65,536 iterations so that its progress shows.
const FLOATS_ACROSS_CHECKS: &str = r#"(memory (export "memory") 1)
  (func $step)
  (func (export "_start")
    (local $i i64) (local $a f64) (local $b v128)
    (loop $outer
      (call $step)
      (loop $inner
        (local.set $i (i64.add (local.get $i) (i64.const 1)))
        (local.set $a (f64.add (local.get $a) (f64.const 1)))
        (local.set $b (f64x2.add (local.get $b) (v128.const f64x2 1 2)))
        (if (f64.ne (local.get $a) (f64.convert_i64_u (local.get $i))) (then unreachable))
        (if (f64.ne (f64x2.extract_lane 1 (local.get $b)) (f64.mul (local.get $a) (f64.const 2)))
          (then unreachable))
        (br_if $inner (i64.ne (i64.and (local.get $i) (i64.const 0xffff)) (i64.const 0))))
      (br $outer)))"#;

#[test]
fn registers_survive_the_epoch_checks_calls() {
    let sandbox = Arc::new(Sandbox::new().expect("sandbox"));
    let gate = Gate::new();
    let control = TaskControl::new(gate.clone());
    let limits = Limits::with_defaults(u64::MAX, 0, 0, 0, 0);
    let thread = spawn_run(&sandbox, &app(FLOATS_ACROSS_CHECKS), limits, &control);
    wait_for_progress(&control, 0);
    // Held inside the epoch callback (the builtin the checks call), then
    // resumed: the loop goes on with the values it had.
    gate.pause();
    gate.wait_for_waiting(1);
    let fuel_at_pause = control.fuel_used();
    gate.resume();
    wait_for_progress(&control, fuel_at_pause);
    control.abort();
    let outcome = thread.join().expect("task thread");
    assert_eq!(outcome.status, Status::Aborted, "stderr: {}", outcome.stderr_tail);
}

#[test]
fn throttled_time_is_not_run_time() {
    let sandbox = Arc::new(Sandbox::new().expect("sandbox"));
    let gate = Gate::new();
    gate.set_cpu_limit(50);
    assert_eq!(gate.cpu_limit(), 50);
    let control = TaskControl::new(gate.clone());
    let started = Instant::now();
    let thread = spawn_run(&sandbox, &app(INFINITE_LOOP), Limits::with_defaults(u64::MAX, 0, 0, 0, 0), &control);
    // The task sleeps its share of idle time (an abort cuts the sleep short).
    gate.wait_for_waiting(1);
    control.abort();
    let outcome = thread.join().expect("task thread");
    let elapsed = started.elapsed();
    assert_eq!(outcome.status, Status::Aborted);
    let idle = control.idle();
    assert!(idle > Duration::ZERO);
    assert!(Duration::from_millis(outcome.run_time_ms) + idle <= elapsed, "{outcome:?}, idle {idle:?}, {elapsed:?}");
}

#[test]
fn cpu_limit_is_clamped() {
    let gate = Gate::new();
    assert_eq!(gate.cpu_limit(), 100);
    gate.set_cpu_limit(0);
    assert_eq!(gate.cpu_limit(), 1);
    gate.set_cpu_limit(200);
    assert_eq!(gate.cpu_limit(), 100);
}

// Custom validators.

/// Reads all of stdin, checks that it is exactly two length-prefixed outputs
/// (traps otherwise), and agrees iff the two lengths are equal.
const SAME_LENGTH_VALIDATOR: &str = r#"
  (memory (export "memory") 2)
  (func (export "_start")
    (local $end i32) (local $n i32) (local $len_a i64) (local $len_b i64)
    ;; stdin goes to [1024, 131072); the iovec is at 0, the count read at 8.
    (local.set $end (i32.const 1024))
    (block $eof
      (loop $read
        (i32.store (i32.const 0) (local.get $end))
        (i32.store (i32.const 4) (i32.sub (i32.const 131072) (local.get $end)))
        (if (call $fd_read (i32.const 0) (i32.const 0) (i32.const 1) (i32.const 8)) (then unreachable))
        (local.set $n (i32.load (i32.const 8)))
        (br_if $eof (i32.eqz (local.get $n)))
        (local.set $end (i32.add (local.get $end) (local.get $n)))
        (br $read)))
    (local.set $len_a (i64.load (i32.const 1024)))
    (local.set $len_b (i64.load (i32.add (i32.const 1032) (i32.wrap_i64 (local.get $len_a)))))
    (if (i64.ne (i64.extend_i32_u (local.get $end))
                (i64.add (i64.const 1040) (i64.add (local.get $len_a) (local.get $len_b))))
      (then unreachable))
    (if (i64.ne (local.get $len_a) (local.get $len_b))
      (then (call $proc_exit (i32.const 1)))))
"#;

fn validator(sandbox: &Sandbox, wat: &str) -> Validator {
    Validator::new(sandbox, app(wat).as_bytes()).expect("valid validator")
}

/// Compares `a` and `b` with the validator `wat` on a fresh sandbox.
fn check_compare(wat: &str, a: &[u8], b: &[u8], expected: Result<bool, CompareError>) {
    let sandbox = Sandbox::new().expect("sandbox");
    assert_eq!(validator(&sandbox, wat).compare(a, b), expected);
}

#[test]
fn validator_input_frames_both_outputs() {
    let mut expected = vec![2, 0, 0, 0, 0, 0, 0, 0, b'a', b'b'];
    expected.extend_from_slice(&[1, 0, 0, 0, 0, 0, 0, 0, b'c']);
    assert_eq!(validator_input(b"ab", b"c"), expected);
    assert_eq!(validator_input(b"", b""), vec![0; 16]);
}

#[test]
fn validator_agrees_on_equal_lengths() {
    check_compare(SAME_LENGTH_VALIDATOR, b"abc", b"xyz", Ok(true));
    check_compare(SAME_LENGTH_VALIDATOR, b"", b"", Ok(true));
    check_compare(SAME_LENGTH_VALIDATOR, &[7; 40_000], &[8; 40_000], Ok(true));
}

#[test]
fn validator_disagrees_on_different_lengths() {
    check_compare(SAME_LENGTH_VALIDATOR, b"abc", b"ab", Ok(false));
    check_compare(SAME_LENGTH_VALIDATOR, b"", b"x", Ok(false));
    check_compare(SAME_LENGTH_VALIDATOR, &[7; 40_000], &[7; 40_001], Ok(false));
}

#[test]
fn validator_is_shared_between_threads_and_outlives_its_sandbox() {
    fn assert_send_sync<T: Send + Sync>() {}
    assert_send_sync::<Validator>();
    let sandbox = Sandbox::new().expect("sandbox");
    let validator = validator(&sandbox, SAME_LENGTH_VALIDATOR);
    drop(sandbox);
    std::thread::scope(|scope| {
        let threads: Vec<_> = (0..4usize)
            .map(|i| {
                let validator = &validator;
                scope.spawn(move || (validator.compare(&vec![1; i], b"xx"), i == 2))
            })
            .collect();
        for thread in threads {
            let (verdict, expected) = thread.join().expect("comparison thread");
            assert_eq!(verdict, Ok(expected));
        }
    });
}

#[test]
fn validator_trap_is_an_error() {
    let wat = r#"(memory (export "memory") 1)
        (data (i32.const 100) "cannot parse A\n")
        (func (export "_start")
          (i32.store (i32.const 0) (i32.const 100))
          (i32.store (i32.const 4) (i32.const 15))
          (drop (call $fd_write (i32.const 2) (i32.const 0) (i32.const 1) (i32.const 8)))
          unreachable)"#;
    let expected = CompareError::Trap {
        message: "wasm `unreachable` instruction executed".into(),
        stderr_tail: "cannot parse A\n".into(),
    };
    assert_eq!(
        expected.to_string(),
        "validator trapped: wasm `unreachable` instruction executed; stderr: cannot parse A"
    );
    check_compare(wat, b"a", b"b", Err(expected));
}

#[test]
fn validator_exit_code_other_than_0_or_1_is_an_error() {
    let wat = r#"(memory (export "memory") 1) (func (export "_start") (call $proc_exit (i32.const 2)))"#;
    check_compare(wat, b"a", b"a", Err(CompareError::ExitCode { code: 2, stderr_tail: String::new() }));
}

#[test]
fn validator_looping_forever_hits_the_fuel_limit() {
    // 10,000 fuel per iteration, so the 10^10 limit comes after 10^6
    // iterations (milliseconds), long before the wall time limit.
    let body = "(drop (i32.const 1))".repeat(10_000);
    let wat = format!(r#"(memory (export "memory") 1) (func (export "_start") (loop $l {body} (br $l)))"#);
    check_compare(&wat, b"a", b"a", Err(CompareError::FuelLimit));
}

#[test]
fn validator_growing_past_256_mib_hits_the_memory_limit() {
    // 4097 pages of 64 KiB: one more than 256 MiB.
    let wat = r#"(memory (export "memory") 1)
        (func (export "_start")
          (if (i32.eq (memory.grow (i32.const 4096)) (i32.const -1)) (then unreachable)))"#;
    check_compare(wat, b"a", b"a", Err(CompareError::MemoryLimit));
}

#[test]
fn validator_flooding_stderr_hits_the_stderr_limit() {
    // The first byte of stdin is the low byte of len(A): 0, so it writes forever.
    check_compare(STDERR_WRITER, b"", b"", Err(CompareError::StderrLimit));
}

#[test]
fn validator_without_start_is_rejected() {
    let sandbox = Sandbox::new().expect("sandbox");
    let wat = r#"(module (memory (export "memory") 1) (func (export "main")))"#;
    let error = Validator::new(&sandbox, wat.as_bytes()).expect_err("no _start");
    assert!(matches!(error, Error::ValidatorWithoutStart), "{error:?}");
}

#[test]
fn invalid_validator_module_is_rejected() {
    let sandbox = Sandbox::new().expect("sandbox");
    for module in [&b"not wasm"[..], br#"(module (import "env" "f" (func)) (func (export "_start")))"#] {
        let error = Validator::new(&sandbox, module).expect_err("invalid module");
        assert!(matches!(error, Error::InvalidValidator(_)), "{error:?}");
    }
}

/// [`PROVIDED_IMPORTS`], which the coordinator checks submitted modules
/// against, is exactly what the sandbox's linker defines: nothing listed is
/// missing, nothing linked is unlisted, and a module importing every listed
/// function (with the linker's own types) links and runs.
#[test]
fn provided_imports_are_exactly_what_the_sandbox_links() {
    let sandbox = Sandbox::new().expect("sandbox");
    let engine = &sandbox.engines[0];
    let linker = linker(engine).expect("linker");
    let environment = wasi::Environment {
        input: Vec::new(),
        random_seed: 0,
        output_limit: 0,
        stderr_limit: 0,
        checkpoint_dir: None,
        input_dir: None,
        output_dir: None,
        args: &[],
        env: &[],
    };
    let wasi::Ctx { wasi, time, .. } = wasi::build_ctx(environment).expect("context");
    let mut store = Store::new(engine, TaskState { wasi, time, limiter: MemoryLimiter::new(0), interrupt: None });
    let mut linked: Vec<(String, String, String)> = Vec::new();
    let definitions: Vec<(String, String, wasmtime::Extern)> =
        linker.iter(&mut store).map(|(module, name, item)| (module.to_owned(), name.to_owned(), item)).collect();
    for (module, name, item) in definitions {
        let wasmtime::Extern::Func(func) = item else { panic!("{module}::{name} is not a function") };
        let ty = func.ty(&store);
        let params: Vec<String> = ty.params().map(|param| param.to_string()).collect();
        let results: Vec<String> = ty.results().map(|result| result.to_string()).collect();
        let signature = format!("(param {}) (result {})", params.join(" "), results.join(" "));
        linked.push((module, name, signature));
    }
    linked.sort();
    let mut names: Vec<(&str, &str)> =
        linked.iter().map(|(module, name, _)| (module.as_str(), name.as_str())).collect();
    names.dedup();
    let mut listed = PROVIDED_IMPORTS.to_vec();
    listed.sort();
    assert_eq!(names, listed, "PROVIDED_IMPORTS must list exactly what the sandbox links");

    let imports: String = linked
        .iter()
        .map(|(module, name, signature)| format!("(import {module:?} {name:?} (func {signature}))\n"))
        .collect();
    let wat = format!(r#"(module {imports} (memory (export "memory") 1) (func (export "_start")))"#);
    check(&wat, b"", Limits::default(), Status::Success(Vec::new()));
}

/// A task of `wat` under its real digest (the compiled cache keys files by it).
fn digest_task(wat: &str, nan_canonicalization: bool) -> Task {
    // The sandbox compiles WAT text as it does binary modules.
    Task {
        app_digest: sha256_hex(wat.as_bytes()),
        module: Arc::from(wat.as_bytes()),
        nan_canonicalization,
        ..task(wat, b"abc", 1, Limits::default())
    }
}

fn sha256_hex(bytes: &[u8]) -> String {
    use sha2::Digest as _;
    sha2::Sha256::digest(bytes).iter().map(|b| format!("{b:02x}")).collect()
}

#[test]
fn a_compiled_module_is_reused_after_a_restart_and_refused_when_corrupt_or_foreign() {
    let dir = tempfile::tempdir().expect("dir");
    let task = digest_task(&app(ECHO), false);
    let run = |sandbox: &Sandbox, task: &Task| sandbox.run(task, control()).status;
    let first = Sandbox::new().expect("sandbox").with_compiled_cache(dir.path());
    assert_eq!(run(&first, &task), Status::Success(b"abc".to_vec()));
    assert_eq!(first.compilations(), 1);
    let cached: Vec<_> = std::fs::read_dir(dir.path()).expect("dir").flatten().map(|e| e.path()).collect();
    assert_eq!(cached.len(), 1, "one compiled file: {cached:?}");
    drop(first);

    // "Restarted": a new sandbox on the same directory compiles nothing.
    let restarted = Sandbox::new().expect("sandbox").with_compiled_cache(dir.path());
    assert_eq!(run(&restarted, &task), Status::Success(b"abc".to_vec()));
    assert_eq!(restarted.compilations(), 0, "loaded, not compiled");

    // A corrupted file is refused, deleted and compiled again.
    let mut bytes = std::fs::read(&cached[0]).expect("read");
    let middle = bytes.len() / 2;
    bytes[middle] ^= 0xff;
    std::fs::write(&cached[0], &bytes).expect("corrupt it");
    let after_corruption = Sandbox::new().expect("sandbox").with_compiled_cache(dir.path());
    assert_eq!(run(&after_corruption, &task), Status::Success(b"abc".to_vec()));
    assert_eq!(after_corruption.compilations(), 1, "compiled again");

    // A file of another engine configuration, under this engine's name (its
    // checksum right), is refused: wasmtime itself would take it, running
    // without the NaN canonicalization the engine promises.
    let sandbox = Sandbox::new().expect("sandbox").with_compiled_cache(dir.path());
    let cache = sandbox.compiled_cache().expect("cache");
    let nan_task = digest_task(&app(ECHO), true);
    let nan_path = cache.path(&sandbox.engines[1], &nan_task.app_digest);
    assert_ne!(nan_path, cached[0], "engines have files of their own");
    std::fs::copy(&cached[0], &nan_path).expect("a foreign file");
    assert!(matches!(cache.load(&sandbox.engines[1], &nan_task.app_digest), compiled::Loaded::Refused(_)));
    assert!(!nan_path.exists(), "deleted");
    assert_eq!(run(&sandbox, &nan_task), Status::Success(b"abc".to_vec()));
    assert_eq!(sandbox.compilations(), 1);

    cache.remove(&task.app_digest).expect("remove");
    assert_eq!(std::fs::read_dir(dir.path()).expect("dir").count(), 0, "both engines' files removed");
}
