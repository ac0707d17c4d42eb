//! Server-wide settings that change while the server runs: `ALTER SYSTEM` and `pg_reload_conf()`.
//!
//! A setting's value comes from, in order of precedence, `DIR/postgresql.auto.conf` (what `ALTER SYSTEM`
//! writes, in PostgreSQL's `name = 'value'` format, so PostgreSQL's tools read it too), `DIR/tandem.toml`,
//! and the built-in default. `ALTER SYSTEM` validates the value, rewrites postgresql.auto.conf atomically
//! (temporary file, fsync, rename, fsync the directory) and changes nothing else: like PostgreSQL, the
//! running server picks the new value up only at `SELECT pg_reload_conf()` (or a restart).
//!
//! Only the settings in [`KNOWN`] are accepted. Those marked reloadable take effect at a reload; the
//! others at the next start.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::RwLock;
use std::time::Duration;

use crate::engine::SyncLevel;
use crate::error::{Error, Result, SqlState};

/// The file `ALTER SYSTEM` writes.
pub const AUTO_CONF: &str = "postgresql.auto.conf";

/// A server-wide setting: its name, default, and whether a reload applies it.
pub struct Known {
    pub name: &'static str,
    pub default: &'static str,
    pub reloadable: bool,
}

/// The settings `ALTER SYSTEM` accepts.
pub const KNOWN: &[Known] = &[
    Known { name: "synchronous_commit", default: "on", reloadable: true },
    Known { name: "synchronous_standby_names", default: "", reloadable: true },
    Known { name: "synchronous_standby_timeout", default: "0", reloadable: true },
    Known { name: "primary_conninfo", default: "", reloadable: true },
    Known { name: "primary_slot_name", default: "", reloadable: false },
    // How much WAL a replication slot may hold before it is marked lost (-1: no limit), read at start.
    Known { name: "max_slot_wal_keep_size", default: "-1", reloadable: false },
    // On a primary: its mirrors (`host=... port=...; ...`), recorded by init-standby, asked at start whether
    // one of them was promoted in its place.
    Known { name: "mirror_conninfo", default: "", reloadable: true },
    // How session threads are scheduled (`adaptive`, `batch` or `normal`; server::scheduling), taken by each
    // new session.
    Known { name: "session_scheduling", default: "adaptive", reloadable: true },
    // Whether a quick TCP client's session runs on its client's CPU (`follow_client` or `any`;
    // server::scheduling), taken by each new session.
    Known { name: "session_placement", default: "follow_client", reloadable: true },
];

fn known(name: &str) -> Result<&'static Known> {
    KNOWN.iter().find(|k| k.name.eq_ignore_ascii_case(name)).ok_or_else(|| {
        Error::new(SqlState::UNDEFINED_OBJECT, format!("unrecognized configuration parameter \"{name}\""))
    })
}

/// Checks a value for a setting, with PostgreSQL's message for a bad one.
pub fn validate(name: &str, value: &str) -> Result<()> {
    let bad = |why: &str| {
        let e = Error::new(
            SqlState::INVALID_PARAMETER_VALUE,
            format!("invalid value for parameter \"{name}\": \"{value}\""),
        );
        if why.is_empty() {
            e
        } else {
            e.with_detail(why.to_string())
        }
    };
    match known(name)?.name {
        "synchronous_commit" => {
            SyncLevel::parse(value).ok_or_else(|| bad(""))?;
        }
        "synchronous_standby_names" => {
            crate::replication::syncrep::StandbyNames::parse(value).map_err(|e| bad(&e.message))?;
        }
        "synchronous_standby_timeout" => {
            parse_duration(value).ok_or_else(|| bad("Valid units are \"ms\", \"s\", \"min\" and \"h\"."))?;
        }
        "session_scheduling" if !["adaptive", "batch", "normal"].iter().any(|v| value.eq_ignore_ascii_case(v)) => {
            return Err(bad("Available values: adaptive, batch, normal."));
        }
        "session_placement" if !["follow_client", "any"].iter().any(|v| value.eq_ignore_ascii_case(v)) => {
            return Err(bad("Available values: follow_client, any."));
        }
        "max_slot_wal_keep_size" => {
            parse_wal_keep(value).ok_or_else(|| bad("-1, or a size: megabytes, or with a unit (kB, MB, GB, TB)."))?;
        }
        _ => {}
    }
    Ok(())
}

