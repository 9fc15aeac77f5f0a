//! The priority tasks compute at: idle by default, as BOINC's client runs
//! its apps, so that a volunteer's own programs always come first and the
//! worker only takes what would be idle time.
//!
//! Each task thread (rayon's) sets its own priority when it starts: on Linux
//! the `SCHED_IDLE` policy (runs only when no other thread wants the core)
//! and nice 19 (for schedulers that look at nice alone); elsewhere on Unix,
//! nice 19. The worker's other threads (network, journal) keep their
//! priority, so reports go out promptly.

/// `--task-priority`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum TaskPriority {
    /// `SCHED_IDLE` and nice 19 (the default).
    #[default]
    Idle,
    /// The priority the worker was started with.
    Normal,
}

/// Sets the calling thread's priority to `priority`; a refusal is logged
/// (the task still runs, at the priority it has).
pub fn apply_to_this_thread(priority: TaskPriority) {
    if priority == TaskPriority::Normal {
        return;
    }
    #[cfg(target_os = "linux")]
    {
        let param = libc::sched_param { sched_priority: 0 };
        // SAFETY: `param` is valid; pid 0 is the calling thread.
        if unsafe { libc::sched_setscheduler(0, libc::SCHED_IDLE, &param) } != 0 {
            tracing::warn!(error = %std::io::Error::last_os_error(), "cannot give a task thread the idle policy");
        }
        // SAFETY: no pointers; on Linux a thread id names one thread.
        let tid = unsafe { libc::gettid() } as libc::id_t;
        // SAFETY: no pointers.
        if unsafe { libc::setpriority(libc::PRIO_PROCESS, tid, 19) } != 0 {
            tracing::warn!(error = %std::io::Error::last_os_error(), "cannot give a task thread nice 19");
        }
    }
    #[cfg(all(unix, not(target_os = "linux")))]
    // SAFETY: no pointers; 0 is the calling process.
    if unsafe { libc::setpriority(libc::PRIO_PROCESS, 0, 19) } != 0 {
        tracing::warn!(error = %std::io::Error::last_os_error(), "cannot give the tasks nice 19");
    }
}
