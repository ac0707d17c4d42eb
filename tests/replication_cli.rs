//! Online standby creation as an operator does it: a primary started with `tandem start --detach` runs
//! pgbench tpcb-like with 8 clients while `tandem init-standby` creates a standby; pgbench sees no failed
//! transaction, the standby streams, replays up to the primary's current LSN within a second of the load
//! stopping, and every table dumps identically on both. Hot standby: reads work, writes get 25006.

mod common;

use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

use common::{free_port, tandem_bin, TempDir};

/// Stops a server (immediately, by the pid in its data directory) when dropped.
struct Running(PathBuf);

impl Drop for Running {
    fn drop(&mut self) {
        let _ = Command::new(tandem_bin()).args(["stop", "--mode", "immediate", "-D"]).arg(&self.0).output();
    }
}

fn tandem(args: &[&str], dir: &Path) -> Output {
    let out = Command::new(tandem_bin()).args(args).arg("-D").arg(dir).output().unwrap();
    assert!(out.status.success(), "tandem {args:?} failed: {}", String::from_utf8_lossy(&out.stderr));
    out
}

fn psql(port: u16, sql: &str) -> std::result::Result<String, String> {
    let out = Command::new("psql")
        .args([
            "-h",
            "127.0.0.1",
            "-p",
            &port.to_string(),
            "-U",
            "postgres",
            "-X",
            "-A",
            "-t",
            "-v",
            "ON_ERROR_STOP=1",
            "-c",
            sql,
            "postgres",
        ])
        .output()
        .unwrap();
    if out.status.success() {
        Ok(String::from_utf8_lossy(&out.stdout).trim().to_string())
    } else {
        Err(String::from_utf8_lossy(&out.stderr).to_string())
    }
}

/// The nice value (field 19 of /proc/PID/task/TID/stat) of the thread of `pid` named `comm`. Listing
/// /proc/PID/task while other threads start and end (a WAL segment's creation) can miss an entry, so a
/// thread not found is looked for again, a few times.
fn thread_nice(pid: u32, comm: &str) -> Option<i64> {
    let find = || {
        common::threads(pid)
            .into_iter()
            .filter(|(name, _)| name == comm)
            .find_map(|(_, task)| common::stat_field(&std::fs::read_to_string(task.join("stat")).ok()?, 19))
    };
    (0..20).find_map(|attempt| {
        if attempt > 0 {
            std::thread::sleep(Duration::from_millis(10));
        }
        find()
    })
}

/// Whether a thread of this user may lower its nice value to -5 (root, CAP_SYS_NICE or RLIMIT_NICE), tried
/// on a thread of the test's own.
fn may_lower_nice() -> bool {
    std::thread::spawn(|| {
        // SAFETY: plain system calls on the calling thread, which ends right after.
        unsafe {
            let tid = libc::syscall(libc::SYS_gettid) as libc::id_t;
            libc::setpriority(libc::PRIO_PROCESS, tid, -5) == 0
        }
    })
    .join()
    .unwrap()
}

/// A process's autogroup nice value (`/autogroup-N nice K`), if the kernel has autogroups.
fn autogroup_nice(pid: u32) -> Option<i32> {
    let text = std::fs::read_to_string(format!("/proc/{pid}/autogroup")).ok()?;
    text.split_whitespace().skip_while(|w| *w != "nice").nth(1)?.parse().ok()
}

/// A primary in `TMP/primary`, started with `tandem start --detach`; its port and a free one for a standby.
fn running_primary(tag: &str) -> (TempDir, u16, u16, Running) {
    let tmp = TempDir::new(tag);
    let pdir = tmp.path().join("primary");
    let (pport, sport) = (free_port(), free_port());
    tandem(&["init", "--port", &pport.to_string()], &pdir);
    tandem(&["start", "--detach"], &pdir);
    (tmp, pport, sport, Running(pdir))
}