/// Parses `max_slot_wal_keep_size`: `-1` (no limit: `Some(None)`), or a size in bytes, given as megabytes or
/// with a unit (`kB`, `MB`, `GB`, `TB`), as PostgreSQL reads it. `None` if it is neither.
pub fn parse_wal_keep(value: &str) -> Option<Option<u64>> {
    let v = value.trim();
    if v == "-1" {
        return Some(None);
    }
    let split = v.find(|c: char| !c.is_ascii_digit()).unwrap_or(v.len());
    let (num, unit) = v.split_at(split);
    let n: u64 = num.parse().ok()?;
    let unit: u64 = match unit.trim() {
        "kB" => 1 << 10,
        "" | "MB" => 1 << 20,
        "GB" => 1 << 30,
        "TB" => 1 << 40,
        _ => return None,
    };
    n.checked_mul(unit).map(Some)
}

/// Parses a time setting: a number of milliseconds, or a number with a unit (`ms`, `s`, `min`, `h`).
pub fn parse_duration(value: &str) -> Option<Duration> {
    let v = value.trim();
    let split = v.find(|c: char| !c.is_ascii_digit()).unwrap_or(v.len());
    let (num, unit) = v.split_at(split);
    let n: u64 = num.parse().ok()?;
    let ms = match unit.trim() {
        "" | "ms" => n,
        "s" => n.checked_mul(1000)?,
        "min" => n.checked_mul(60_000)?,
        "h" => n.checked_mul(3_600_000)?,
        _ => return None,
    };
    Some(Duration::from_millis(ms))
}

/// Reads `name = value` lines (`#` comments, values optionally single- or double-quoted, `''` inside
/// single quotes).
fn parse_lines(text: &str) -> BTreeMap<String, String> {
    let mut out = BTreeMap::new();
    for line in text.lines() {
        let line = line.trim();
        if line.starts_with('#') || line.is_empty() {
            continue;
        }
        let Some((k, v)) = line.split_once('=') else { continue };
        let v = v.trim();
        let v = if let Some(inner) = v.strip_prefix('\'').and_then(|x| x.strip_suffix('\'')) {
            inner.replace("''", "'")
        } else if let Some(inner) = v.strip_prefix('"').and_then(|x| x.strip_suffix('"')) {
            inner.to_string()
        } else {
            v.split('#').next().unwrap_or("").trim().to_string()
        };
        out.insert(k.trim().to_ascii_lowercase(), v);
    }
    out
}

/// The server-wide settings of one data directory.
pub struct ServerSettings {
    dir: PathBuf,
    /// The values in effect (as of the last load or reload).
    live: RwLock<BTreeMap<String, String>>,
}

impl ServerSettings {
    /// Reads the settings of a data directory.
    pub fn load(dir: &Path) -> Result<ServerSettings> {
        let s = ServerSettings { dir: dir.to_path_buf(), live: RwLock::new(BTreeMap::new()) };
        *s.live.write().unwrap_or_else(|e| e.into_inner()) = s.read_files()?;
        Ok(s)
    }

    /// Settings with no files behind them (for tests and tools).
    pub fn defaults() -> ServerSettings {
        ServerSettings { dir: PathBuf::new(), live: RwLock::new(BTreeMap::new()) }
    }

    fn read_files(&self) -> Result<BTreeMap<String, String>> {
        let mut values = BTreeMap::new();
        if self.dir.as_os_str().is_empty() {
            return Ok(values);
        }
        for file in ["tandem.toml", AUTO_CONF] {
            let path = self.dir.join(file);
            match std::fs::read_to_string(&path) {
                Ok(text) => {
                    for (k, v) in parse_lines(&text) {
                        if KNOWN.iter().any(|x| x.name == k) {
                            if let Err(e) = validate(&k, &v) {
                                return Err(Error::new(
                                    SqlState::CONFIG_FILE_ERROR,
                                    format!("{} in \"{}\"", e.message, path.display()),
                                ));
                            }
                            values.insert(k, v);
                        }
                    }
                }
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
                Err(e) => return Err(Error::io(format!("could not read \"{}\"", path.display()), e)),
            }
        }
        Ok(values)
    }

