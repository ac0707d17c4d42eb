//! The redo loop a standby will run, checkpoints by volume and by time, and WAL retention.

mod common;

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use tandem::control::ControlFile;
use tandem::engine::{Engine, EngineConfig, InitOptions};
use tandem::recovery::Replay;
use tandem::storage::value::{Row, Value};
use tandem::txn::Isolation;
use tandem::wal::{segment, Lsn};

const SEGMENT: u64 = 1 << 20;

fn row(k: i64, len: usize) -> Row {
    vec![Value::Int(k), Value::text(&"x".repeat(len))].into()
}

fn write_rows(engine: &Engine, id: u32, from: i64, n: i64, len: usize) {
    for k in from..from + n {
        let mut txn = engine.begin(Isolation::ReadCommitted);
        txn.insert(id, row(k, len)).unwrap();
        txn.commit().unwrap().wait().unwrap();
    }
}

fn segment_exists(dir: &std::path::Path, lsn: Lsn) -> bool {
    segment::list(&dir.join("pg_wal"), SEGMENT).unwrap().iter().any(|(_, s, _)| *s == lsn.segment(SEGMENT))
}

#[test]
fn a_follower_replays_the_wal_as_it_is_flushed() {
    let tmp = common::TempDir::new("follow");
    let dir = tmp.path().join("data");
    Engine::init(&dir, &InitOptions { segment_size: SEGMENT }).unwrap();
    let engine = Arc::new(
        Engine::open(&dir, EngineConfig { checkpoint_wal_bytes: 2 * SEGMENT, ..EngineConfig::default() }).unwrap(),
    );
    let id = common::create_kv_table(&engine, "t");
    let control = ControlFile::read(&dir).unwrap();
    // The follower registers as a WAL consumer, so checkpoints keep what it has not read.
    engine.wal().set_consumer("follower", Some(control.checkpoint));
    let mut replay = Replay::start(&dir, &control).unwrap();
    let writer = {
        let engine = engine.clone();
        std::thread::spawn(move || write_rows(&engine, id, 0, 3000, 2000))
    };
    let done = Arc::new(AtomicBool::new(false));
    let mut batches = 0;
    let deadline = Instant::now() + Duration::from_secs(60);
    let follower_engine = engine.clone();
    let done2 = done.clone();
    replay
        .follow(
            |pos| {
                assert!(
                    Instant::now() < deadline,
                    "follower fell behind at {pos}, flushed {}",
                    follower_engine.wal().flushed()
                );
                let flushed = follower_engine.wal().wait_flushed_beyond(pos, Duration::from_millis(50));
                if done2.load(Ordering::Acquire) && flushed <= pos {
                    return None;
                }
                Some(flushed)
            },
            |state, pos, _| {
                batches += 1;
                engine.wal().set_consumer("follower", Some(pos));
                if state.table("t").is_some_and(|t| t.rows.len() == 3000) {
                    done.store(true, Ordering::Release);
                }
            },
        )
        .unwrap();
    writer.join().unwrap();
    assert!(batches > 1, "the follower applied everything in one go ({batches})");
    let primary = engine.snapshot().state;
    let a: Vec<_> = primary.table("t").unwrap().rows.iter().map(|(k, r)| (k.clone(), r.clone())).collect();
    let b: Vec<_> = replay.state().table("t").unwrap().rows.iter().map(|(k, r)| (k.clone(), r.clone())).collect();
    assert_eq!(a, b);
    assert!(ControlFile::read(&dir).unwrap().checkpoint > control.checkpoint, "no checkpoint by volume");
}

