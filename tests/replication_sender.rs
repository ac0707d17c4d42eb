//! The WAL sender against a real client: pg_receivewal 15 streams from a tandem primary, and every
//! segment it completes is byte-identical to the primary's. Also: starting beyond the end of the WAL,
//! and garbage inside the CopyBoth stream.

mod common;

use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::path::Path;
use std::process::{Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use tandem::engine::{Engine, EngineConfig, InitOptions};
use tandem::replication::protocol::{read_message, Msg};
use tandem::replication::walsender::{self, ReplicationContext, SenderConfig};
use tandem::settings::ServerSettings;
use tandem::storage::catalog::{ColumnDef, PrimaryKey, TableDef};
use tandem::storage::value::{DataType, Value};
use tandem::txn::Isolation;

const SEGMENT: u64 = 1 << 20;

/// A primary engine with a WAL sender on an ephemeral loopback port.
fn primary(tmp: &common::TempDir) -> (Arc<Engine>, u16) {
    let dir = tmp.path().join("primary");
    Engine::init(&dir, &InitOptions { segment_size: SEGMENT }).unwrap();
    let engine = Arc::new(Engine::open(&dir, EngineConfig::default()).unwrap());
    let ctx =
        ReplicationContext::new(engine.clone(), SenderConfig::default(), Arc::new(ServerSettings::load(&dir).unwrap()))
            .unwrap();
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    std::thread::spawn(move || {
        for (pid, stream) in listener.incoming().enumerate() {
            let Ok(mut stream) = stream else { continue };
            let ctx = ctx.clone();
            std::thread::spawn(move || {
                if let Some(params) = common::startup(&mut stream) {
                    let _ =
                        walsender::serve(tandem::server::stream::Stream::Tcp(stream), &params, 1000 + pid as i32, ctx);
                }
            });
        }
    });
    (engine, port)
}

fn write_wal(engine: &Engine, rows: i64) {
    let mut txn = engine.begin(Isolation::ReadCommitted);
    let id = txn.allocate_oid();
    let index_id = txn.allocate_oid();
    let col = |n: &str, ty| ColumnDef { name: n.into(), ty, not_null: false, default: None };
    txn.create_table(TableDef {
        id,
        name: format!("t{id}"),
        columns: vec![col("k", DataType::Int8), col("v", DataType::Text)],
        primary_key: Some(PrimaryKey { name: format!("t{id}_pkey"), index_id, columns: vec![0] }),
        indexes: vec![],
    })
    .unwrap();
    txn.commit().unwrap().wait().unwrap();
    for k in 0..rows {
        let mut txn = engine.begin(Isolation::ReadCommitted);
        txn.insert(id, vec![Value::Int(k), Value::text(&format!("{k:0>1000}"))].into()).unwrap();
        txn.commit().unwrap().wait().unwrap();
    }
}

fn complete_segments(dir: &Path) -> Vec<String> {
    let mut names: Vec<String> = std::fs::read_dir(dir)
        .unwrap()
        .filter_map(|e| e.ok()?.file_name().into_string().ok())
        .filter(|n| n.len() == 24)
        .collect();
    names.sort();
    names
}

#[test]
fn pg_receivewal_segments_are_byte_identical() {
    let tmp = common::TempDir::new("receivewal");
    let (engine, port) = primary(&tmp);
    let target = tmp.path().join("received");
    std::fs::create_dir_all(&target).unwrap();
    let mut child = Command::new("pg_receivewal")
        .args(["-h", "127.0.0.1", "-p", &port.to_string(), "-D"])
        .arg(&target)
        .args(["-n", "--no-password", "-s", "1"])
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .expect("pg_receivewal (PostgreSQL 15 client programs) must be installed");
    write_wal(&engine, 3500);
    let deadline = Instant::now() + Duration::from_secs(60);
    while complete_segments(&target).len() < 3 {
        if Instant::now() > deadline || child.try_wait().unwrap().is_some() {
            let _ = child.kill();
            let mut err = String::new();
            child.stderr.take().unwrap().read_to_string(&mut err).unwrap();
            panic!("pg_receivewal did not complete 3 segments: {:?}\n{err}", complete_segments(&target));
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    let _ = child.kill();
    let _ = child.wait();
    let primary_wal = engine.dir().join("pg_wal");
    for name in complete_segments(&target) {
        let ours = std::fs::read(primary_wal.join(&name)).unwrap();
        let theirs = std::fs::read(target.join(&name)).unwrap();
        assert_eq!(ours.len(), theirs.len(), "{name} size");
        assert!(ours == theirs, "segment {name} differs");
    }
}

fn connect(port: u16) -> TcpStream {
    let mut s = TcpStream::connect(("127.0.0.1", port)).unwrap();
    let mut body = Vec::new();
    body.extend_from_slice(&196608u32.to_be_bytes());
    for (k, v) in [("user", "test"), ("database", "replication"), ("replication", "true")] {
        body.extend_from_slice(k.as_bytes());
        body.push(0);
        body.extend_from_slice(v.as_bytes());
        body.push(0);
    }
    body.push(0);
    s.write_all(&((body.len() + 4) as u32).to_be_bytes()).unwrap();
    s.write_all(&body).unwrap();
    // Up to ReadyForQuery.
    while let Some((kind, _)) = read_message(&mut s, 1 << 20).unwrap() {
        if kind == b'Z' {
            break;
        }
    }
    s
}

fn query(s: &mut TcpStream, q: &str) -> Vec<(u8, Vec<u8>)> {
    s.write_all(&Msg::new(b'Q').cstr(q).finish()).unwrap();
    let mut out = Vec::new();
    while let Some((kind, body)) = read_message(s, 1 << 20).unwrap() {
        let end = kind == b'Z' || kind == b'W';
        out.push((kind, body));
        if end {
            break;
        }
    }
    out
}

#[test]
fn start_beyond_the_end_is_refused_and_garbage_ends_only_that_stream() {
    let tmp = common::TempDir::new("badstream");
    let (engine, port) = primary(&tmp);
    let mut s = connect(port);
    let reply = query(&mut s, "START_REPLICATION 7/0 TIMELINE 1");
    let err = reply.iter().find(|(k, _)| *k == b'E').expect("an error");
    assert!(String::from_utf8_lossy(&err.1).contains("ahead of the WAL flush position"));
    // The connection is still usable.
    let reply = query(&mut s, "IDENTIFY_SYSTEM");
    assert!(reply.iter().any(|(k, _)| *k == b'D'));
    let start = engine.wal().flushed().segment_start(SEGMENT);
    let reply = query(&mut s, &format!("START_REPLICATION {start} TIMELINE 1"));
    assert_eq!(reply.last().unwrap().0, b'W');
    // Garbage inside CopyBoth: the sender ends this connection with an error.
    s.write_all(&Msg::new(b'd').bytes(b"zgarbage").finish()).unwrap();
    let deadline = Instant::now() + Duration::from_secs(10);
    let mut saw_error = false;
    s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    while Instant::now() < deadline {
        match read_message(&mut s, 1 << 20) {
            Ok(Some((b'E', body))) => {
                assert!(String::from_utf8_lossy(&body).contains("unrecognized streaming header"));
                saw_error = true;
            }
            Ok(Some(_)) => {}
            Ok(None) | Err(_) => break,
        }
    }
    assert!(saw_error, "no error for garbage");
    // Other connections are unaffected.
    let mut other = connect(port);
    assert!(query(&mut other, "IDENTIFY_SYSTEM").iter().any(|(k, _)| *k == b'D'));
}