    /// The value in effect.
    pub fn get(&self, name: &str) -> String {
        let live = self.live.read().unwrap_or_else(|e| e.into_inner());
        match live.get(&name.to_ascii_lowercase()) {
            Some(v) => v.clone(),
            None => KNOWN.iter().find(|k| k.name.eq_ignore_ascii_case(name)).map_or("", |k| k.default).to_string(),
        }
    }

    /// The server's default `synchronous_commit`.
    pub fn synchronous_commit(&self) -> SyncLevel {
        SyncLevel::parse(&self.get("synchronous_commit")).unwrap_or_default()
    }

    /// Whether `name` is a server-wide setting.
    pub fn is_known(name: &str) -> bool {
        known(name).is_ok()
    }

    /// `ALTER SYSTEM SET name = value` (`Some`) or `ALTER SYSTEM RESET name` (`None`); `RESET ALL` is the
    /// name `all` with `None`. Rewrites postgresql.auto.conf; the running server is not changed.
    pub fn alter_system(&self, name: &str, value: Option<&str>) -> Result<()> {
        let path = self.dir.join(AUTO_CONF);
        let mut entries = match std::fs::read_to_string(&path) {
            Ok(text) => parse_lines(&text),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => BTreeMap::new(),
            Err(e) => return Err(Error::io(format!("could not read \"{}\"", path.display()), e)),
        };
        if name.eq_ignore_ascii_case("all") && value.is_none() {
            entries.clear();
        } else {
            let k = known(name)?;
            match value {
                Some(v) => {
                    validate(k.name, v)?;
                    entries.insert(k.name.to_string(), v.to_string());
                }
                None => {
                    entries.remove(k.name);
                }
            }
        }
        let mut text =
            String::from("# Do not edit this file manually!\n# It will be overwritten by the ALTER SYSTEM command.\n");
        for (k, v) in &entries {
            text.push_str(&format!("{k} = '{}'\n", v.replace('\'', "''")));
        }
        crate::control::write_atomically(&self.dir, AUTO_CONF, text.as_bytes())
    }

    /// Re-reads the files (`pg_reload_conf()`); returns the reloadable settings whose values changed.
    pub fn reload(&self) -> Result<Vec<(String, String)>> {
        let fresh = self.read_files()?;
        let mut live = self.live.write().unwrap_or_else(|e| e.into_inner());
        let mut changed = Vec::new();
        for k in KNOWN.iter().filter(|k| k.reloadable) {
            if live.get(k.name) != fresh.get(k.name) {
                let v = fresh.get(k.name).cloned().unwrap_or_else(|| k.default.to_string());
                changed.push((k.name.to_string(), v));
                match fresh.get(k.name) {
                    Some(v) => live.insert(k.name.to_string(), v.clone()),
                    None => live.remove(k.name),
                };
            }
        }
        Ok(changed)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations_and_lines() {
        assert_eq!(parse_duration("250"), Some(Duration::from_millis(250)));
        assert_eq!(parse_duration("3s"), Some(Duration::from_secs(3)));
        assert_eq!(parse_duration("2min"), Some(Duration::from_secs(120)));
        assert_eq!(parse_duration("3 parsecs"), None);
        let m = parse_lines("# c\nsynchronous_standby_names = 'FIRST 1 (\"a b\", c)'\nx = 'it''s'\n");
        assert_eq!(m.get("synchronous_standby_names").map(String::as_str), Some("FIRST 1 (\"a b\", c)"));
        assert_eq!(m.get("x").map(String::as_str), Some("it's"));
    }

    #[test]
    fn wal_keep_sizes() {
        assert_eq!(parse_wal_keep("-1"), Some(None));
        assert_eq!(parse_wal_keep("64"), Some(Some(64 << 20)));
        assert_eq!(parse_wal_keep("10GB"), Some(Some(10 << 30)));
        assert_eq!(parse_wal_keep("512 kB"), Some(Some(512 << 10)));
        assert_eq!(parse_wal_keep("ten"), None);
        assert!(validate("max_slot_wal_keep_size", "1 parsec").is_err());
        assert!(validate("max_slot_wal_keep_size", "2GB").is_ok());
    }
}
