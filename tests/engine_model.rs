//! Property test of the storage engine against a model, with crashes.
//!
//! Random transactions (inserts, updates, deletes over several tables, DDL, some rolled back, some
//! checkpoints between them) run against the engine and against a plain `BTreeMap` model. Then the engine
//! "crashes": it stops, a few more commits are appended without waiting for their acknowledgement, and
//! the WAL is cut at a random byte after the last acknowledged commit, or garbled from there on (a torn
//! tail: what a crash during a write leaves). After recovery the state must equal the model as of the
//! last commit that lies wholly before the cut — which includes every acknowledged commit.
//!
//! Damage in the middle of the WAL, followed by valid records, is not a torn tail but corruption; the
//! `wal_corruption` test covers that the server refuses to start then.

mod common;

use std::collections::BTreeMap;
use std::fs::OpenOptions;
use std::os::unix::fs::FileExt;
use std::sync::Arc;

use proptest::prelude::*;
use tandem::engine::{Engine, EngineConfig, InitOptions};
use tandem::storage::catalog::{ColumnDef, IndexDef, PrimaryKey, TableDef};
use tandem::storage::state::{AlterOp, DbState, TableData};
use tandem::storage::value::{DataType, Key, Row, Value};
use tandem::txn::{Change, Isolation, Transaction};
use tandem::wal::{segment, Lsn};

const SEGMENT: u64 = 1 << 20;
const TABLES: u8 = 3;

#[derive(Clone, Debug)]
enum MOp {
    Insert {
        t: u8,
        k: i64,
        v: i64,
    },
    Update {
        t: u8,
        k: i64,
        v: i64,
    },
    /// Adds to v without reading it (a deferred increment, applied at commit).
    Increment {
        t: u8,
        k: i64,
        d: i64,
    },
    Delete {
        t: u8,
        k: i64,
    },
    Create {
        t: u8,
    },
    Drop {
        t: u8,
    },
    Truncate {
        t: u8,
    },
    AddColumn {
        t: u8,
    },
    CreateIndex {
        t: u8,
    },
}

#[derive(Clone, Debug)]
struct Tx {
    ops: Vec<MOp>,
    commit: bool,
    checkpoint_after: bool,
}

#[derive(Clone, Debug)]
struct Case {
    txs: Vec<Tx>,
    /// Commits appended without waiting, just before the crash: (table, value).
    unacked: Vec<(u8, i64)>,
    /// Where to cut, as a fraction of the region after the last acknowledged commit.
    cut_at: f64,
    /// Garbage bytes written at the cut (0: a clean cut).
    garbage: usize,
}

#[derive(Clone, Debug, Default, PartialEq)]
struct MTable {
    extra_columns: usize,
    indexed: bool,
    rows: BTreeMap<i64, i64>,
}

type Model = BTreeMap<String, MTable>;

fn op() -> impl Strategy<Value = MOp> {
    let t = 0..TABLES;
    let k = 0i64..8;
    let v = -100i64..100;
    prop_oneof![
        6 => (t.clone(), k.clone(), v.clone()).prop_map(|(t, k, v)| MOp::Insert { t, k, v }),
        4 => (t.clone(), k.clone(), v.clone()).prop_map(|(t, k, v)| MOp::Update { t, k, v }),
        3 => (t.clone(), k.clone(), v).prop_map(|(t, k, d)| MOp::Increment { t, k, d }),
        2 => (t.clone(), k).prop_map(|(t, k)| MOp::Delete { t, k }),
        2 => t.clone().prop_map(|t| MOp::Create { t }),
        1 => t.clone().prop_map(|t| MOp::Drop { t }),
        1 => t.clone().prop_map(|t| MOp::Truncate { t }),
        1 => t.clone().prop_map(|t| MOp::AddColumn { t }),
        1 => t.prop_map(|t| MOp::CreateIndex { t }),
    ]
}