#[test]
fn init_standby_under_pgbench_load() {
    let (tmp, pport, sport, _primary) = running_primary("init-standby");
    let sdir = tmp.path().join("standby");
    let init = Command::new("pgbench")
        .args(["-h", "127.0.0.1", "-p", &pport.to_string(), "-i", "-s", "1", "-q", "postgres"])
        .output()
        .unwrap();
    assert!(init.status.success(), "{}", String::from_utf8_lossy(&init.stderr));
    let load = Command::new("pgbench")
        .args(["-h", "127.0.0.1", "-p", &pport.to_string(), "-c", "8", "-j", "2", "-T", "6", "postgres"])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    std::thread::sleep(Duration::from_secs(1));
    let started = Instant::now();
    let out = Command::new(tandem_bin())
        .args([
            "init-standby",
            "-h",
            "127.0.0.1",
            "-p",
            &pport.to_string(),
            "--port",
            &sport.to_string(),
            "--name",
            "mirror1",
            "-D",
        ])
        .arg(&sdir)
        .output()
        .unwrap();
    let _standby = Running(sdir.clone());
    assert!(
        out.status.success(),
        "init-standby failed: {}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    eprintln!("init-standby took {:?}", started.elapsed());
    let load = load.wait_with_output().unwrap();
    let report = String::from_utf8_lossy(&load.stdout);
    assert!(load.status.success(), "pgbench failed: {report}{}", String::from_utf8_lossy(&load.stderr));
    assert!(report.contains("number of failed transactions: 0 "), "{report}");
    // Caught up within a second of the load stopping.
    let target = psql(pport, "select pg_current_wal_lsn()").unwrap();
    let deadline = Instant::now() + Duration::from_secs(1);
    loop {
        let replayed = psql(sport, "select pg_last_wal_replay_lsn()").unwrap();
        if replayed == target {
            break;
        }
        assert!(Instant::now() < deadline, "standby replayed {replayed}, primary at {target}");
        std::thread::sleep(Duration::from_millis(20));
    }
    for (table, order) in [
        ("pgbench_accounts", "1, 2, 3, 4"),
        ("pgbench_branches", "1, 2, 3"),
        ("pgbench_tellers", "1, 2, 3, 4"),
        ("pgbench_history", "1, 2, 3, 4, 5"),
    ] {
        let q = format!("select * from {table} order by {order}");
        assert_eq!(psql(pport, &q).unwrap(), psql(sport, &q).unwrap(), "{table} differs");
    }
    assert_eq!(psql(sport, "select pg_is_in_recovery()").unwrap(), "t");
    assert_eq!(psql(sport, "show in_hot_standby").unwrap(), "on");
    assert_eq!(psql(pport, "show in_hot_standby").unwrap(), "off");
    assert_eq!(psql(sport, "show wal_segment_size").unwrap(), "16MB");
    assert_eq!(psql(sport, "select pg_last_xact_replay_timestamp() is not null").unwrap(), "t");
    assert_eq!(psql(pport, "select pg_last_xact_replay_timestamp() is null").unwrap(), "t");
    let err = psql(sport, "insert into pgbench_history values (1, 1, 1, 1, now(), '')").unwrap_err();
    assert!(err.contains("read-only"), "{err}");
    let err = psql(sport, "create table nope (a int)").unwrap_err();
    assert!(err.contains("read-only"), "{err}");
    // Monitoring: the primary lists the standby, the standby its receiver, `tandem status` both.
    let row = psql(pport, "select application_name, state, sync_state from pg_stat_replication").unwrap();
    assert_eq!(row, "mirror1|streaming|async");
    let row = psql(
        pport,
        "select write_lag is not null, flush_lag is not null, replay_lag is not null from pg_stat_replication",
    )
    .unwrap();
    assert_eq!(row, "t|t|t", "lags were measured during the load");
    let row = psql(pport, "select gp_segment_id, sync_error from gp_stat_replication").unwrap();
    assert_eq!(row, "-1|none");
    let row = psql(pport, "select slot_name, active, wal_status from pg_replication_slots").unwrap();
    assert_eq!(row, "mirror1|t|reserved");
    let row = psql(sport, "select status, slot_name, sender_port from pg_stat_wal_receiver").unwrap();
    assert_eq!(row, format!("streaming|mirror1|{pport}"));
    let status = Command::new(tandem_bin()).args(["status", "-p", &pport.to_string()]).output().unwrap();
    let text = String::from_utf8_lossy(&status.stdout);
    assert!(text.contains("primary") && text.contains("WAL Sender State: streaming"), "{text}");
    let status = Command::new(tandem_bin()).args(["status", "-p", &sport.to_string(), "--json"]).output().unwrap();
    let text = String::from_utf8_lossy(&status.stdout);
    assert!(text.contains("\"role\": \"standby\"") && text.contains("\"status\": \"streaming\""), "{text}");
    // DDL on the primary reaches the standby.
    psql(pport, "create table fresh (a int primary key); insert into fresh values (1), (2)").unwrap();
    let deadline = Instant::now() + Duration::from_secs(5);
    while psql(sport, "select count(*) from fresh").ok().as_deref() != Some("2") {
        assert!(Instant::now() < deadline, "DDL never reached the standby");
        std::thread::sleep(Duration::from_millis(50));
    }
}

#[test]
fn init_standby_refuses_the_primarys_own_port() {
    let tmp = TempDir::new("init-standby-same");
    let out = Command::new(tandem_bin())
        .args(["init-standby", "-h", "127.0.0.1", "-p", "5999", "--port", "5999", "-D"])
        .arg(tmp.path().join("s"))
        .output()
        .unwrap();
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("same host and port"));
    assert!(!tmp.path().join("s").exists(), "a refused init-standby left files behind");
}

