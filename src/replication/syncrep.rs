//! Synchronous replication: which standbys a commit waits for, and how far they have confirmed.
//!
//! `synchronous_standby_names` is parsed as PostgreSQL does: `a, b, c` (= `FIRST 1 (a, b, c)`), `*`,
//! `[FIRST] n (list)` and `ANY n (list)`. A connected WAL sender's priority is the position of the first
//! entry that names it (`*` names every standby), 0 if none does; for ANY it is 1 for every listed one.
//! FIRST picks as `sync` the n candidates of highest priority (earlier connections first among equals),
//! the other candidates are `potential`; ANY makes every candidate `quorum` and a commit waits for the
//! n-th best position among them. Unlisted standbys are `async`.
//!
//! [`SyncRep`] is the engine's [`Durability`] policy. Its positions per level (write, flush, apply) are
//! those of the synchronous standbys, with Greenplum's rule on top: a candidate counts only while it is
//! streaming, or catching up within one WAL segment of the end. A candidate further behind does not hold
//! commits back (so a fresh standby can catch up under load); a missing one does — if fewer candidates
//! are connected than `n` asks for, remote levels are not acknowledged at all, which is the safe default.
//!
//! `synchronous_standby_timeout` (0 = wait forever) bounds that wait: once a commit has waited that long
//! for the standbys, the policy is *degraded*: every level is acknowledged on the local flush, the
//! committers get a WARNING, the server logs it, and pg_stat_replication / `tandem status` show it. It
//! ends when every synchronous standby is connected, has replied since, and is within one segment.

use std::sync::atomic::{AtomicBool, AtomicI64, Ordering};
use std::sync::{Arc, Mutex, RwLock};
use std::time::Duration;

use crate::engine::{Acks, Durability};
use crate::error::{Error, Result, SqlState};
use crate::replication::protocol;
use crate::replication::walsender::SenderInfo;
use crate::wal::writer::lock;
use crate::wal::Lsn;

/// How the listed standbys are chosen.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Method {
    First,
    Any,
}

/// A parsed `synchronous_standby_names`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct StandbyNames {
    pub method: Method,
    pub num: usize,
    pub names: Vec<String>,
}

fn syntax(msg: impl Into<String>) -> Error {
    Error::new(SqlState::SYNTAX_ERROR, msg)
}

/// Splits a name list into names, honouring double quotes.
fn name_list(text: &str) -> Result<Vec<String>> {
    let mut names = Vec::new();
    let mut chars = text.chars().peekable();
    loop {
        while chars.peek().is_some_and(|c| c.is_whitespace()) {
            chars.next();
        }
        let mut name = String::new();
        if chars.peek() == Some(&'"') {
            chars.next();
            loop {
                match chars.next() {
                    None => return Err(syntax("unterminated quoted standby name")),
                    Some('"') if chars.peek() == Some(&'"') => {
                        chars.next();
                        name.push('"');
                    }
                    Some('"') => break,
                    Some(c) => name.push(c),
                }
            }
        } else {
            while let Some(&c) = chars.peek() {
                if c == ',' || c.is_whitespace() {
                    break;
                }
                name.push(c.to_ascii_lowercase());
                chars.next();
            }
        }
        while chars.peek().is_some_and(|c| c.is_whitespace()) {
            chars.next();
        }
        if name.is_empty() {
            return Err(syntax("empty standby name in synchronous_standby_names"));
        }
        names.push(name);
        match chars.next() {
            None => return Ok(names),
            Some(',') => {}
            Some(c) => return Err(syntax(format!("syntax error at or near \"{c}\""))),
        }
    }
}

impl StandbyNames {
    /// Parses a value; the empty string is `None` (no synchronous replication).
    pub fn parse(value: &str) -> Result<Option<StandbyNames>> {
        let v = value.trim();
        if v.is_empty() {
            return Ok(None);
        }
        let lower = v.to_ascii_lowercase();
        let (method, rest) = if let Some(r) = lower.strip_prefix("first ") {
            (Method::First, &v[v.len() - r.len()..])
        } else if let Some(r) = lower.strip_prefix("any ") {
            (Method::Any, &v[v.len() - r.len()..])
        } else {
            (Method::First, v)
        };
        let rest = rest.trim();
        let digits = rest.find(|c: char| !c.is_ascii_digit()).unwrap_or(rest.len());
        if digits > 0 && rest[digits..].trim_start().starts_with('(') {
            let num: usize = rest[..digits]
                .parse()
                .map_err(|_| syntax(format!("invalid number of standbys \"{}\"", &rest[..digits])))?;
            if num == 0 {
                return Err(syntax("number of synchronous standbys (0) must be greater than zero"));
            }
            let inner = rest[digits..].trim_start();
            let inner = inner
                .strip_prefix('(')
                .and_then(|x| x.trim_end().strip_suffix(')'))
                .ok_or_else(|| syntax("missing \")\" after the standby list"))?;
            return Ok(Some(StandbyNames { method, num, names: name_list(inner)? }));
        }
        if method == Method::Any || lower.starts_with("first ") {
            return Err(syntax(format!("syntax error in synchronous_standby_names \"{v}\"")));
        }
        Ok(Some(StandbyNames { method: Method::First, num: 1, names: name_list(rest)? }))
    }