fn case() -> impl Strategy<Value = Case> {
    let tx = (prop::collection::vec(op(), 1..6), prop::bool::weighted(0.85), prop::bool::weighted(0.1))
        .prop_map(|(ops, commit, checkpoint_after)| Tx { ops, commit, checkpoint_after });
    (
        prop::collection::vec(tx, 1..12),
        prop::collection::vec((0..TABLES, 0i64..1000), 0..4),
        0.0f64..1.0,
        prop_oneof![2 => Just(0usize), 1 => 1usize..200],
    )
        .prop_map(|(txs, unacked, cut_at, garbage)| Case { txs, unacked, cut_at, garbage })
}

fn name(t: u8) -> String {
    format!("t{t}")
}

fn table_def(txn: &mut Transaction, t: u8) -> TableDef {
    let id = txn.allocate_oid();
    let index_id = txn.allocate_oid();
    let col = |n: &str, not_null| ColumnDef { name: n.into(), ty: DataType::Int8, not_null, default: None };
    TableDef {
        id,
        name: name(t),
        columns: vec![col("k", true), col("v", false)],
        primary_key: Some(PrimaryKey { name: format!("t{t}_pkey"), index_id, columns: vec![0] }),
        indexes: vec![],
    }
}

fn key(k: i64) -> Key {
    Key::One(Value::Int(k))
}

fn row(k: i64, v: i64, extra: usize) -> Row {
    let mut r = vec![Value::Int(k), Value::Int(v)];
    r.extend((0..extra).map(|_| Value::Int(7)));
    r.into()
}

/// Runs one model op in the engine transaction; returns false if the transaction must abort.
fn run_op(txn: &mut Transaction, model: &mut Model, op: &MOp) -> bool {
    txn.begin_statement().unwrap();
    let oid = |txn: &Transaction, t: u8| txn.state().table(&name(t)).map(|d| d.def.id);
    match op {
        MOp::Insert { t, k, v } => {
            let Some(m) = model.get_mut(&name(*t)) else { return true };
            let id = oid(txn, *t).expect("model and engine agree on tables");
            let res = txn.insert(id, row(*k, *v, m.extra_columns));
            if m.rows.contains_key(k) {
                assert_eq!(res.unwrap_err().code, tandem::SqlState::UNIQUE_VIOLATION);
                return false;
            }
            res.unwrap();
            m.rows.insert(*k, *v);
        }
        MOp::Update { t, k, v } => {
            let Some(m) = model.get_mut(&name(*t)) else { return true };
            let id = oid(txn, *t).unwrap();
            let newest = txn.lock_row(id, &key(*k)).unwrap();
            assert_eq!(newest.is_some(), m.rows.contains_key(k));
            if newest.is_some() {
                txn.update(id, &key(*k), row(*k, *v, m.extra_columns)).unwrap();
                m.rows.insert(*k, *v);
            }
        }
        MOp::Increment { t, k, d } => {
            let Some(m) = model.get_mut(&name(*t)) else { return true };
            let id = oid(txn, *t).unwrap();
            let d = *d;
            let change: Change = Arc::new(move |r: &Row| {
                let mut r = r.to_vec();
                let Value::Int(v) = r[1] else { panic!("v is {:?}", r[1]) };
                r[1] = Value::Int(v + d);
                Ok(r.into())
            });
            let found = txn.increment(id, &key(*k), change).unwrap();
            assert_eq!(found, m.rows.contains_key(k));
            if let Some(v) = m.rows.get_mut(k) {
                *v += d;
            }
        }
        MOp::Delete { t, k } => {
            let Some(m) = model.get_mut(&name(*t)) else { return true };
            let id = oid(txn, *t).unwrap();
            if txn.lock_row(id, &key(*k)).unwrap().is_some() {
                txn.delete(id, &key(*k)).unwrap();
                assert!(m.rows.remove(k).is_some());
            }
        }
        MOp::Create { t } => {
            if model.contains_key(&name(*t)) {
                let def = table_def(txn, *t);
                assert_eq!(txn.create_table(def).unwrap_err().code, tandem::SqlState::DUPLICATE_TABLE);
                return false;
            }
            let def = table_def(txn, *t);
            txn.create_table(def).unwrap();
            model.insert(name(*t), MTable::default());
        }
        MOp::Drop { t } => {
            if model.remove(&name(*t)).is_some() {
                let id = oid(txn, *t).unwrap();
                txn.drop_table(id).unwrap();
            }
        }
        MOp::Truncate { t } => {
            if let Some(m) = model.get_mut(&name(*t)) {
                let id = oid(txn, *t).unwrap();
                txn.truncate(id).unwrap();
                m.rows.clear();
            }
        }
        MOp::AddColumn { t } => {
            if let Some(m) = model.get_mut(&name(*t)) {
                let id = oid(txn, *t).unwrap();
                let column = ColumnDef {
                    name: format!("e{}", m.extra_columns),
                    ty: DataType::Int8,
                    not_null: false,
                    default: Some("7".into()),
                };
                txn.alter_table(id, AlterOp::AddColumn { column, fill: Value::Int(7) }).unwrap();
                m.extra_columns += 1;
            }
        }
        MOp::CreateIndex { t } => {
            if let Some(m) = model.get_mut(&name(*t)) {
                if !m.indexed {
                    let id = oid(txn, *t).unwrap();
                    let index_id = txn.allocate_oid();
                    let index = IndexDef {
                        id: index_id,
                        name: format!("t{t}_v_idx"),
                        columns: vec![1],
                        unique: false,
                        constraint: false,
                    };
                    txn.alter_table(id, AlterOp::CreateIndex(index)).unwrap();
                    m.indexed = true;
                }
            }
        }
    }
    true
}

