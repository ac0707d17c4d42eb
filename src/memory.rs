//! How tandem's processes get memory: the allocator, huge pages, and what happens to freed memory.
//!
//! The `tandem` binary (and the engine benchmark, so that it measures what the server does) allocates with
//! mimalloc rather than glibc's malloc: each declares `#[global_allocator]` with [`ALLOCATOR`] and calls
//! [`set_up`] first thing. A commit copies the tree nodes on the path to each row it changes (the
//! published version still shares them, see `storage/tree.rs`), and the versions readers let go are freed
//! by whichever thread drops them last: many threads allocating and freeing leaf copies of about 1.3 KB.
//! Under glibc that churn (arena locks, `malloc_consolidate` on every request of 1 KB or more) was about 11%
//! of the machine in a profile of pgbench tpcb-like with a synchronous standby and 32 clients; with
//! mimalloc the same load ran 12–20% faster (docs/BENCHMARKS.md).
//!
//! Two settings suit a server that holds its tables in memory:
//! - No transparent huge pages: `PR_SET_THP_DISABLE` for the process (inherited by a detached server), and
//!   mimalloc built with `no_thp` so that it does not lay out its memory for them. A huge page is 2 MiB of
//!   fresh memory zeroed at its first touch; loading a scale-70 snapshot into huge pages took 1.2–2.5 s of
//!   system time, against 0.45–0.7 s in 4 KiB pages, on this project's machines.
//! - Freed memory stays in the process for reuse instead of going back to the kernel (mimalloc's
//!   `purge_delay` -1; its default gives memory back 10 ms after it is freed, and faulting it in again cost
//!   about a tenth of that tpcb-like load's TPS). A server's resident size is therefore its high-water
//!   mark. The environment variable `MIMALLOC_PURGE_DELAY` (milliseconds, read by mimalloc at start)
//!   overrides it.

use std::ffi::{c_int, c_long};

/// The allocator the binaries install.
pub type Allocator = mimalloc::MiMalloc;

/// The value to install: `#[global_allocator] static A: tandem::memory::Allocator = tandem::memory::ALLOCATOR;`.
pub const ALLOCATOR: Allocator = mimalloc::MiMalloc;

/// mimalloc's `mi_option_purge_delay` (the same index in its v2 and v3 headers, mimalloc.h).
const MI_OPTION_PURGE_DELAY: c_int = 15;

/// mimalloc's documented default purge delay, in milliseconds: what the option reads before it is set.
const MI_DEFAULT_PURGE_DELAY: c_long = 10;

unsafe extern "C" {
    // mimalloc.h; the library is linked by the `mimalloc` crate.
    fn mi_option_set(option: c_int, value: c_long);
    fn mi_option_get(option: c_int) -> c_long;
}

/// Has memory freed from now on go back to the kernel after `ms` milliseconds (0: at once), as mimalloc
/// does by default. The engine benchmark's parent process uses it: it builds and drops gigabytes before
/// its child measures a snapshot load, and a child given only memory nobody on the machine touched yet
/// loads slower (on this project's VMs, 1.9–3.9 s against 1.2–1.4 s for 10 million rows).
pub fn set_purge_delay(ms: c_long) {
    // SAFETY: as in `set_up`.
    unsafe { mi_option_set(MI_OPTION_PURGE_DELAY, ms) }
}

/// Sets up the process's memory as the module comment says. Call it before the process allocates much.
pub fn set_up() {
    #[cfg(target_os = "linux")]
    // SAFETY: PR_SET_THP_DISABLE only sets a flag of this process; if it fails (an old kernel), huge pages
    // stay as they were, which is only slower.
    unsafe {
        libc::prctl(libc::PR_SET_THP_DISABLE, 1, 0, 0, 0);
    }
    if std::env::var_os("MIMALLOC_PURGE_DELAY").is_some() {
        return;
    }
    // SAFETY: reading and setting an option are a load and a store in mimalloc's option table, allowed at
    // any time. The option is read first: its documented default says the index names the purge delay.
    unsafe {
        if mi_option_get(MI_OPTION_PURGE_DELAY) == MI_DEFAULT_PURGE_DELAY {
            mi_option_set(MI_OPTION_PURGE_DELAY, -1);
        }
    }
}
