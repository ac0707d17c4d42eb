//! How a session's thread is scheduled: `session_scheduling` (`adaptive`, the default; `batch`; `normal`).
//!
//! A session thread sleeps in `recv` between its client's messages. When the next message arrives, Linux
//! wakes the thread and, under the normal policy, usually lets it preempt whatever runs on that CPU at once,
//! often the client that just sent the message. Where clients share the CPUs with the server, a client
//! that drives several connections (pgbench's threads, a connection pool) is then preempted after each
//! message instead of sending on all its connections and sleeping once: on this project's 2-core machine,
//! pgbench select-only with 8 clients was preempted ~0.6 times per transaction against tandem and ~0.2
//! times against PostgreSQL, and its TPS was below PostgreSQL's.
//!
//! Under SCHED_BATCH (which any user may choose for their own threads) a woken thread does not preempt; it
//! runs when the running task sleeps or its time slice ends. That is what a session busy with a client
//! that answers at once wants, but not what a session serving an occasional query wants: it would wait
//! behind a busy CPU for its turn (in one replay-lag run, a standby session sampled every 2 ms answered up
//! to ~100 ms late). So `adaptive` decides per message: a session whose client sent its next message within
//! [`QUICK_CLIENT`] of the previous reply runs as batch; one whose client took longer runs normally, and
//! so preempts to answer at once. The time includes the session's own wake-up delay, so a session that
//! batch makes late goes back to normal by itself. The policy is changed only when it differs (one system
//! call). WAL senders, the WAL flusher, and a standby's receiver and startup threads always keep the
//! normal policy, so commit and replication wake-ups still preempt.

use std::time::{Duration, Instant};

/// A client that sends its next message within this time of the previous reply keeps its session
/// under SCHED_BATCH (`adaptive`).
pub const QUICK_CLIENT: Duration = Duration::from_millis(1);

/// The two policies a session's thread runs under.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Policy {
    Normal,
    Batch,
}

/// One session's scheduling: its mode (from `session_scheduling` when it started) and its thread's policy.
pub struct Scheduling {
    adaptive: bool,
    current: Policy,
    /// When the last reply was flushed to the client.
    replied: Option<Instant>,
}

impl Scheduling {
    /// Takes `session_scheduling`'s value (checked when it was read: `adaptive`, `batch` or `normal`) for the
    /// calling thread.
    pub fn start(mode: &str) -> Scheduling {
        let (adaptive, policy) = if mode.eq_ignore_ascii_case("batch") {
            (false, Policy::Batch)
        } else {
            (mode.eq_ignore_ascii_case("adaptive"), Policy::Normal)
        };
        if policy == Policy::Batch {
            set(policy);
        }
        Scheduling { adaptive, current: policy, replied: None }
    }

    /// A reply was flushed to the client.
    pub fn replied(&mut self) {
        if self.adaptive {
            self.replied = Some(Instant::now());
        }
    }

    /// The next message was read; `waited` says whether the session had to wait for it (nothing of it
    /// was buffered yet when it started reading).
    pub fn received(&mut self, waited: bool) {
        let Some(replied) = self.replied.take() else { return };
        if !waited {
            return;
        }
        let wanted = if replied.elapsed() < QUICK_CLIENT { Policy::Batch } else { Policy::Normal };
        if wanted != self.current {
            set(wanted);
            self.current = wanted;
        }
    }
}

/// Puts the calling thread under `policy`.
fn set(policy: Policy) {
    #[cfg(target_os = "linux")]
    {
        let policy = match policy {
            Policy::Normal => libc::SCHED_OTHER,
            Policy::Batch => libc::SCHED_BATCH,
        };
        let param = libc::sched_param { sched_priority: 0 };
        // SAFETY: a plain system call on the calling thread (pid 0) with a valid, initialized parameter.
        let rc = unsafe { libc::sched_setscheduler(0, policy, &param) };
        if rc != 0 {
            tracing::debug!(error = %std::io::Error::last_os_error(), "could not set the session's scheduling policy");
        }
    }
    #[cfg(not(target_os = "linux"))]
    let _ = policy;
}
