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
//! normal policy, so commit and replication wake-ups still preempt (and a standby's receiver and startup
//! threads run at nice -5 where the server may: `priority::favour_replay_thread`).
//!
//! Placement (`session_placement`: `follow_client`, the default, or `any`). Under `adaptive`, a session
//! whose client is quick and connected over TCP also runs on the CPU its client's packets arrive on
//! (`SO_INCOMING_CPU`: on loopback, the CPU the client sent from): its thread's affinity is narrowed to that
//! one CPU, and checked again at each message the client sends. A client thread and the sessions it drives
//! then wake each other on one CPU, where a wake-up is a few microseconds, instead of across CPUs, where it
//! is an inter-processor interrupt (on this project's virtual machines, a round trip of 41 µs against 3.3 µs
//! on one CPU). pgbench tpcb-like with 32 clients and two threads, over TCP, ran about 30% faster with it
//! (docs/BENCHMARKS.md). So that one client thread driving many connections (an event-loop application)
//! cannot crowd every session onto its CPU, a CPU takes a following session only while it holds no more
//! than an even share (plus one) of the sessions that follow their clients; the others run anywhere. A
//! session whose client turns slow goes back to every CPU the server started with. Unix-socket sessions do
//! not follow: the kernel does not say where such a client runs.

use std::os::fd::RawFd;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::OnceLock;
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
    /// The client's TCP socket, when this session follows its client (see the module comment).
    follow: Option<RawFd>,
    /// Counted among the sessions that follow their clients.
    following: bool,
    /// The one CPU the thread is held to.
    pinned: Option<usize>,
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
        Scheduling { adaptive, current: policy, replied: None, follow: None, following: false, pinned: None }
    }

    /// Under `adaptive`, lets the session follow its client to the CPU the client runs on, while the client
    /// is quick: `socket` is the client's TCP socket (it must outlive this value) and `placement` the value
    /// of `session_placement` (`follow_client` or `any`).
    pub fn follow_client(&mut self, socket: RawFd, placement: &str) {
        if self.adaptive && placement.eq_ignore_ascii_case("follow_client") && cpus().is_some() {
            self.follow = Some(socket);
        }
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
        if let (Some(socket), Some(cpus)) = (self.follow, cpus()) {
            if self.current == Policy::Batch {
                self.follow_to(cpus, socket);
            } else {
                self.stop_following(cpus);
            }
        }
    }

    /// Holds the thread to the CPU the client's packets last arrived on, if that CPU has room.
    fn follow_to(&mut self, cpus: &Cpus, socket: RawFd) {
        if !self.following {
            self.following = true;
            cpus.following.fetch_add(1, Ordering::Relaxed);
        }
        let Some(cpu) = incoming_cpu(socket).filter(|&c| c < cpus.pinned.len() && cpus.allowed.contains(&c)) else {
            return;
        };
        if self.pinned == Some(cpu) {
            return;
        }
        // An even share of the following sessions, plus one.
        let n = cpus.allowed.len();
        let share = cpus.following.load(Ordering::Relaxed) + n;
        if (cpus.pinned[cpu].load(Ordering::Relaxed) + 1) * n > share {
            return;
        }
        if set_affinity(&[cpu]) {
            if let Some(old) = self.pinned.replace(cpu) {
                cpus.pinned[old].fetch_sub(1, Ordering::Relaxed);
            }
            cpus.pinned[cpu].fetch_add(1, Ordering::Relaxed);
        }
    }

    /// Lets the thread run on every CPU the server started with again.
    fn stop_following(&mut self, cpus: &Cpus) {
        if let Some(old) = self.pinned.take() {
            cpus.pinned[old].fetch_sub(1, Ordering::Relaxed);
            set_affinity(&cpus.allowed);
        }
        if self.following {
            self.following = false;
            cpus.following.fetch_sub(1, Ordering::Relaxed);
        }
    }
}

impl Drop for Scheduling {
    fn drop(&mut self) {
        if let Some(cpus) = cpus() {
            self.stop_following(cpus);
        }
    }
}

/// The CPUs the server process may run on, read once, and how many following sessions each holds.
struct Cpus {
    allowed: Vec<usize>,
    /// Indexed by CPU number, up to the highest allowed one.
    pinned: Vec<AtomicUsize>,
    /// Sessions that follow their clients now (quick, over TCP), held to a CPU or not.
    following: AtomicUsize,
}

/// The process's CPUs, if there are two or more to choose from (with one, there is nothing to follow).
fn cpus() -> Option<&'static Cpus> {
    static CPUS: OnceLock<Option<Cpus>> = OnceLock::new();
    CPUS.get_or_init(|| {
        let allowed = allowed_cpus();
        let top = allowed.iter().max().copied()?;
        (allowed.len() >= 2).then(|| Cpus {
            allowed,
            pinned: (0..=top).map(|_| AtomicUsize::new(0)).collect(),
            following: AtomicUsize::new(0),
        })
    })
    .as_ref()
}

#[cfg(target_os = "linux")]
fn allowed_cpus() -> Vec<usize> {
    // SAFETY: sched_getaffinity fills the zeroed set it is given, of the size it is told.
    unsafe {
        let mut set: libc::cpu_set_t = std::mem::zeroed();
        if libc::sched_getaffinity(0, std::mem::size_of::<libc::cpu_set_t>(), &mut set) != 0 {
            return Vec::new();
        }
        (0..libc::CPU_SETSIZE as usize).filter(|&c| libc::CPU_ISSET(c, &set)).collect()
    }
}

#[cfg(not(target_os = "linux"))]
fn allowed_cpus() -> Vec<usize> {
    Vec::new()
}

/// Holds the calling thread to `cpus`; false if the kernel refused.
#[cfg(target_os = "linux")]
fn set_affinity(cpus: &[usize]) -> bool {
    // SAFETY: a zeroed set with CPUs below CPU_SETSIZE added, for the calling thread (pid 0).
    let rc = unsafe {
        let mut set: libc::cpu_set_t = std::mem::zeroed();
        for &c in cpus.iter().filter(|&&c| c < libc::CPU_SETSIZE as usize) {
            libc::CPU_SET(c, &mut set);
        }
        libc::sched_setaffinity(0, std::mem::size_of::<libc::cpu_set_t>(), &set)
    };
    if rc != 0 {
        tracing::debug!(error = %std::io::Error::last_os_error(), "could not set the session's CPU affinity");
    }
    rc == 0
}

#[cfg(not(target_os = "linux"))]
fn set_affinity(_cpus: &[usize]) -> bool {
    false
}

/// The CPU that last processed the socket's incoming packets (`SO_INCOMING_CPU`), if the kernel knows it.
#[cfg(target_os = "linux")]
fn incoming_cpu(socket: RawFd) -> Option<usize> {
    let mut cpu: libc::c_int = -1;
    let mut len = std::mem::size_of::<libc::c_int>() as libc::socklen_t;
    // SAFETY: getsockopt writes at most `len` bytes into `cpu`, an int of that size.
    let rc = unsafe {
        libc::getsockopt(
            socket,
            libc::SOL_SOCKET,
            libc::SO_INCOMING_CPU,
            (&mut cpu as *mut libc::c_int).cast(),
            &mut len,
        )
    };
    (rc == 0 && cpu >= 0).then_some(cpu as usize)
}

#[cfg(not(target_os = "linux"))]
fn incoming_cpu(_socket: RawFd) -> Option<usize> {
    None
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