/// A standby name already registered on the primary (its replication slot exists) is refused with the
/// way out, and the slot, which holds WAL for the standby that made it, is left as it was (init-standby used
/// to drop it while undoing its own failure).
#[test]
fn init_standby_leaves_another_standbys_slot_alone() {
    let (tmp, pport, sport, _primary) = running_primary("init-standby-taken");
    let made = Command::new("psql")
        .arg(format!("host=127.0.0.1 port={pport} user=postgres replication=true"))
        .args(["-X", "-A", "-t", "-v", "ON_ERROR_STOP=1", "-c", "CREATE_REPLICATION_SLOT taken PHYSICAL RESERVE_WAL"])
        .output()
        .unwrap();
    assert!(made.status.success(), "{}", String::from_utf8_lossy(&made.stderr));
    let before = psql(pport, "select slot_name, restart_lsn from pg_replication_slots").unwrap();
    assert!(before.starts_with("taken|"), "{before}");

    let sdir = tmp.path().join("standby");
    let out = Command::new(tandem_bin())
        .args(["init-standby", "-h", "127.0.0.1", "-p", &pport.to_string(), "--port", &sport.to_string()])
        .args(["--name", "taken", "-D"])
        .arg(&sdir)
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success(), "init-standby took a registered name: {stderr}");
    assert!(stderr.contains("a standby named \"taken\" is already registered"), "{stderr}");
    assert!(stderr.contains("pg_drop_replication_slot('taken')"), "no way out given: {stderr}");
    assert!(!sdir.exists(), "a refused init-standby left files behind");
    let after = psql(pport, "select slot_name, restart_lsn from pg_replication_slots").unwrap();
    assert_eq!(after, before, "the other standby's slot changed");

    // Once the operator drops it, the name can be used.
    psql(pport, "select pg_drop_replication_slot('taken')").unwrap();
    let out = Command::new(tandem_bin())
        .args(["init-standby", "-h", "127.0.0.1", "-p", &pport.to_string(), "--port", &sport.to_string()])
        .args(["--name", "taken", "--no-start", "-D"])
        .arg(&sdir)
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    assert!(psql(pport, "select slot_name from pg_replication_slots").unwrap().contains("taken"));
}