/// Checks that the engine's state is the model, indexes included.
fn assert_matches(state: &DbState, model: &Model) {
    let names: Vec<String> = state.names.keys().map(|n| n.to_string()).collect();
    let expected: Vec<String> = model.keys().cloned().collect();
    assert_eq!(names, expected, "tables");
    for (n, m) in model {
        let t: &TableData = state.table(n).unwrap();
        assert_eq!(t.def.columns.len(), 2 + m.extra_columns, "columns of {n}");
        assert_eq!(t.def.indexes.len(), m.indexed as usize, "indexes of {n}");
        let rows: BTreeMap<i64, i64> = t
            .rows
            .iter()
            .map(|(k, r)| match (&k[0], &r[1]) {
                (Value::Int(k), Value::Int(v)) => (*k, *v),
                other => panic!("unexpected row {other:?}"),
            })
            .collect();
        assert_eq!(rows, m.rows, "rows of {n}");
        for index in &t.def.indexes {
            let entries: Vec<Key> = t.indexes[&index.id].keys().cloned().collect();
            let mut want: Vec<Key> = t.rows.iter().map(|(k, r)| TableData::index_entry(index, k, r)).collect();
            want.sort();
            assert_eq!(entries, want, "index {} of {n}", index.name);
        }
    }
}

/// Cuts the WAL at `at`: zeroes (or garbles, then zeroes) every byte from there on. Returns the position of
/// the first byte that changed (None: none did): a record that ends before it is intact, whatever `at` was,
/// since a garbage byte may equal the byte it replaces and a record may end in zeros.
fn damage_tail(wal_dir: &std::path::Path, at: Lsn, garbage: usize, seed: u64) -> Option<Lsn> {
    let mut rng = seed | 1;
    let mut next = move || {
        rng ^= rng << 13;
        rng ^= rng >> 7;
        rng ^= rng << 17;
        rng
    };
    let mut first_changed = None;
    for (_, segno, path) in segment::list(wal_dir, SEGMENT).unwrap() {
        let seg_start = segno * SEGMENT;
        if seg_start + SEGMENT <= at.0 {
            continue;
        }
        let from = at.0.saturating_sub(seg_start);
        let f = OpenOptions::new().read(true).write(true).open(&path).unwrap();
        let mut bytes = vec![0u8; (SEGMENT - from) as usize];
        if seg_start <= at.0 {
            for b in bytes.iter_mut().take(garbage) {
                *b = (next() % 255 + 1) as u8;
            }
        }
        let mut before = vec![0u8; bytes.len()];
        f.read_exact_at(&mut before, from).unwrap();
        if let Some(i) = before.iter().zip(&bytes).position(|(a, b)| a != b) {
            first_changed.get_or_insert(Lsn(seg_start + from + i as u64));
        }
        f.write_all_at(&bytes, from).unwrap();
    }
    first_changed
}

