//! Thread priorities: which of the server's threads ask for more of a busy machine's CPU.
//!
//! A standby's replay is its critical path: on a machine whose CPUs are busy (read-only sessions on the
//! standby, or a primary and its clients on the same machine) an ordinary thread waits its turn behind every
//! runnable one, and replay lag grows with the wait (docs/BENCHMARKS.md, 2026-11-29). So the WAL receiver,
//! and the startup process once its snapshot is loaded, run at nice [`REPLAY_NICE`] where the server may
//! (root, CAP_SYS_NICE, or an RLIMIT_NICE of at least 25, such as systemd's `LimitNICE=-5`); otherwise they
//! stay at the server's own nice value. The snapshot load itself is not favoured: it would take CPU from a
//! primary that shares the machine while a standby is being created. Threads a favoured thread starts (a
//! restartpoint, a segment's creation) go back to the server's nice value.
//!
//! A thread's nice value weighs it only against the threads of its own scheduling group. Where Linux puts
//! each session (`setsid`, as `tandem start --detach` does) in an autogroup of its own
//! (`kernel.sched_autogroup_enabled = 1`, the default of most distributions), a standby's threads compete
//! with the primary and its clients as one group, whatever their nice values: in a replay-lag run, the
//! threads' nice -5 alone left p99 at 29-87 ms where the group's nice -5 gave 16-21 ms (docs/BENCHMARKS.md,
//! 2026-11-29, night). So once its snapshot is loaded a standby that leads its own session also gives its
//! autogroup [`REPLAY_NICE`] (`/proc/self/autogroup`, where the server may), and a promotion gives it back
//! the nice value it had. Under systemd or another cgroup manager there is no autogroup, and the threads'
//! nice values are what counts.

use std::sync::Mutex;

/// How much a standby's replay threads are favoured over sessions: a nice value, as `nice -n -5`.
pub const REPLAY_NICE: i32 = -5;

/// Gives the calling thread [`REPLAY_NICE`], if the server may.
pub fn favour_replay_thread() {
    if let Err(e) = set_thread_nice(REPLAY_NICE) {
        tracing::debug!(error = %e, "could not raise the replay thread's priority");
    }
}

/// The autogroup's nice value before [`favour_replay_process`] changed it.
static AUTOGROUP_BEFORE: Mutex<Option<i32>> = Mutex::new(None);

const AUTOGROUP: &str = "/proc/self/autogroup";

/// Gives the process's autogroup [`REPLAY_NICE`] (a standby whose snapshot is loaded), if it leads its own
/// session (so the autogroup is its own, not a shell's) and the server may.
pub fn favour_replay_process() {
    // SAFETY: plain system calls without arguments that point anywhere.
    let leader = unsafe { libc::getsid(0) == libc::getpid() };
    let Some(before) = autogroup_nice().filter(|_| leader) else { return };
    if before <= REPLAY_NICE {
        return;
    }
    match std::fs::write(AUTOGROUP, REPLAY_NICE.to_string()) {
        Ok(()) => *AUTOGROUP_BEFORE.lock().unwrap_or_else(|e| e.into_inner()) = Some(before),
        Err(e) => tracing::debug!(error = %e, "could not raise the standby's autogroup priority"),
    }
}

/// Gives the autogroup back the nice value it had before [`favour_replay_process`] (a promoted standby).
pub fn plain_process_priority() {
    if let Some(before) = AUTOGROUP_BEFORE.lock().unwrap_or_else(|e| e.into_inner()).take() {
        if let Err(e) = std::fs::write(AUTOGROUP, before.to_string()) {
            tracing::debug!(error = %e, "could not restore the autogroup's priority");
        }
    }
}

/// The process's autogroup nice value (`/autogroup-N nice K`), if it has an autogroup.
fn autogroup_nice() -> Option<i32> {
    let text = std::fs::read_to_string(AUTOGROUP).ok()?;
    text.split_whitespace().skip_while(|w| *w != "nice").nth(1)?.parse().ok()
}

/// Gives the calling thread the server's own nice value (its main thread's), for a thread started by a
/// favoured one, which would otherwise inherit its priority.
pub fn plain_thread_priority() {
    #[cfg(target_os = "linux")]
    {
        // SAFETY: reading the process's (main thread's) nice value; -1 is a valid value, so errno tells.
        let nice = unsafe {
            *libc::__errno_location() = 0;
            let nice = libc::getpriority(libc::PRIO_PROCESS, libc::getpid() as libc::id_t);
            (*libc::__errno_location() == 0).then_some(nice)
        };
        if let Some(nice) = nice {
            let _ = set_thread_nice(nice);
        }
    }
}

/// Sets the calling thread's own nice value (Linux keeps one per thread).
fn set_thread_nice(nice: i32) -> std::io::Result<()> {
    #[cfg(target_os = "linux")]
    {
        // SAFETY: plain system calls on the calling thread (its own id).
        let rc = unsafe {
            let tid = libc::syscall(libc::SYS_gettid) as libc::id_t;
            libc::setpriority(libc::PRIO_PROCESS, tid, nice)
        };
        if rc != 0 {
            return Err(std::io::Error::last_os_error());
        }
    }
    #[cfg(not(target_os = "linux"))]
    let _ = nice;
    Ok(())
}
