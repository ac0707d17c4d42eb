//! Storage-engine benchmarks (`cargo bench --bench engine`; `TANDEM_BENCH_QUICK=1` for a small run).
//!
//! 1. Commit rate with 1, 8 and 64 concurrent committers, fsync on: shows group commit (one fdatasync
//!    covering many commits) at work.
//! 2. Replay rate: the WAL of many commits (1 GiB in the full run) replayed by recovery, in row changes
//!    per second.
//! 3. Snapshot write and load times for 10 million pgbench_accounts-like rows, and memory per row.
//!
//! Everything runs in a temporary directory on the machine's normal disk and is removed afterwards.

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use tandem::engine::{Engine, EngineConfig, InitOptions};
use tandem::snapshot;
use tandem::storage::catalog::{ColumnDef, PrimaryKey, TableDef};
use tandem::storage::state::{DbState, Op};
use tandem::storage::value::{DataType, Key, Row, Value};
use tandem::txn::Isolation;
use tandem::wal::Lsn;

struct Tmp(PathBuf);

impl Drop for Tmp {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

fn tmp(tag: &str) -> Tmp {
    let p = std::env::temp_dir().join(format!("tandem-bench-{tag}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&p);
    Tmp(p)
}

fn accounts_def(id: u32, index_id: u32) -> TableDef {
    let col = |n: &str, ty| ColumnDef { name: n.into(), ty, not_null: false, default: None };
    TableDef {
        id,
        name: "accounts".into(),
        columns: vec![
            col("aid", DataType::Int4),
            col("bid", DataType::Int4),
            col("abalance", DataType::Int4),
            col("filler", DataType::Char(84)),
        ],
        primary_key: Some(PrimaryKey { name: "accounts_pkey".into(), index_id, columns: vec![0] }),
        indexes: vec![],
    }
}

fn account(aid: i64, balance: i64, filler: &Value) -> Row {
    vec![Value::Int(aid), Value::Int(aid / 100_000 + 1), Value::Int(balance), filler.clone()].into()
}

fn key(aid: i64) -> Key {
    vec![Value::Int(aid)].into()
}

fn open(dir: &Path, background: bool) -> Engine {
    Engine::open(dir, EngineConfig { background_checkpoints: background, ..EngineConfig::default() }).unwrap()
}

fn setup(dir: &Path, rows: i64) -> (Engine, u32) {
    Engine::init(dir, &InitOptions::default()).unwrap();
    let engine = open(dir, true);
    let mut txn = engine.begin(Isolation::ReadCommitted);
    let id = txn.allocate_oid();
    let index_id = txn.allocate_oid();
    txn.create_table(accounts_def(id, index_id)).unwrap();
    let filler = Value::text(&" ".repeat(84));
    for aid in 0..rows {
        txn.insert(id, account(aid, 0, &filler)).unwrap();
    }
    txn.commit().unwrap().wait().unwrap();
    (engine, id)
}

fn commit_rate(committers: usize, secs: f64) -> (f64, f64) {
    let t = tmp(&format!("commits{committers}"));
    let (engine, id) = setup(&t.0, committers as i64);
    let engine = Arc::new(engine);
    let stop = Arc::new(AtomicBool::new(false));
    let count = Arc::new(AtomicU64::new(0));
    let threads: Vec<_> = (0..committers)
        .map(|i| {
            let (engine, stop, count) = (engine.clone(), stop.clone(), count.clone());
            std::thread::spawn(move || {
                let filler = Value::text(&" ".repeat(84));
                let mut n = 0;
                while !stop.load(Ordering::Relaxed) {
                    let mut txn = engine.begin(Isolation::ReadCommitted);
                    txn.lock_row(id, &key(i as i64)).unwrap();
                    n += 1;
                    txn.update(id, &key(i as i64), account(i as i64, n, &filler)).unwrap();
                    txn.commit().unwrap().wait().unwrap();
                    count.fetch_add(1, Ordering::Relaxed);
                }
            })
        })
        .collect();
    std::thread::sleep(Duration::from_millis(300));
    let start_count = count.load(Ordering::Relaxed);
    let start_flushes = engine.wal().flush_count();
    let start = Instant::now();
    std::thread::sleep(Duration::from_secs_f64(secs));
    let done = count.load(Ordering::Relaxed) - start_count;
    let flushes = engine.wal().flush_count() - start_flushes;
    let rate = done as f64 / start.elapsed().as_secs_f64();
    let per_flush = done as f64 / flushes.max(1) as f64;
    stop.store(true, Ordering::Relaxed);
    for t in threads {
        t.join().unwrap();
    }
    (rate, per_flush)
}

fn replay_rate(wal_bytes: u64) -> (u64, u64, f64) {
    let t = tmp("replay");
    let accounts = 1_000_000i64;
    let (engine, id) = setup(&t.0, 0);
    engine.checkpoint().unwrap();
    let engine = {
        engine.shutdown().unwrap();
        drop(engine);
        open(&t.0, false)
    };
    let start = engine.wal().insert_lsn();
    let filler = Value::text(&" ".repeat(84));
    let mut changes = 0u64;
    let mut aid = 0i64;
    while engine.wal().insert_lsn().0 - start.0 < wal_bytes {
        let mut txn = engine.begin(Isolation::ReadCommitted);
        for _ in 0..1000 {
            let k = aid % accounts;
            if aid < accounts {
                txn.insert(id, account(k, aid, &filler)).unwrap();
            } else {
                txn.lock_row(id, &key(k)).unwrap();
                txn.update(id, &key(k), account(k, aid, &filler)).unwrap();
            }
            aid += 1;
            changes += 1;
        }
        txn.commit().unwrap().wait().unwrap();
    }
    let bytes = engine.wal().insert_lsn().0 - start.0;
    engine.halt();
    drop(engine);
    let started = Instant::now();
    let engine = open(&t.0, false);
    let secs = started.elapsed().as_secs_f64();
    assert_eq!(engine.snapshot().state.table("accounts").unwrap().rows.len() as i64, accounts.min(aid));
    (bytes, changes, secs)
}

fn rss_bytes() -> u64 {
    let statm = std::fs::read_to_string("/proc/self/statm").unwrap_or_default();
    let pages: u64 = statm.split_whitespace().nth(1).and_then(|s| s.parse().ok()).unwrap_or(0);
    pages * 4096
}

fn snapshot_times(rows: i64) -> (f64, f64, u64, f64) {
    let t = tmp("snapshot");
    std::fs::create_dir_all(t.0.join("snapshots")).unwrap();
    let before = rss_bytes();
    let mut state = DbState::new();
    let def = Arc::new(accounts_def(16384, 16385));
    state.apply(&Op::CreateTable(def)).unwrap();
    let filler = Value::text(&" ".repeat(84));
    for aid in 0..rows {
        let row: Row = vec![Value::Int(aid), Value::Int(aid / 100_000 + 1), Value::Int(0), filler.clone()].into();
        state.apply(&Op::Put { table: 16384, key: key(aid), row }).unwrap();
    }
    let per_row = (rss_bytes().saturating_sub(before)) as f64 / rows as f64;
    let started = Instant::now();
    let size = snapshot::write(&t.0, 1, Lsn(1), &state).unwrap();
    let write_secs = started.elapsed().as_secs_f64();
    drop(state);
    // Loaded by a fresh process, as a starting server or a new standby loads it: in this one, the memory
    // the state just freed would be reused instead of faulted in.
    let child = std::process::Command::new(std::env::current_exe().unwrap())
        .env("TANDEM_BENCH_LOAD", &t.0)
        .env("TANDEM_BENCH_ROWS", rows.to_string())
        .output()
        .unwrap();
    assert!(child.status.success(), "loading child: {}", String::from_utf8_lossy(&child.stderr));
    let load_secs = String::from_utf8_lossy(&child.stdout).trim().parse().unwrap();
    (write_secs, load_secs, size, per_row)
}

/// The child's side of [`snapshot_times`]: loads the snapshot, prints the seconds it took.
fn load_snapshot(dir: &str, rows: i64) {
    let started = Instant::now();
    let loaded = snapshot::read(std::path::Path::new(dir), 1, Lsn(1)).unwrap();
    let load_secs = started.elapsed().as_secs_f64();
    assert_eq!(loaded.table("accounts").unwrap().rows.len() as i64, rows);
    println!("{load_secs}");
}

#[global_allocator]
static ALLOCATOR: tandem::memory::Allocator = tandem::memory::ALLOCATOR;

fn main() {
    tandem::memory::set_up();
    // `cargo bench` passes --bench; `cargo test --benches` passes nothing we need.
    let quick = std::env::var("TANDEM_BENCH_QUICK").is_ok();
    // TANDEM_BENCH_ONLY=commits|replay|snapshot runs one part.
    let only = std::env::var("TANDEM_BENCH_ONLY").ok();
    let run = |part: &str| only.as_deref().is_none_or(|o| o == part);
    if let (Ok(dir), Ok(rows)) = (std::env::var("TANDEM_BENCH_LOAD"), std::env::var("TANDEM_BENCH_ROWS")) {
        return load_snapshot(&dir, rows.parse().unwrap());
    }
    // The loads run in a child, as a starting server: this process gives back what it frees, as a server
    // that stopped would, rather than keeping it from the child.
    tandem::memory::set_purge_delay(0);
    let secs = if quick { 1.0 } else { 5.0 };
    if run("commits") {
        commits(secs);
    }
    if run("replay") {
        replay(quick);
    }
    if run("snapshot") {
        snapshots(quick);
    }
}

fn commits(secs: f64) {
    println!("## Commit rate (fsync on)\n");
    println!("fdatasync of a 100-byte write: {:.3} ms\n", fdatasync_ms());
    println!("| committers | commits/s | vs 1 committer | commits per fdatasync |\n|---:|---:|---:|---:|");
    // TANDEM_BENCH_COMMITTERS=N measures N committers alone (for profiling one case).
    if let Some(n) = std::env::var("TANDEM_BENCH_COMMITTERS").ok().and_then(|n| n.parse().ok()) {
        let (rate, per_flush) = commit_rate(n, secs);
        println!("| {n} | {rate:.0} | | {per_flush:.1} |");
        return;
    }
    let one = commit_rate(1, secs);
    for n in [1usize, 8, 64] {
        let (rate, per_flush) = if n == 1 { one } else { commit_rate(n, secs) };
        println!("| {n} | {rate:.0} | {:.1}x | {per_flush:.1} |", rate / one.0);
    }
}

/// The disk's fdatasync latency, measured as the WAL writer uses it (overwrite, then fdatasync).
fn fdatasync_ms() -> f64 {
    use std::os::unix::fs::FileExt;
    let t = tmp("fsync");
    std::fs::create_dir_all(&t.0).unwrap();
    let f = std::fs::File::create(t.0.join("probe")).unwrap();
    f.write_all_at(&vec![0u8; 1 << 20], 0).unwrap();
    f.sync_all().unwrap();
    let n = 200;
    let start = Instant::now();
    for i in 0..n {
        f.write_all_at(&[b'x'; 100], i * 100).unwrap();
        f.sync_data().unwrap();
    }
    start.elapsed().as_secs_f64() * 1000.0 / n as f64
}

fn replay(quick: bool) {
    let wal = if quick { 64 << 20 } else { 1 << 30 };
    let (bytes, changes, replay_secs) = replay_rate(wal);
    println!("\n## Replay\n");
    println!(
        "{:.0} MiB of WAL, {changes} row changes, replayed in {replay_secs:.2} s: {:.0} row changes/s\n",
        bytes as f64 / (1 << 20) as f64,
        changes as f64 / replay_secs
    );
}

fn snapshots(quick: bool) {
    let rows = if quick { 1_000_000 } else { 10_000_000 };
    let (write_secs, load_secs, size, per_row) = snapshot_times(rows);
    println!("## Snapshot of {rows} pgbench_accounts rows\n");
    println!(
        "write {write_secs:.2} s, load {load_secs:.2} s, file {:.0} MiB, memory {per_row:.0} bytes/row",
        size as f64 / (1 << 20) as f64
    );
}