#[test]
fn checkpoints_recycle_wal_that_no_consumer_needs() {
    let tmp = common::TempDir::new("retain");
    let dir = tmp.path().join("data");
    Engine::init(&dir, &InitOptions { segment_size: SEGMENT }).unwrap();
    let engine = Engine::open(
        &dir,
        EngineConfig { background_checkpoints: false, spare_segments: 1, ..EngineConfig::default() },
    )
    .unwrap();
    let id = common::create_kv_table(&engine, "t");
    let early = engine.wal().insert_lsn();
    engine.wal().set_consumer("standby", Some(early));
    write_rows(&engine, id, 0, 2000, 2000);
    let ckpt = engine.checkpoint().unwrap();
    assert!(ckpt.segment(SEGMENT) > early.segment(SEGMENT) + 1);
    assert!(segment_exists(&dir, early), "a consumer's WAL was recycled");
    engine.wal().set_consumer("standby", None);
    engine.checkpoint().unwrap();
    assert!(!segment_exists(&dir, early), "WAL nobody needs was kept");
    let files = segment::list(&dir.join("pg_wal"), SEGMENT).unwrap();
    assert!(
        files.len() <= 4,
        "{} segment files kept: {files:?}, checkpoint {}",
        files.len(),
        engine.control().checkpoint
    );
    // Recycled segments are reused: more WAL, and every row is still there after a restart.
    write_rows(&engine, id, 2000, 1000, 2000);
    engine.halt();
    drop(engine);
    let engine = Engine::open(&dir, EngineConfig::default()).unwrap();
    assert_eq!(engine.snapshot().state.table("t").unwrap().rows.len(), 3000);
}

#[test]
fn checkpoints_happen_by_time() {
    let tmp = common::TempDir::new("ckpt-time");
    let dir = tmp.path().join("data");
    Engine::init(&dir, &InitOptions { segment_size: SEGMENT }).unwrap();
    let engine =
        Engine::open(&dir, EngineConfig { checkpoint_interval: Duration::from_millis(300), ..EngineConfig::default() })
            .unwrap();
    let before = engine.control().checkpoint;
    common::create_kv_table(&engine, "t");
    let deadline = Instant::now() + Duration::from_secs(5);
    while engine.control().checkpoint == before {
        assert!(Instant::now() < deadline, "no checkpoint by time");
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// A base backup reuses the latest checkpoint when little WAL follows it and no table was altered since,
/// also after a restart (recovery notes whether the WAL it replayed alters a table); an alteration replayed
/// at the start makes the next base backup take a new checkpoint.
#[test]
fn a_base_backup_after_a_restart_reuses_the_checkpoint_unless_a_table_was_altered() {
    use tandem::storage::state::AlterOp;
    let tmp = common::TempDir::new("backup-reuse");
    let dir = tmp.path().join("data");
    Engine::init(&dir, &InitOptions { segment_size: SEGMENT }).unwrap();
    let engine = Engine::open(&dir, EngineConfig::default()).unwrap();
    let id = common::create_kv_table(&engine, "t");
    write_rows(&engine, id, 0, 100, 10);
    engine.shutdown().unwrap();
    drop(engine);
    let shut_down_at = ControlFile::read(&dir).unwrap().checkpoint;

    // A restart, a few commits, a crash, a restart: the backup starts at the shutdown checkpoint.
    let engine = Engine::open(&dir, EngineConfig::default()).unwrap();
    write_rows(&engine, id, 100, 10, 10);
    engine.halt();
    drop(engine);
    let engine = Engine::open(&dir, EngineConfig::default()).unwrap();
    let backup = engine.backup_start("test").unwrap();
    assert_eq!(backup.checkpoint, shut_down_at, "the backup reuses the checkpoint the restart replayed from");
    assert_eq!(ControlFile::read(&dir).unwrap().checkpoint, shut_down_at);

    // An alteration, a crash, a restart: the next backup checkpoints.
    let mut txn = engine.begin(Isolation::ReadCommitted);
    txn.alter_table(id, AlterOp::RenameTable("renamed".into())).unwrap();
    txn.commit().unwrap().wait().unwrap();
    engine.halt();
    drop(engine);
    let engine = Engine::open(&dir, EngineConfig::default()).unwrap();
    let backup = engine.backup_start("test").unwrap();
    assert!(backup.checkpoint > shut_down_at, "a replayed alteration makes the backup checkpoint");
    assert_eq!(ControlFile::read(&dir).unwrap().checkpoint, backup.checkpoint);
    let table = engine.snapshot().state.tables.get(&id).map(|t| t.def.name.clone());
    assert_eq!(table.as_deref(), Some("renamed"));
}
