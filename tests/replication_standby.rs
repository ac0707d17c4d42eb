//! A standby fed by the WAL receiver: it replays what the primary writes and converges to identical data,
//! refuses writes with 25006, and resumes after a standby restart, a primary restart and a network cut. A
//! standby whose WAL was recycled on the primary, or that belongs to another system, reports a clear error
//! and never a healthy state.

mod common;

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

use common::{copy_dir, Proxy, TempDir, TestPrimary};
use tandem::engine::{Engine, EngineConfig, InitOptions, STANDBY_SIGNAL};
use tandem::replication::walreceiver::{ReceiverConfig, WalReceiver};
use tandem::storage::state::DbState;
use tandem::storage::value::Value;
use tandem::txn::Isolation;
use tandem::SqlState;

const SEGMENT: u64 = 1 << 20;

fn write(engine: &Engine, table: &str, from: i64, n: i64, len: usize) {
    for k in from..from + n {
        let mut txn = engine.begin(Isolation::ReadCommitted);
        let id = txn.state().table(table).unwrap().def.id;
        txn.insert(id, vec![Value::Int(k), Value::text(&"v".repeat(len))].into()).unwrap();
        txn.commit().unwrap().wait().unwrap();
    }
}

/// Every table's rows, in key order.
fn dump(state: &DbState) -> Vec<(String, Vec<Vec<Value>>)> {
    state
        .names
        .iter()
        .filter_map(|(name, _)| {
            state.table(name).map(|t| (name.to_string(), t.rows.values().map(|r| r.to_vec()).collect()))
        })
        .collect()
}

/// Waits until the standby has replayed everything the primary flushed, then compares the data.
fn converge(primary: &Engine, standby: &Engine) {
    let target = primary.wal().flushed();
    let deadline = Instant::now() + Duration::from_secs(30);
    while standby.replay_status().applied < target {
        assert!(Instant::now() < deadline, "standby at {} never reached {target}", standby.replay_status().applied);
        std::thread::sleep(Duration::from_millis(10));
    }
    assert_eq!(dump(&standby.snapshot().state), dump(&primary.snapshot().state), "data differs");
}

fn receiver(standby: &Arc<Engine>, port: u16) -> WalReceiver {
    let mut config = ReceiverConfig::new("127.0.0.1", port, "standby1");
    config.max_retry_interval = Duration::from_millis(300);
    config.wal_receiver_timeout = Duration::from_secs(5);
    WalReceiver::start(standby.clone(), config)
}

