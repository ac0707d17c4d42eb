//! Process-level crash test: a child process commits in a loop and reports each acknowledged commit; the
//! test kills it with SIGKILL at a random moment, recovers, and checks that every acknowledged commit is
//! there and that no transaction is half there. Twenty rounds on one data directory, so each round also
//! recovers from the previous crash, with checkpoints and segment recycling happening all along.
//!
//! The child is this same test binary, re-executed with `TANDEM_CRASH_CHILD` set: it then runs
//! `crash_child_entry`, which commits until it is killed.

mod common;

use std::collections::BTreeSet;
use std::io::{BufRead, BufReader, Write};
use std::path::Path;
use std::process::{Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use tandem::engine::{Engine, EngineConfig, InitOptions};
use tandem::storage::catalog::{ColumnDef, PrimaryKey, TableDef};
use tandem::storage::value::{DataType, Key, Row, Value};
use tandem::txn::Isolation;

const WRITERS: i64 = 4;

fn config() -> EngineConfig {
    EngineConfig { checkpoint_wal_bytes: 256 << 10, spare_segments: 2, ..EngineConfig::default() }
}

fn create_tables(engine: &Engine) {
    let mut txn = engine.begin(Isolation::ReadCommitted);
    for name in ["a", "b", "counter"] {
        let id = txn.allocate_oid();
        let index_id = txn.allocate_oid();
        let col = |n: &str| ColumnDef { name: n.into(), ty: DataType::Int8, not_null: true, default: None };
        let def = TableDef {
            id,
            name: name.into(),
            columns: vec![col("k"), col("v")],
            primary_key: Some(PrimaryKey { name: format!("{name}_pkey"), index_id, columns: vec![0] }),
            indexes: vec![],
        };
        txn.create_table(def).unwrap();
    }
    let counter = txn.state().table("counter").unwrap().def.id;
    txn.insert(counter, row(0, 0)).unwrap();
    txn.commit().unwrap().wait().unwrap();
}

fn row(k: i64, v: i64) -> Row {
    vec![Value::Int(k), Value::Int(v)].into()
}

fn key(k: i64) -> Key {
    vec![Value::Int(k)].into()
}

/// The child: commits transactions that each insert k into `a` and `b` and bump `counter`, on several
/// threads, printing `ACK k` once each commit is acknowledged.
#[test]
fn crash_child_entry() {
    let Ok(dir) = std::env::var("TANDEM_CRASH_CHILD") else { return };
    let engine = Arc::new(Engine::open(Path::new(&dir), config()).expect("child recovery"));
    let start = {
        let state = engine.snapshot().state;
        state.table("a").and_then(|t| t.rows.last().map(|(k, _)| k.clone())).map_or(0, |k| match k[0] {
            Value::Int(i) => i + 1,
            _ => 0,
        })
    };
    let out = Arc::new(Mutex::new(std::io::stdout()));
    let threads: Vec<_> = (0..WRITERS)
        .map(|w| {
            let engine = engine.clone();
            let out = out.clone();
            std::thread::spawn(move || {
                let mut k = start + w;
                loop {
                    let mut txn = engine.begin(Isolation::ReadCommitted);
                    let ids: Vec<_> =
                        ["a", "b", "counter"].iter().map(|n| txn.state().table(n).unwrap().def.id).collect();
                    txn.insert(ids[0], row(k, k)).unwrap();
                    // A big row now and then, so records span segments.
                    let v = if k % 97 == 0 { k * 1000 } else { k };
                    txn.insert(ids[1], row(k, v)).unwrap();
                    let c = txn.lock_row(ids[2], &key(0)).unwrap().unwrap();
                    let Value::Int(n) = c[1] else { panic!("counter") };
                    txn.update(ids[2], &key(0), row(0, n + 1)).unwrap();
                    txn.commit().unwrap().wait().unwrap();
                    let mut o = out.lock().unwrap();
                    writeln!(o, "ACK {k}").unwrap();
                    o.flush().unwrap();
                    k += WRITERS;
                }
            })
        })
        .collect();
    for t in threads {
        t.join().unwrap();
    }
}

fn check(dir: &Path, acked: &BTreeSet<i64>) -> usize {
    let engine = Engine::open(dir, EngineConfig { background_checkpoints: false, ..config() }).unwrap();
    let state = engine.snapshot().state;
    let keys = |name: &str| -> BTreeSet<i64> {
        state
            .table(name)
            .unwrap()
            .rows
            .keys()
            .map(|k| match k[0] {
                Value::Int(i) => i,
                _ => panic!("key"),
            })
            .collect()
    };
    let a = keys("a");
    let b = keys("b");
    assert_eq!(a, b, "a transaction is half there");
    let counter = match state.table("counter").unwrap().rows.get(&key(0)).unwrap()[1] {
        Value::Int(n) => n as usize,
        _ => panic!("counter"),
    };
    assert_eq!(counter, a.len(), "counter disagrees with the rows");
    let missing: Vec<_> = acked.difference(&a).collect();
    assert!(missing.is_empty(), "acknowledged commits lost: {missing:?}");
    engine.halt();
    a.len()
}

#[test]
fn kill_9_loses_no_acknowledged_commit() {
    let tmp = common::TempDir::new("crash");
    let dir = tmp.path().join("data");
    Engine::init(&dir, &InitOptions { segment_size: 1 << 20 }).unwrap();
    {
        let engine = Engine::open(&dir, config()).unwrap();
        create_tables(&engine);
        engine.shutdown().unwrap();
    }
    let rounds: u64 = std::env::var("TANDEM_CRASH_ROUNDS").ok().and_then(|s| s.parse().ok()).unwrap_or(20);
    let mut acked = BTreeSet::new();
    let mut seed = (std::process::id() as u64).wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1;
    for round in 0..rounds {
        let mut child = Command::new(std::env::current_exe().unwrap())
            .args(["--exact", "crash_child_entry", "--nocapture", "--test-threads=1"])
            .env("TANDEM_CRASH_CHILD", &dir)
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        let stdout = child.stdout.take().unwrap();
        seed ^= seed << 13;
        seed ^= seed >> 7;
        seed ^= seed << 17;
        let run_for = Duration::from_millis(100 + seed % 400);
        let reader = std::thread::spawn(move || {
            let mut got = Vec::new();
            for line in BufReader::new(stdout).lines() {
                let Ok(line) = line else { break };
                if let Some(k) = line.strip_prefix("ACK ") {
                    got.push(k.trim().parse::<i64>().unwrap());
                }
            }
            got
        });
        let started = Instant::now();
        std::thread::sleep(run_for);
        child.kill().unwrap(); // SIGKILL
        child.wait().unwrap();
        let got = reader.join().unwrap();
        acked.extend(got.iter().copied());
        let rows = check(&dir, &acked);
        eprintln!(
            "round {round}: killed after {:?}, {} commits acknowledged this round, {rows} rows recovered",
            started.elapsed(),
            got.len()
        );
    }
    assert!(!acked.is_empty(), "the child never acknowledged a commit");
}
