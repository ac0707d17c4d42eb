//! Faults: corruption in the middle of the WAL, data directories that are not ours, a second server on
//! one directory, failed WAL writes and fsyncs, and visibility while the flush is delayed.
//!
//! Failpoints are process-wide: a WAL write failure set by one test would fail another test's commits. So
//! every test here that commits takes `SERIAL` first.

mod common;

use std::collections::BTreeMap;
use std::path::Path;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use tandem::engine::{Engine, EngineConfig, InitOptions};
use tandem::failpoint::{self, Action};
use tandem::storage::catalog::{ColumnDef, PrimaryKey, TableDef};
use tandem::storage::value::{DataType, Row, Value};
use tandem::txn::Isolation;
use tandem::wal::Lsn;
use tandem::SqlState;

static SERIAL: Mutex<()> = Mutex::new(());

fn config() -> EngineConfig {
    EngineConfig { background_checkpoints: false, ..EngineConfig::default() }
}

fn new_db(tmp: &common::TempDir) -> std::path::PathBuf {
    let dir = tmp.path().join("data");
    Engine::init(&dir, &InitOptions { segment_size: 1 << 20 }).unwrap();
    let engine = Engine::open(&dir, config()).unwrap();
    let mut txn = engine.begin(Isolation::ReadCommitted);
    let id = txn.allocate_oid();
    let index_id = txn.allocate_oid();
    let col = |n: &str| ColumnDef { name: n.into(), ty: DataType::Int8, not_null: false, default: None };
    txn.create_table(TableDef {
        id,
        name: "t".into(),
        columns: vec![col("k"), col("v")],
        primary_key: Some(PrimaryKey { name: "t_pkey".into(), index_id, columns: vec![0] }),
        indexes: vec![],
    })
    .unwrap();
    txn.commit().unwrap().wait().unwrap();
    engine.shutdown().unwrap();
    dir
}

fn row(k: i64, v: i64) -> Row {
    vec![Value::Int(k), Value::Int(v)].into()
}

/// Inserts k and returns the commit's end position.
fn insert(engine: &Engine, k: i64) -> tandem::Result<Lsn> {
    let mut txn = engine.begin(Isolation::ReadCommitted);
    let id = txn.state().table("t").unwrap().def.id;
    txn.insert(id, row(k, k))?;
    let ticket = txn.commit()?;
    ticket.wait()?;
    Ok(ticket.lsn)
}

fn rows(engine: &Engine) -> Vec<i64> {
    engine
        .snapshot()
        .state
        .table("t")
        .unwrap()
        .rows
        .keys()
        .map(|k| match k[0] {
            Value::Int(i) => i,
            _ => panic!(),
        })
        .collect()
}

/// Every file under a directory with its bytes.
fn files(dir: &Path) -> BTreeMap<String, Vec<u8>> {
    let mut out = BTreeMap::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        for e in std::fs::read_dir(&d).unwrap() {
            let p = e.unwrap().path();
            if p.is_dir() {
                stack.push(p);
            } else {
                out.insert(p.strip_prefix(dir).unwrap().display().to_string(), std::fs::read(&p).unwrap());
            }
        }
    }
    out
}

#[test]
fn corruption_in_the_middle_refuses_to_start_and_changes_nothing() {
    let _serial = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    let tmp = common::TempDir::new("corrupt");
    let dir = new_db(&tmp);
    let engine = Engine::open(&dir, config()).unwrap();
    let mut ends = vec![];
    for k in 0..40 {
        ends.push(insert(&engine, k).unwrap());
    }
    engine.halt();
    drop(engine);
    // Damage the payload of the 20th commit; valid commits follow it.
    let target = ends[19].plus(45);
    let seg_size = 1u64 << 20;
    let name = tandem::wal::segment::file_name(1, target.segment(seg_size), seg_size);
    let path = dir.join("pg_wal").join(&name);
    let mut bytes = std::fs::read(&path).unwrap();
    bytes[target.segment_offset(seg_size) as usize] ^= 0xFF;
    std::fs::write(&path, &bytes).unwrap();
    let before = files(&dir);
    let err = Engine::open(&dir, config()).err().expect("start must be refused");
    assert_eq!(err.code, SqlState::DATA_CORRUPTED);
    assert!(err.message.contains(&name), "message names the segment: {err}");
    assert!(err.message.contains(&format!("offset {}", ends[19].segment_offset(seg_size))), "and the offset: {err}");
    assert_eq!(files(&dir), before, "a refused start changed files");
}