fn wait_status(rx: &WalReceiver, want: impl Fn(&tandem::replication::walreceiver::ReceiverStatus) -> bool, what: &str) {
    let deadline = Instant::now() + Duration::from_secs(30);
    while !want(&rx.status()) {
        assert!(Instant::now() < deadline, "{what}: {:?}", rx.status());
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// A primary in `TMP/primary` with 1 MiB segments and a table `a`, and a copy of it as a standby in
/// `TMP/standby`.
fn primary_with_table_and_standby(tag: &str, config: EngineConfig) -> (TempDir, PathBuf, PathBuf) {
    let tmp = TempDir::new(tag);
    let pdir = tmp.path().join("primary");
    let sdir = tmp.path().join("standby");
    Engine::init(&pdir, &InitOptions { segment_size: SEGMENT }).unwrap();
    let e = Engine::open(&pdir, config).unwrap();
    common::create_kv_table(&e, "a");
    e.shutdown().unwrap();
    drop(e);
    make_standby(&pdir, &sdir);
    (tmp, pdir, sdir)
}

fn make_standby(primary_dir: &Path, standby_dir: &Path) {
    copy_dir(primary_dir, standby_dir);
    std::fs::write(standby_dir.join(STANDBY_SIGNAL), "").unwrap();
}

fn config() -> EngineConfig {
    EngineConfig { checkpoint_wal_bytes: 2 * SEGMENT, ..EngineConfig::default() }
}

#[test]
fn standby_replays_refuses_writes_and_survives_restarts_and_cuts() {
    let (_tmp, pdir, sdir) = primary_with_table_and_standby("standby", config());
    let primary = TestPrimary::start(&pdir, config(), 0);
    let port = primary.port;
    let proxy = Proxy::start(port);
    let standby = Arc::new(Engine::open(&sdir, config()).unwrap());
    assert!(standby.in_recovery());
    let initial_checkpoint = standby.control().checkpoint;
    let rx = receiver(&standby, proxy.port);
    wait_status(&rx, |s| s.status == "streaming", "streaming");

    // Rows and DDL arrive; more than a few segments, so checkpoints and restartpoints happen.
    write(&primary.engine, "a", 0, 2000, 2000);
    common::create_kv_table(&primary.engine, "b");
    write(&primary.engine, "b", 0, 10, 10);
    converge(&primary.engine, &standby);
    // The standby took restartpoints at the primary's checkpoint records.
    let deadline = Instant::now() + Duration::from_secs(10);
    while standby.control().checkpoint <= initial_checkpoint {
        assert!(Instant::now() < deadline, "no restartpoint on the standby");
        std::thread::sleep(Duration::from_millis(20));
    }

    // Hot standby: reads work, writes get 25006.
    let mut txn = standby.begin(Isolation::ReadCommitted);
    assert_eq!(txn.state().table("b").unwrap().rows.len(), 10);
    let id = txn.state().table("b").unwrap().def.id;
    let err = txn.insert(id, vec![Value::Int(99), Value::text("x")].into()).unwrap_err();
    assert_eq!(err.code, SqlState::READ_ONLY_SQL_TRANSACTION);
    drop(txn);

    // Standby restart.
    rx.stop();
    standby.shutdown().unwrap();
    drop(standby);
    write(&primary.engine, "a", 2000, 100, 100);
    let standby = Arc::new(Engine::open(&sdir, config()).unwrap());
    let rx = receiver(&standby, proxy.port);
    converge(&primary.engine, &standby);

    // Primary restart: the receiver reconnects by itself.
    primary.stop();
    let primary = TestPrimary::start(&pdir, config(), port);
    write(&primary.engine, "a", 2100, 100, 100);
    converge(&primary.engine, &standby);

    // A five-second network cut.
    proxy.cut(Duration::from_secs(5));
    write(&primary.engine, "b", 10, 50, 100);
    wait_status(&rx, |s| s.status != "streaming" && s.last_error.is_some(), "the cut is noticed");
    converge(&primary.engine, &standby);
    wait_status(&rx, |s| s.status == "streaming" && s.last_error.is_none(), "streaming again");

    // Byte-identical WAL: every segment both hold, up to the standby's flushed position.
    let flushed = standby.wal().flushed();
    for (_, segno, path) in tandem::wal::segment::list(&sdir.join("pg_wal"), SEGMENT).unwrap() {
        let end = (segno + 1) * SEGMENT;
        if end > flushed.0 {
            continue;
        }
        let theirs = pdir.join("pg_wal").join(path.file_name().unwrap());
        if let Ok(p) = std::fs::read(&theirs) {
            assert!(p == std::fs::read(&path).unwrap(), "segment {} differs", path.display());
        }
    }
    rx.stop();
    standby.shutdown().unwrap();
    primary.stop();
}

#[test]
fn recycled_wal_and_foreign_systems_are_reported_not_hidden() {
    let (tmp, pdir, sdir) = primary_with_table_and_standby("standby-err", config());
    // The primary moves on far enough to recycle what the standby would need.
    let primary = TestPrimary::start(&pdir, EngineConfig { spare_segments: 0, ..config() }, 0);
    write(&primary.engine, "a", 0, 5000, 2000);
    primary.engine.checkpoint().unwrap();
    let standby = Arc::new(Engine::open(&sdir, config()).unwrap());
    let rx = receiver(&standby, primary.port);
    wait_status(
        &rx,
        |s| s.last_error.as_deref().is_some_and(|e| e.contains("has already been removed")),
        "recycled WAL reported",
    );
    std::thread::sleep(Duration::from_millis(500));
    assert_ne!(rx.status().status, "streaming");
    rx.stop();
    standby.shutdown().unwrap();
    drop(standby);

    // A standby of another database system.
    let odir = tmp.path().join("other");
    let other_standby = tmp.path().join("other-standby");
    std::thread::sleep(Duration::from_millis(5));
    Engine::init(&odir, &InitOptions { segment_size: SEGMENT }).unwrap();
    make_standby(&odir, &other_standby);
    let other = Arc::new(Engine::open(&other_standby, config()).unwrap());
    let rx = receiver(&other, primary.port);
    let ours = primary.engine.system_id().to_string();
    let theirs = other.system_id().to_string();
    wait_status(
        &rx,
        |s| {
            s.last_error
                .as_deref()
                .is_some_and(|e| e.contains("identifier differs") && e.contains(&ours) && e.contains(&theirs))
        },
        "foreign system refused, naming both identifiers",
    );
    rx.stop();
    other.shutdown().unwrap();
    primary.stop();
}

#[test]
fn the_receiver_makes_the_next_segment_before_it_needs_it() {
    // Zero-filling and fsyncing a segment inline held replay back at every segment boundary; the receiver
    // creates the next one in the background as soon as it opens a segment, as the primary's flusher does.
    let (_tmp, pdir, sdir) = primary_with_table_and_standby("standby-prealloc", EngineConfig::default());
    // No checkpoints (the default distance is far beyond this test's WAL), so no segment is recycled into
    // a future name: any segment ahead of the receiver is one it made.
    let primary = TestPrimary::start(&pdir, EngineConfig::default(), 0);
    let standby = Arc::new(Engine::open(&sdir, EngineConfig::default()).unwrap());
    let rx = receiver(&standby, primary.port);
    wait_status(&rx, |s| s.status == "streaming", "streaming");
    let first = standby.wal().flushed().segment(SEGMENT);
    write(&primary.engine, "a", 0, 1500, 2000);
    converge(&primary.engine, &standby);
    let at = standby.wal().flushed().segment(SEGMENT);
    assert!(at >= first + 2, "the receiver crossed from segment {first} only to {at}");
    let timeline = standby.wal().timeline();
    let next = sdir.join("pg_wal").join(tandem::wal::segment::file_name(timeline, at + 1, SEGMENT));
    let deadline = Instant::now() + Duration::from_secs(10);
    while std::fs::metadata(&next).map(|m| m.len()).ok() != Some(SEGMENT) {
        assert!(Instant::now() < deadline, "segment {} was not made ahead of the receiver", next.display());
        std::thread::sleep(Duration::from_millis(20));
    }
    rx.stop();
    standby.shutdown().unwrap();
    primary.stop();
}
