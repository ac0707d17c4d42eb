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

/// How much a standby's replay threads are favoured over sessions: a nice value, as `nice -n -5`.
pub const REPLAY_NICE: i32 = -5;

/// Gives the calling thread [`REPLAY_NICE`], if the server may.
pub fn favour_replay_thread() {
    if let Err(e) = set_thread_nice(REPLAY_NICE) {
        tracing::debug!(error = %e, "could not raise the replay thread's priority");
    }
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