/// A standby streams while it still loads its snapshot: the primary sees it `streaming` while the standby
/// refuses sessions with 57P03 and `tandem status` shows it starting up; once loaded it answers reads,
/// `init-standby` returns, and the data is the primary's. (A failpoint stalls the snapshot's decoding
/// for 5 s, standing in for the seconds a large snapshot takes.)
#[test]
fn standby_streams_while_its_snapshot_loads() {
    let (tmp, pport, sport, _primary) = running_primary("loading-standby");
    let sdir = tmp.path().join("standby");
    psql(
        pport,
        "create table t (id int primary key, v text); insert into t select g, 'v' || g from generate_series(1, 1000) g",
    )
    .unwrap();
    let _standby = Running(sdir.clone());
    let child = Command::new(tandem_bin())
        .args(["init-standby", "-h", "127.0.0.1", "-p", &pport.to_string(), "--port", &sport.to_string()])
        .args(["--name", "loading", "-D"])
        .arg(&sdir)
        .env("TANDEM_FAILPOINTS", "snapshot_decode=sleep(5000)")
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let deadline = Instant::now() + Duration::from_secs(30);
    let state = "select state from pg_stat_replication where application_name = 'loading'";
    while psql(pport, state).ok().as_deref() != Some("streaming") {
        assert!(Instant::now() < deadline, "the standby never streamed");
        std::thread::sleep(Duration::from_millis(20));
    }
    // Replay threads are favoured (nice -5, where the server may), the startup process only once loaded:
    // the load must not take CPU from the primary it may share a machine with.
    let spid = common::server_pid(&sdir).expect("the standby's tandem.pid");
    let favoured = if may_lower_nice() { -5 } else { 0 };
    let threads = || {
        let names: Vec<String> = common::threads(spid).into_iter().map(|(name, _)| name).collect();
        let log = std::fs::read_to_string(sdir.join("log").join("tandem.log")).unwrap_or_default();
        format!("threads of {spid}: {names:?}; log:\n{log}")
    };
    assert_eq!(thread_nice(spid, "walreceiver"), Some(favoured), "the WAL receiver's nice value; {}", threads());
    assert_eq!(thread_nice(spid, "startup"), Some(0), "the startup process's nice value while it loads; {}", threads());
    // So is its autogroup (init-standby starts it in a session, and so an autogroup, of its own), once loaded.
    let group_before = autogroup_nice(spid);
    assert!(group_before.is_none_or(|n| n == 0), "the standby's autogroup while it loads: {group_before:?}");
    let refused = psql(sport, "select count(*) from t").expect_err("a loading standby answered a query");
    assert!(refused.contains("the database system is not yet accepting connections"), "{refused}");
    assert!(refused.contains("Consistent recovery state has not been yet reached"), "{refused}");
    let status =
        Command::new(tandem_bin()).args(["status", "-h", "127.0.0.1", "-p", &sport.to_string()]).output().unwrap();
    let status_text = String::from_utf8_lossy(&status.stdout);
    assert!(status.status.success() && status_text.contains("starting up"), "{status_text}");
    let out = child.wait_with_output().unwrap();
    let said = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{said}{}", String::from_utf8_lossy(&out.stderr));
    assert!(said.contains("is streaming") && said.contains("accepts read-only connections"), "{said}");
    assert_eq!(psql(sport, "select count(*), sum(id) from t").unwrap(), "1000|500500");
    assert_eq!(
        thread_nice(spid, "startup"),
        Some(favoured),
        "the startup process's nice value once loaded; {}",
        threads()
    );
    assert_eq!(autogroup_nice(spid), group_before.map(|_| favoured as i32), "the standby's autogroup once loaded");
    let log = std::fs::read_to_string(sdir.join("log").join("tandem.log")).unwrap();
    assert!(log.contains("snapshot loaded") && log.contains("consistent recovery state reached"), "{log}");
    // A standby taken away: its slot is dropped with PostgreSQL's function (not while it streams).
    let slots = "select slot_name from pg_replication_slots";
    let slot = psql(pport, slots).unwrap();
    let in_use =
        psql(pport, &format!("select pg_drop_replication_slot('{slot}')")).expect_err("dropped an active slot");
    assert!(in_use.contains("is active for PID"), "{in_use}");
    tandem(&["stop"], &sdir);
    let deadline = Instant::now() + Duration::from_secs(10);
    while psql(pport, &format!("select pg_drop_replication_slot('{slot}')")).is_err() {
        assert!(Instant::now() < deadline, "the slot stayed active after its standby stopped");
        std::thread::sleep(Duration::from_millis(50));
    }
    assert_eq!(psql(pport, slots).unwrap(), "");
    let gone = psql(pport, &format!("select pg_drop_replication_slot('{slot}')")).expect_err("dropped a slot twice");
    assert!(gone.contains("does not exist"), "{gone}");
    // Started again (favoured once loaded) and promoted, it is a primary: its autogroup gets its nice back.
    if group_before.is_some() && favoured != 0 {
        tandem(&["start", "--detach"], &sdir);
        let spid = common::server_pid(&sdir).expect("the standby's tandem.pid");
        let deadline = Instant::now() + Duration::from_secs(20);
        while autogroup_nice(spid) != Some(-5) {
            assert!(Instant::now() < deadline, "the restarted standby's autogroup: {:?}", autogroup_nice(spid));
            std::thread::sleep(Duration::from_millis(20));
        }
        tandem(&["promote", "--force"], &sdir);
        assert_eq!(autogroup_nice(spid), group_before, "the promoted standby's autogroup");
    }
}
