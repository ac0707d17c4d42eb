//! Base backups of a running primary: tandem's own client with a slot that holds the WAL until the
//! standby streams, pg_basebackup 15 with `-X stream -R`, and slots that exceed max_slot_wal_keep_size.

mod common;

use std::process::Command;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use common::{TempDir, TestPrimary};
use tandem::engine::{Engine, EngineConfig, InitOptions};
use tandem::replication::basebackup::{fetch, replication_query, write_standby_config, FetchOptions};
use tandem::replication::walreceiver::{ReceiverConfig, WalReceiver};
use tandem::replication::walsender::SenderConfig;
use tandem::storage::state::DbState;
use tandem::storage::value::Value;
use tandem::txn::Isolation;

const SEGMENT: u64 = 1 << 20;

fn write(engine: &Engine, from: i64, n: i64) {
    for k in from..from + n {
        let mut txn = engine.begin(Isolation::ReadCommitted);
        let id = txn.state().table("t").unwrap().def.id;
        txn.insert(id, vec![Value::Int(k), Value::text(&"w".repeat(500))].into()).unwrap();
        txn.commit().unwrap().wait().unwrap();
    }
}

fn rows(state: &DbState) -> Vec<Vec<Value>> {
    state.table("t").map(|t| t.rows.values().map(|r| r.to_vec()).collect()).unwrap_or_default()
}

fn converge(primary: &Engine, standby: &Engine) {
    let target = primary.wal().flushed();
    let deadline = Instant::now() + Duration::from_secs(30);
    while standby.replay_status().applied < target {
        assert!(Instant::now() < deadline, "standby at {} never reached {target}", standby.replay_status().applied);
        std::thread::sleep(Duration::from_millis(10));
    }
    assert_eq!(rows(&standby.snapshot().state), rows(&primary.snapshot().state));
}

fn primary(tmp: &TempDir, sender: SenderConfig) -> TestPrimary {
    let dir = tmp.path().join("primary");
    Engine::init(&dir, &InitOptions { segment_size: SEGMENT }).unwrap();
    let p = TestPrimary::start_with(
        &dir,
        EngineConfig { checkpoint_wal_bytes: 2 * SEGMENT, ..EngineConfig::default() },
        0,
        sender,
    );
    common::create_kv_table(&p.engine, "t");
    write(&p.engine, 0, 1000);
    p
}

/// Writes on the primary until stopped; returns how many rows it wrote.
fn load(engine: Arc<Engine>, stop: Arc<AtomicBool>) -> std::thread::JoinHandle<i64> {
    std::thread::spawn(move || {
        let mut k = 100_000;
        while !stop.load(Ordering::Acquire) {
            write(&engine, k, 1);
            k += 1;
        }
        k - 100_000
    })
}

#[test]
fn tandem_basebackup_under_load_becomes_a_streaming_standby() {
    let tmp = TempDir::new("bb");
    let p = primary(&tmp, SenderConfig::default());
    let stop = Arc::new(AtomicBool::new(false));
    let writer = load(p.engine.clone(), stop.clone());
    let sdir = tmp.path().join("standby");
    // The slot first, as `tandem init-standby` makes it: the primary holds WAL until the standby streams.
    replication_query("127.0.0.1", p.port, "CREATE_REPLICATION_SLOT \"standby1\" PHYSICAL RESERVE_WAL").unwrap();
    let options = FetchOptions { application_name: "standby1".into(), ..FetchOptions::default() };
    let fetched = fetch("127.0.0.1", p.port, &sdir, &options).unwrap();
    assert_eq!(fetched.system_id, p.engine.system_id());
    assert!(fetched.end >= fetched.start);
    write_standby_config(&sdir, "127.0.0.1", p.port, "standby1", Some("standby1")).unwrap();
    // The slot holds the WAL written since the backup while the standby is not yet there.
    std::thread::sleep(Duration::from_millis(300));
    p.engine.checkpoint().unwrap();
    let standby = Arc::new(Engine::open(&sdir, EngineConfig::default()).unwrap());
    assert!(standby.in_recovery());
    let mut config = ReceiverConfig::new("127.0.0.1", p.port, "standby1");
    config.slot = Some("standby1".into());
    let rx = WalReceiver::start(standby.clone(), config);
    std::thread::sleep(Duration::from_millis(500));
    stop.store(true, Ordering::Release);
    let written = writer.join().unwrap();
    assert!(written > 0);
    converge(&p.engine, &standby);
    let slot = p.ctx.slots.get("standby1").unwrap();
    assert!(slot.restart_lsn.unwrap() > fetched.start, "the slot did not follow the standby");
    rx.stop();
    standby.shutdown().unwrap();
    p.stop();
}

#[test]
fn pg_basebackup_makes_a_standby_tandem_opens() {
    let tmp = TempDir::new("pgbb");
    let p = primary(&tmp, SenderConfig::default());
    let sdir = tmp.path().join("pgbb");
    let out = Command::new("pg_basebackup")
        .args(["-h", "127.0.0.1", "-p", &p.port.to_string(), "-X", "stream", "-R", "--no-password", "-D"])
        .arg(&sdir)
        .output()
        .expect("pg_basebackup (PostgreSQL 15 client programs) must be installed");
    assert!(out.status.success(), "pg_basebackup failed: {}", String::from_utf8_lossy(&out.stderr));
    assert!(sdir.join("standby.signal").exists());
    let conf = std::fs::read_to_string(sdir.join("postgresql.auto.conf")).unwrap();
    assert!(conf.contains(&format!("port={}", p.port)), "{conf}");
    write(&p.engine, 1000, 200);
    let standby = Arc::new(Engine::open(&sdir, EngineConfig::default()).unwrap());
    assert!(standby.in_recovery());
    let rx = WalReceiver::start(standby.clone(), ReceiverConfig::new("127.0.0.1", p.port, "pgbb"));
    converge(&p.engine, &standby);
    rx.stop();
    standby.shutdown().unwrap();
    p.stop();
}

#[test]
fn a_slot_over_its_limit_is_lost_and_says_so() {
    let tmp = TempDir::new("slotlimit");
    let p = primary(&tmp, SenderConfig { max_slot_wal_keep_size: Some(2 * SEGMENT), ..SenderConfig::default() });
    p.ctx.slots.create("away", false, true, 0).unwrap();
    write(&p.engine, 1000, 8000);
    let deadline = Instant::now() + Duration::from_secs(10);
    while !p.ctx.slots.get("away").unwrap().lost {
        assert!(Instant::now() < deadline, "slot never invalidated");
        std::thread::sleep(Duration::from_millis(50));
    }
    assert_eq!(p.ctx.slots.wal_status(&p.ctx.slots.get("away").unwrap()), "lost");
    let err = p.ctx.slots.acquire("away", 1).unwrap_err();
    assert!(err.message.contains("invalidated"), "{err}");
    p.stop();
}
