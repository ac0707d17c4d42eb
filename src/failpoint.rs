//! Failpoints: named places where a test can make tandem fail or stall on purpose.
//!
//! Production code calls [`check`] at each risky step (a WAL write, an fsync, a rename). When no failpoint
//! is set, that costs one relaxed atomic load. Tests set failpoints in-process with [`set`], or for a whole
//! server process with the environment variable `TANDEM_FAILPOINTS`, e.g.
//! `TANDEM_FAILPOINTS="wal_fsync=eio;wal_write=sleep(200)"`.
//!
//! Actions: `off`, `eio`, `enospc` (fail with that errno), `sleep(MS)` (stall, then go on), `panic`.

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Mutex, OnceLock};
use std::time::Duration;

use crate::error::{Error, Result};

/// What a failpoint does when reached.
#[derive(Clone, Debug, PartialEq)]
pub enum Action {
    Eio,
    Enospc,
    Sleep(Duration),
    Panic,
}

static ANY: AtomicBool = AtomicBool::new(false);

fn registry() -> &'static Mutex<HashMap<String, Action>> {
    static REGISTRY: OnceLock<Mutex<HashMap<String, Action>>> = OnceLock::new();
    REGISTRY.get_or_init(|| {
        let mut map = HashMap::new();
        if let Ok(spec) = std::env::var("TANDEM_FAILPOINTS") {
            for item in spec.split(';').filter(|s| !s.trim().is_empty()) {
                if let Some((name, action)) = item.split_once('=') {
                    if let Some(action) = parse(action.trim()) {
                        map.insert(name.trim().to_string(), action);
                    }
                }
            }
        }
        if !map.is_empty() {
            ANY.store(true, Ordering::Release);
        }
        Mutex::new(map)
    })
}

fn parse(s: &str) -> Option<Action> {
    match s {
        "eio" => Some(Action::Eio),
        "enospc" => Some(Action::Enospc),
        "panic" => Some(Action::Panic),
        _ => {
            let ms = s.strip_prefix("sleep(")?.strip_suffix(')')?.parse().ok()?;
            Some(Action::Sleep(Duration::from_millis(ms)))
        }
    }
}

/// Reads `TANDEM_FAILPOINTS` once; call at process start.
pub fn init_from_env() {
    let _ = registry();
}

/// Sets a failpoint (None clears it).
pub fn set(name: &str, action: Option<Action>) {
    let mut map = registry().lock().unwrap_or_else(|e| e.into_inner());
    match action {
        Some(a) => {
            map.insert(name.to_string(), a);
        }
        None => {
            map.remove(name);
        }
    }
    ANY.store(!map.is_empty(), Ordering::Release);
}

/// Reaches a failpoint: fails, stalls or does nothing, as set.
pub fn check(name: &str) -> Result<()> {
    if !ANY.load(Ordering::Relaxed) {
        return Ok(());
    }
    let action = registry().lock().unwrap_or_else(|e| e.into_inner()).get(name).cloned();
    match action {
        None => Ok(()),
        Some(Action::Sleep(d)) => {
            std::thread::sleep(d);
            Ok(())
        }
        Some(Action::Eio) => Err(Error::io(format!("failpoint {name}"), std::io::Error::from_raw_os_error(5))),
        Some(Action::Enospc) => Err(Error::io(format!("failpoint {name}"), std::io::Error::from_raw_os_error(28))),
        Some(Action::Panic) => panic!("failpoint {name}"),
    }
}