fn config() -> EngineConfig {
    EngineConfig { background_checkpoints: false, ..EngineConfig::default() }
}

fn run_case(case: &Case) {
    let dir = common::TempDir::new("model");
    let data = dir.path().join("data");
    Engine::init(&data, &InitOptions { segment_size: SEGMENT }).unwrap();
    let engine = Engine::open(&data, config()).unwrap();
    let mut model = Model::new();
    // The floor of the cut: past every acknowledged commit and every checkpoint record.
    let mut floor = engine.wal().insert_lsn();
    for tx in &case.txs {
        let mut txn = engine.begin(Isolation::ReadCommitted);
        let mut local = model.clone();
        let ok = tx.ops.iter().all(|op| run_op(&mut txn, &mut local, op));
        if ok && tx.commit {
            let ticket = txn.commit().unwrap();
            ticket.wait().unwrap();
            floor = floor.max(ticket.lsn);
            model = local;
            assert_matches(&engine.snapshot().state, &model);
        } else {
            txn.rollback();
        }
        if tx.checkpoint_after {
            engine.checkpoint().unwrap();
            floor = floor.max(engine.wal().insert_lsn());
        }
    }
    // Commits that reach the WAL but are not waited for.
    let mut unacked = Vec::new();
    for &(t, v) in &case.unacked {
        let Some(m) = model.get(&name(t)) else { continue };
        let mut txn = engine.begin(Isolation::ReadCommitted);
        let id = txn.state().table(&name(t)).unwrap().def.id;
        let k = 1000 + unacked.len() as i64;
        txn.insert(id, row(k, v, m.extra_columns)).unwrap();
        let ticket = txn.commit().unwrap();
        unacked.push((t, k, v, ticket.lsn));
    }
    let end = engine.wal().insert_lsn();
    engine.halt();
    drop(engine);

    let span = end.0 + 64 - floor.0;
    let cut = Lsn(floor.0 + (case.cut_at * span as f64) as u64);
    let changed = damage_tail(&data.join("pg_wal"), cut, case.garbage, case.cut_at.to_bits());
    for (t, k, v, end) in unacked {
        if changed.is_none_or(|c| end <= c) {
            model.get_mut(&name(t)).unwrap().rows.insert(k, v);
        }
    }

    let engine = Engine::open(&data, config()).unwrap_or_else(|e| panic!("recovery failed: {e}"));
    assert_matches(&engine.snapshot().state, &model);
    // The recovered server appends after the cut, and that survives the next restart.
    if let Some((n, m)) = model.iter_mut().next() {
        let mut txn = engine.begin(Isolation::ReadCommitted);
        let id = txn.state().table(n).unwrap().def.id;
        txn.insert(id, row(5000, 1, m.extra_columns)).unwrap();
        txn.commit().unwrap().wait().unwrap();
        m.rows.insert(5000, 1);
    }
    engine.halt();
    drop(engine);
    let engine = Engine::open(&data, config()).unwrap();
    assert_matches(&engine.snapshot().state, &model);
}

proptest! {
    #![proptest_config(ProptestConfig {
        cases: std::env::var("PROPTEST_CASES").ok().and_then(|s| s.parse().ok()).unwrap_or(2000),
        failure_persistence: None,
        ..ProptestConfig::default()
    })]

    #[test]
    fn recovery_matches_model(case in case()) {
        run_case(&case);
    }
}

/// The case CI found on 2026-11-28: the cut fell inside the last unacknowledged commit, but the damage
/// changed none of its bytes (the garbage byte equalled the original and the rest was zeros already), so
/// the commit was rightly recovered while the test expected it gone. The oracle now follows the first byte
/// the damage actually changed; this case runs it every time (its bytes differ run to run, by timestamp).
#[test]
fn a_commit_the_damage_left_intact_is_recovered() {
    for garbage in [0, 1] {
        run_case(&Case {
            txs: vec![Tx { ops: vec![MOp::Create { t: 1 }], commit: true, checkpoint_after: false }],
            unacked: vec![(1, 64), (1, 768)],
            cut_at: 0.6442563044036308,
            garbage,
        });
    }
}
