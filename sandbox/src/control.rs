//! Controlling running tasks from outside: a [`Gate`] shared by all the tasks
//! of a worker (pause, resume, CPU throttle) and a [`TaskControl`] per task
//! (abort, progress).
//!
//! Nothing here preempts a task by itself: the task's own thread calls
//! [`Pacer::tick`] from wasmtime's epoch-deadline callback, every epoch tick
//! (10 ms) of running code. That is where a paused task blocks (on the
//! gate's condition variable, until it is resumed or aborted) and where a
//! throttled task sleeps for its share of idle time. The time spent there is
//! *idle* time: it counts neither towards the wall-time limit nor into the
//! reported run time.

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Condvar, Mutex, MutexGuard};
use std::time::{Duration, Instant};

/// Longest active stretch a throttle sleep is computed from. An epoch tick
/// normally comes every 10 ms; a much longer stretch (the thread was
/// descheduled, or the first tick came late) must not turn into a sleep of
/// minutes.
const MAX_ACTIVE_STRETCH: Duration = Duration::from_secs(1);

/// Pause switch and CPU throttle shared by all the tasks of a worker
/// (BOINC's "suspend" and "use at most N% of CPU time").
///
/// A paused gate stops every running task at its next epoch tick (within
/// about 10 ms) until [`Gate::resume`] or the task's [`TaskControl::abort`].
/// With a CPU limit `p` below 100, every task sleeps after each stretch of
/// running so that running / (running + sleeping) is about `p`%.
#[derive(Debug)]
pub struct Gate {
    state: Mutex<GateState>,
    /// Notified on every change of `state` (and on aborts, so a task waiting
    /// here can see its abort flag).
    changed: Condvar,
}

#[derive(Debug)]
struct GateState {
    paused: bool,
    /// 1..=100.
    cpu_limit: u8,
    /// Tasks currently blocked (paused) or sleeping (throttled) in
    /// [`Pacer::tick`]; lets tests wait for a task to be held, without sleeps.
    waiting: usize,
}

impl Gate {
    /// A gate that is open (not paused) with no CPU limit (100%).
    pub fn new() -> Arc<Gate> {
        Arc::new(Gate {
            state: Mutex::new(GateState { paused: false, cpu_limit: 100, waiting: 0 }),
            changed: Condvar::new(),
        })
    }

    /// Holds every task of this gate at its next epoch tick until
    /// [`Gate::resume`]. Idempotent.
    pub fn pause(&self) {
        self.lock().paused = true;
        self.changed.notify_all();
    }

    /// Lets paused tasks continue. Idempotent.
    pub fn resume(&self) {
        self.lock().paused = false;
        self.changed.notify_all();
    }

    pub fn is_paused(&self) -> bool {
        self.lock().paused
    }

    /// Uses at most `percent`% of CPU time per task (1..=100; 100 means no
    /// throttle). Values outside the range are clamped into it. Takes effect
    /// at the tasks' next epoch tick.
    pub fn set_cpu_limit(&self, percent: u8) {
        self.lock().cpu_limit = percent.clamp(1, 100);
        self.changed.notify_all();
    }

    pub fn cpu_limit(&self) -> u8 {
        self.lock().cpu_limit
    }

    /// Wakes every task waiting on the gate so it re-checks its abort flag.
    fn wake_all(&self) {
        // Taking the lock orders this notification after a waiter's check of
        // its abort flag (made under the lock): no wake-up is lost.
        drop(self.lock());
        self.changed.notify_all();
    }

    fn lock(&self) -> MutexGuard<'_, GateState> {
        // Every critical section only assigns plain fields: a panic elsewhere
        // cannot leave the state inconsistent.
        self.state.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// Blocks until `count` tasks are paused or throttle-sleeping here.
    #[cfg(test)]
    pub(crate) fn wait_for_waiting(&self, count: usize) {
        let mut state = self.lock();
        while state.waiting != count {
            state = self.changed.wait(state).unwrap_or_else(|poisoned| poisoned.into_inner());
        }
    }
}

/// The handle on one running task: abort it, read its progress. Create one
/// per [`crate::Sandbox::run`] call.
#[derive(Debug)]
pub struct TaskControl {
    gate: Arc<Gate>,
    aborted: AtomicBool,
    /// Fuel consumed so far, updated every epoch tick and at the end.
    fuel_used: AtomicU64,
    /// Total time spent paused or throttled, in nanoseconds.
    idle_nanos: AtomicU64,
}