    /// A standby's priority: the 1-based position of the first entry naming it, 0 if none does.
    pub fn priority(&self, application_name: &str) -> usize {
        let pos = self.names.iter().position(|n| n == "*" || n.eq_ignore_ascii_case(application_name));
        match (pos, self.method) {
            (None, _) => 0,
            (Some(_), Method::Any) => 1,
            (Some(i), Method::First) => i + 1,
        }
    }
}

/// A standby's role in synchronous replication, as pg_stat_replication shows it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct SyncRole {
    pub priority: usize,
    /// async, potential, sync or quorum.
    pub state: &'static str,
}

/// What one evaluation of the standbys found.
struct Evaluation {
    acks: Acks,
    /// Fewer candidates are connected than the setting asks for.
    missing: bool,
    /// Every synchronous standby is connected, replying and within one segment.
    healthy: bool,
}

/// The synchronous replication policy of a primary.
pub struct SyncRep {
    senders: Arc<Mutex<Vec<Arc<SenderInfo>>>>,
    names: RwLock<Option<StandbyNames>>,
    timeout: RwLock<Duration>,
    segment_size: u64,
    degraded: AtomicBool,
    /// When the policy degraded (PostgreSQL timestamp), 0 if it is not.
    degraded_since: AtomicI64,
}

impl SyncRep {
    /// A policy over the WAL senders in `senders`.
    pub fn new(senders: Arc<Mutex<Vec<Arc<SenderInfo>>>>, segment_size: u64) -> SyncRep {
        SyncRep {
            senders,
            names: RwLock::new(None),
            timeout: RwLock::new(Duration::ZERO),
            segment_size,
            degraded: AtomicBool::new(false),
            degraded_since: AtomicI64::new(0),
        }
    }

    /// Applies `synchronous_standby_names` and `synchronous_standby_timeout` (validated values).
    pub fn configure(&self, names: &str, timeout: Duration) -> Result<()> {
        let parsed = StandbyNames::parse(names)?;
        if parsed.is_none() {
            self.set_degraded(false);
        }
        *self.names.write().unwrap_or_else(|e| e.into_inner()) = parsed;
        *self.timeout.write().unwrap_or_else(|e| e.into_inner()) = timeout;
        Ok(())
    }

    /// Whether synchronous replication is configured.
    pub fn enabled(&self) -> bool {
        self.names.read().unwrap_or_else(|e| e.into_inner()).is_some()
    }

    /// Whether commits are currently acknowledged without the standbys (timeout fallback).
    pub fn degraded(&self) -> bool {
        self.degraded.load(Ordering::Acquire)
    }

    /// When the fallback began (PostgreSQL timestamp), if it is on.
    pub fn degraded_since(&self) -> Option<i64> {
        let t = self.degraded_since.load(Ordering::Acquire);
        (self.degraded() && t != 0).then_some(t)
    }

    fn set_degraded(&self, on: bool) {
        self.degraded_since.store(if on { protocol::now() } else { 0 }, Ordering::Release);
        self.degraded.store(on, Ordering::Release);
    }

    /// The roles of the connected senders, in the order of `senders` (the WAL sender array).
    pub fn roles(&self, senders: &[Arc<SenderInfo>], local: Lsn) -> Vec<SyncRole> {
        let names = self.names.read().unwrap_or_else(|e| e.into_inner());
        let Some(names) = names.as_ref() else {
            return senders.iter().map(|_| SyncRole { priority: 0, state: "async" }).collect();
        };
        let prios: Vec<usize> = senders.iter().map(|s| names.priority(&s.application_name)).collect();
        let sync = self.sync_set(names, senders, &prios, |s| self.close(s, local));
        senders
            .iter()
            .enumerate()
            .map(|(i, _)| {
                let state = match (prios[i], names.method) {
                    (0, _) => "async",
                    (_, Method::Any) => "quorum",
                    (_, Method::First) if sync.contains(&i) => "sync",
                    _ => "potential",
                };
                SyncRole { priority: prios[i], state }
            })
            .collect()
    }

    /// The indexes of the synchronous standbys among `senders`: for FIRST the `num` eligible ones of
    /// highest priority (earlier first among equals), for ANY every eligible candidate.
    fn sync_set(
        &self,
        names: &StandbyNames,
        senders: &[Arc<SenderInfo>],
        prios: &[usize],
        eligible: impl Fn(&SenderInfo) -> bool,
    ) -> Vec<usize> {
        let mut candidates: Vec<usize> =
            (0..senders.len()).filter(|&i| prios[i] > 0 && eligible(&senders[i])).collect();
        if names.method == Method::First {
            candidates.sort_by_key(|&i| (prios[i], i));
            candidates.truncate(names.num);
        }
        candidates
    }

