//! Concurrency: lost updates, write-write conflicts under REPEATABLE READ, deadlocks.

mod common;

use std::sync::{Arc, Barrier};
use std::time::{Duration, Instant};

use tandem::engine::{Engine, EngineConfig, InitOptions};
use tandem::storage::catalog::{ColumnDef, PrimaryKey, TableDef};
use tandem::storage::value::{DataType, Key, Row, Value};
use tandem::txn::Isolation;
use tandem::SqlState;

fn setup(tmp: &common::TempDir, keys: i64) -> (Arc<Engine>, u32) {
    let dir = tmp.path().join("data");
    Engine::init(&dir, &InitOptions::default()).unwrap();
    let engine = Engine::open(&dir, EngineConfig::default()).unwrap();
    let mut txn = engine.begin(Isolation::ReadCommitted);
    let id = txn.allocate_oid();
    let index_id = txn.allocate_oid();
    let col = |n: &str| ColumnDef { name: n.into(), ty: DataType::Int8, not_null: false, default: None };
    txn.create_table(TableDef {
        id,
        name: "t".into(),
        columns: vec![col("k"), col("x")],
        primary_key: Some(PrimaryKey { name: "t_pkey".into(), index_id, columns: vec![0] }),
        indexes: vec![],
    })
    .unwrap();
    for k in 0..keys {
        txn.insert(id, row(k, 0)).unwrap();
    }
    txn.commit().unwrap().wait().unwrap();
    (Arc::new(engine), id)
}

fn row(k: i64, x: i64) -> Row {
    vec![Value::Int(k), Value::Int(x)].into()
}

fn key(k: i64) -> Key {
    vec![Value::Int(k)].into()
}

fn x_of(r: &Row) -> i64 {
    match r[1] {
        Value::Int(x) => x,
        _ => panic!(),
    }
}

#[test]
fn read_committed_increments_lose_no_update() {
    let tmp = common::TempDir::new("incr");
    let (engine, id) = setup(&tmp, 1);
    const THREADS: i64 = 16;
    const EACH: i64 = 200;
    let handles: Vec<_> = (0..THREADS)
        .map(|_| {
            let engine = engine.clone();
            std::thread::spawn(move || {
                for _ in 0..EACH {
                    let mut txn = engine.begin(Isolation::ReadCommitted);
                    txn.begin_statement().unwrap();
                    let current = txn.lock_row(id, &key(0)).unwrap().unwrap();
                    txn.update(id, &key(0), row(0, x_of(&current) + 1)).unwrap();
                    txn.commit().unwrap().wait().unwrap();
                }
            })
        })
        .collect();
    for h in handles {
        h.join().unwrap();
    }
    let snap = engine.snapshot();
    assert_eq!(x_of(snap.state.table("t").unwrap().rows.get(&key(0)).unwrap()), THREADS * EACH);
}

#[test]
fn repeatable_read_write_conflict_is_40001() {
    let tmp = common::TempDir::new("rr");
    let (engine, id) = setup(&tmp, 2);
    let mut rr = engine.begin(Isolation::RepeatableRead);
    assert_eq!(x_of(rr.state().table("t").unwrap().rows.get(&key(0)).unwrap()), 0);
    let mut other = engine.begin(Isolation::ReadCommitted);
    other.lock_row(id, &key(0)).unwrap();
    other.update(id, &key(0), row(0, 5)).unwrap();
    other.commit().unwrap().wait().unwrap();
    // The RR snapshot still reads the old value, and writing the row conflicts.
    assert_eq!(x_of(rr.state().table("t").unwrap().rows.get(&key(0)).unwrap()), 0);
    let err = rr.lock_row(id, &key(0)).unwrap_err();
    assert_eq!(err.code, SqlState::SERIALIZATION_FAILURE);
    rr.rollback();
    // A row nobody changed can still be written.
    let mut rr2 = engine.begin(Isolation::RepeatableRead);
    rr2.lock_row(id, &key(1)).unwrap();
    rr2.update(id, &key(1), row(1, 9)).unwrap();
    rr2.commit().unwrap().wait().unwrap();
    // Under READ COMMITTED the same pattern re-reads the newest version instead.
    let mut rc = engine.begin(Isolation::ReadCommitted);
    let mut other = engine.begin(Isolation::ReadCommitted);
    other.lock_row(id, &key(0)).unwrap();
    other.update(id, &key(0), row(0, 6)).unwrap();
    other.commit().unwrap().wait().unwrap();
    assert_eq!(x_of(&rc.lock_row(id, &key(0)).unwrap().unwrap()), 6);
    rc.rollback();
}

#[test]
fn deadlock_gives_40p01_within_a_second() {
    let tmp = common::TempDir::new("deadlock");
    let (engine, id) = setup(&tmp, 2);
    let barrier = Arc::new(Barrier::new(2));
    let run = |first: i64, second: i64| {
        let engine = engine.clone();
        let barrier = barrier.clone();
        std::thread::spawn(move || {
            let mut txn = engine.begin(Isolation::ReadCommitted);
            txn.lock_row(id, &key(first)).unwrap();
            barrier.wait();
            let started = Instant::now();
            let r = txn.lock_row(id, &key(second)).map(|_| ());
            let waited = started.elapsed();
            match &r {
                Ok(()) => txn.commit().unwrap().wait().unwrap(),
                Err(_) => txn.rollback(),
            }
            (r, waited)
        })
    };
    let a = run(0, 1);
    let b = run(1, 0);
    let (ra, wa) = a.join().unwrap();
    let (rb, wb) = b.join().unwrap();
    let errors: Vec<_> = [&ra, &rb].iter().filter_map(|r| r.as_ref().err().cloned()).collect();
    assert_eq!(errors.len(), 1, "exactly one side is chosen: {ra:?} {rb:?}");
    assert_eq!(errors[0].code, SqlState::DEADLOCK_DETECTED);
    let victim_wait = if ra.is_err() { wa } else { wb };
    assert!(victim_wait < Duration::from_secs(1), "detected after {victim_wait:?}");
}