impl TaskControl {
    /// A control for a task that obeys `gate`.
    pub fn new(gate: Arc<Gate>) -> Arc<TaskControl> {
        Arc::new(TaskControl {
            gate,
            aborted: AtomicBool::new(false),
            fuel_used: AtomicU64::new(0),
            idle_nanos: AtomicU64::new(0),
        })
    }

    /// Stops the task within about one epoch tick (at once if it is paused
    /// or throttled); it then ends as [`crate::Status::Aborted`]. Idempotent.
    pub fn abort(&self) {
        self.aborted.store(true, Ordering::SeqCst);
        self.gate.wake_all();
    }

    pub fn is_aborted(&self) -> bool {
        self.aborted.load(Ordering::SeqCst)
    }

    /// Fuel (instructions) the task has consumed so far: its progress, as of
    /// its last epoch tick (10 ms); exact once the task has ended. A lower
    /// bound while it runs: compiled code publishes its fuel counter only at
    /// function calls and returns, so a long loop that calls nothing shows no
    /// progress until it does.
    pub fn fuel_used(&self) -> u64 {
        self.fuel_used.load(Ordering::Relaxed)
    }

    pub(crate) fn set_fuel_used(&self, fuel: u64) {
        self.fuel_used.store(fuel, Ordering::Relaxed);
    }

    /// Time spent paused or throttled so far.
    pub(crate) fn idle(&self) -> Duration {
        Duration::from_nanos(self.idle_nanos.load(Ordering::Relaxed))
    }

    fn add_idle(&self, idle: Duration) {
        let nanos = u64::try_from(idle.as_nanos()).unwrap_or(u64::MAX);
        self.idle_nanos.fetch_add(nanos, Ordering::Relaxed);
    }
}

/// The per-run side of the gate, owned by the epoch callback.
pub(crate) struct Pacer {
    control: Arc<TaskControl>,
    /// When the task last started running (the run's start, or the end of
    /// its last pause or throttle sleep).
    active_since: Instant,
}

impl Pacer {
    pub(crate) fn new(control: Arc<TaskControl>) -> Self {
        Pacer { control, active_since: Instant::now() }
    }

    /// Called on the task's thread at every epoch tick: blocks while the gate
    /// is paused, then sleeps for the throttle's share of the active stretch
    /// that just ended. Returns at once when the task is aborted.
    pub(crate) fn tick(&mut self) {
        let state = self.control.gate.lock();
        let now = Instant::now();
        let throttle_until = (state.cpu_limit < 100).then(|| {
            let active = now.saturating_duration_since(self.active_since).min(MAX_ACTIVE_STRETCH);
            let percent = u32::from(state.cpu_limit);
            now + active * (100 - percent) / percent
        });
        self.active_since = hold(&self.control, state, now, throttle_until);
    }

    /// Called on the task's thread before it starts: blocks while the gate is
    /// paused, so a task started on a paused gate does not run at all.
    pub(crate) fn wait_while_paused(&mut self) {
        let state = self.control.gate.lock();
        self.active_since = hold(&self.control, state, Instant::now(), None);
    }
}

/// Blocks the task of `control` while its gate is paused, then until
/// `throttle_until` (if the CPU limit still applies), unless the task is
/// aborted; counts the time as idle. `state` is the gate's, locked at `now`.
/// Returns when the task runs again.
fn hold(
    control: &TaskControl,
    mut state: MutexGuard<'_, GateState>,
    now: Instant,
    throttle_until: Option<Instant>,
) -> Instant {
    let gate = &control.gate;
    if !state.paused && throttle_until.is_none_or(|until| until <= now) {
        return now;
    }
    state.waiting += 1;
    gate.changed.notify_all();
    loop {
        if control.is_aborted() {
            break;
        }
        if state.paused {
            state = gate.changed.wait(state).unwrap_or_else(|poisoned| poisoned.into_inner());
            continue;
        }
        let remaining = match throttle_until {
            // The limit may have been lifted meanwhile.
            Some(until) if state.cpu_limit < 100 => until.saturating_duration_since(Instant::now()),
            _ => Duration::ZERO,
        };
        if remaining.is_zero() {
            break;
        }
        state = gate.changed.wait_timeout(state, remaining).unwrap_or_else(|poisoned| poisoned.into_inner()).0;
    }
    state.waiting -= 1;
    gate.changed.notify_all();
    drop(state);
    let resumed = Instant::now();
    control.add_idle(resumed.saturating_duration_since(now));
    resumed
}