    /// Greenplum's rule: a candidate holds commits back while it streams, or catches up within one segment.
    fn close(&self, s: &SenderInfo, local: Lsn) -> bool {
        s.is_streaming() || Lsn(s.flush.load(Ordering::Acquire).saturating_add(self.segment_size)) >= local
    }

    fn evaluate(&self, local: Lsn) -> Evaluation {
        let names = self.names.read().unwrap_or_else(|e| e.into_inner());
        let Some(names) = names.as_ref() else {
            return Evaluation { acks: Acks::local(local), missing: false, healthy: true };
        };
        let senders = lock(&self.senders).clone();
        let prios: Vec<usize> = senders.iter().map(|s| names.priority(&s.application_name)).collect();
        let connected = prios.iter().filter(|&&p| p > 0).count();
        let seg = self.segment_size;
        let sync = self.sync_set(names, &senders, &prios, |s| self.close(s, local));
        let missing = connected < names.num;
        let since = self.degraded_since.load(Ordering::Acquire);
        let healthy = !missing
            && !sync.is_empty()
            && sync.iter().all(|&i| {
                let s = &senders[i];
                s.reply_time.load(Ordering::Acquire) > since
                    && Lsn(s.flush.load(Ordering::Acquire).saturating_add(seg)) >= local
            });
        let mut acks = Acks::local(local);
        if self.degraded() {
            acks.degraded = true;
        } else if missing {
            (acks.write, acks.flush, acks.apply) = (Lsn::INVALID, Lsn::INVALID, Lsn::INVALID);
        } else if !sync.is_empty() {
            // FIRST: the slowest of the sync set; ANY: the n-th best of the quorum (fewer if some are
            // exempt while catching up).
            let need = match names.method {
                Method::First => sync.len(),
                Method::Any => names.num.min(sync.len()),
            };
            let nth = |field: fn(&SenderInfo) -> u64| {
                let mut v: Vec<u64> = sync.iter().map(|&i| field(&senders[i])).collect();
                v.sort_unstable_by(|a, b| b.cmp(a));
                Lsn(v[need - 1])
            };
            acks.write = nth(|s| s.write.load(Ordering::Acquire));
            acks.flush = nth(|s| s.flush.load(Ordering::Acquire));
            acks.apply = nth(|s| s.apply.load(Ordering::Acquire));
        }
        Evaluation { acks, missing, healthy }
    }

    /// Called periodically: degrades once a commit has waited `synchronous_standby_timeout` for the
    /// standbys, and recovers once they are back. Returns a message to log when the state changed.
    pub fn check_timeout(&self, local: Lsn, oldest_wait: Option<Duration>) -> Option<String> {
        if !self.enabled() {
            return None;
        }
        let timeout = *self.timeout.read().unwrap_or_else(|e| e.into_inner());
        let e = self.evaluate(local);
        if self.degraded() {
            if e.healthy {
                self.set_degraded(false);
                return Some("synchronous standbys are back: commits wait for them again".into());
            }
        } else if !timeout.is_zero() && oldest_wait.is_some_and(|w| w >= timeout) {
            self.set_degraded(true);
            return Some(format!(
                "a commit waited {} ms for the synchronous standbys ({}): acknowledging commits without them \
                 (synchronous_standby_timeout)",
                timeout.as_millis(),
                if e.missing { "not connected" } else { "not confirming" }
            ));
        }
        None
    }
}

impl Durability for SyncRep {
    fn acks(&self, local_flushed: Lsn) -> Acks {
        self.evaluate(local_flushed).acks
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_every_form() {
        let p = |s: &str| StandbyNames::parse(s).expect(s).expect(s);
        assert_eq!(p("a, b").names, vec!["a", "b"]);
        assert_eq!((p("a, b").method, p("a,b").num), (Method::First, 1));
        assert_eq!(p("*").priority("anything"), 1);
        let first = p("FIRST 2 (s1, \"S 2\", s3)");
        assert_eq!((first.method, first.num), (Method::First, 2));
        assert_eq!(first.priority("S 2"), 2);
        assert_eq!(first.priority("s4"), 0);
        let any = p("ANY 2(s1, s2)");
        assert_eq!((any.method, any.num, any.priority("s2")), (Method::Any, 2, 1));
        assert_eq!(p("2(*)").num, 2);
        assert_eq!(p("2(standby1,*,standby2)").priority("standby3"), 2);
        assert_eq!(StandbyNames::parse("").ok(), Some(None));
        for bad in ["ANY s1", "FIRST (a)", "2(a", "a,,b", "0 (a)"] {
            assert!(StandbyNames::parse(bad).is_err(), "{bad}");
        }
    }
}