#[test]
fn foreign_and_mismatched_directories_are_refused() {
    let _serial = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    let tmp = common::TempDir::new("foreign");
    // A PostgreSQL data directory.
    let pg = tmp.path().join("pg");
    std::fs::create_dir_all(&pg).unwrap();
    std::fs::write(pg.join("PG_VERSION"), "15\n").unwrap();
    let err = Engine::open(&pg, config()).err().unwrap();
    assert!(err.message.contains("not a tandem data directory"), "{err}");
    assert!(err.detail.unwrap().contains("PostgreSQL"));
    // A newer format version.
    let a = new_db(&tmp);
    let mut control = std::fs::read(a.join("tandem.control")).unwrap();
    let saved = control.clone();
    control[8] = 2;
    std::fs::write(a.join("tandem.control"), &control).unwrap();
    let err = Engine::open(&a, config()).err().unwrap();
    assert!(err.message.contains("format version 2"), "{err}");
    std::fs::write(a.join("tandem.control"), &saved).unwrap();
    // Another system's control file over this system's snapshot and WAL.
    let tmp2 = common::TempDir::new("foreign2");
    std::thread::sleep(Duration::from_millis(2));
    let b = new_db(&tmp2);
    std::fs::copy(b.join("tandem.control"), a.join("tandem.control")).unwrap();
    let err = Engine::open(&a, config()).err().unwrap();
    assert!(err.message.contains("database system"), "{err}");
    // Another system's WAL with this system's control file and snapshot.
    std::fs::write(a.join("tandem.control"), &saved).unwrap();
    let ctl = tandem::control::ControlFile::read(&a).unwrap();
    std::fs::remove_dir_all(a.join("pg_wal")).unwrap();
    std::fs::create_dir_all(a.join("pg_wal")).unwrap();
    for (name, bytes) in files(&b.join("pg_wal")) {
        std::fs::write(a.join("pg_wal").join(name), bytes).unwrap();
    }
    let err = Engine::open(&a, config()).err().unwrap();
    assert!(
        err.message.contains("different database system") || err.message.contains("checkpoint record"),
        "{err} (checkpoint at {})",
        ctl.checkpoint
    );
}

#[test]
fn a_second_server_is_refused() {
    let _serial = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    let tmp = common::TempDir::new("second");
    let dir = new_db(&tmp);
    let engine = Engine::open(&dir, config()).unwrap();
    let err = Engine::open(&dir, config()).err().unwrap();
    assert_eq!(err.code, SqlState::OBJECT_IN_USE);
    assert!(err.message.contains("another server"), "{err}");
    drop(engine);
    Engine::open(&dir, config()).unwrap();
}

fn write_failure(point: &str, action: Action) {
    let tmp = common::TempDir::new("wfail");
    let dir = new_db(&tmp);
    let engine = Engine::open(&dir, config()).unwrap();
    for k in 0..5 {
        insert(&engine, k).unwrap();
    }
    failpoint::set(point, Some(action));
    let err = insert(&engine, 100).unwrap_err();
    assert_eq!(err.code, SqlState::IO_ERROR, "{err}");
    // A transaction that began before the failure and wrote may have built on lost commits: refused.
    let mut old = engine.begin(Isolation::ReadCommitted);
    let id = old.state().table("t").unwrap().def.id;
    let err2 = insert(&engine, 101).unwrap_err();
    assert_eq!(err2.code, SqlState::IO_ERROR);
    old.insert(id, row(102, 102)).unwrap();
    // Reads keep working and show only acknowledged commits.
    assert_eq!(rows(&engine), vec![0, 1, 2, 3, 4]);
    failpoint::set(point, None);
    assert!(old.commit().is_err(), "a transaction from before the failure committed");
    // The disk is back: commits work again.
    insert(&engine, 5).unwrap();
    assert_eq!(rows(&engine), vec![0, 1, 2, 3, 4, 5]);
    engine.halt();
    drop(engine);
    let engine = Engine::open(&dir, config()).unwrap();
    assert_eq!(rows(&engine), vec![0, 1, 2, 3, 4, 5], "after restart");
}

#[test]
fn failed_writes_and_fsyncs_fail_their_commits_and_lose_nothing_acknowledged() {
    let _serial = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    write_failure("wal_write", Action::Enospc);
    write_failure("wal_fsync", Action::Eio);
}

#[test]
fn visibility_follows_durability() {
    let _serial = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    let tmp = common::TempDir::new("visible");
    let dir = new_db(&tmp);
    let engine = Arc::new(Engine::open(&dir, config()).unwrap());
    failpoint::set("wal_fsync", Some(Action::Sleep(Duration::from_millis(150))));
    let mut unseen_while_pending = 0;
    for k in 0..10 {
        let done = Arc::new(AtomicBool::new(false));
        let committer = {
            let engine = engine.clone();
            let done = done.clone();
            std::thread::spawn(move || {
                let lsn = insert(&engine, k).unwrap();
                done.store(true, Ordering::SeqCst);
                lsn
            })
        };
        let deadline = Instant::now() + Duration::from_secs(5);
        loop {
            let was_done = done.load(Ordering::SeqCst);
            let snap = engine.snapshot();
            let seen = snap.state.table("t").unwrap().rows.len() as i64 > k;
            if seen {
                // Seen only once it is durable: the snapshot's position is flushed.
                assert!(engine.wal().flushed() >= snap.lsn, "visible before durable");
                break;
            }
            if !was_done {
                unseen_while_pending += 1;
            }
            assert!(Instant::now() < deadline, "commit never became visible");
            std::thread::sleep(Duration::from_millis(5));
        }
        let lsn = committer.join().unwrap();
        assert!(engine.wal().flushed() >= lsn);
    }
    failpoint::set("wal_fsync", None);
    assert!(unseen_while_pending > 10, "the delayed flush was never observed ({unseen_while_pending})");
}
