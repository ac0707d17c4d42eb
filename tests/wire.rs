//! Bad input on the wire: garbage bytes and truncated messages end only their own connection, an
//! oversized query gets 54000, invalid UTF-8 gets 22021, and other sessions carry on throughout.

mod common;

use std::io::{Read, Write};
use std::net::{Shutdown, TcpStream};
use std::time::Duration;

use common::TestServer;

fn connect(port: u16) -> TcpStream {
    let s = TcpStream::connect(("127.0.0.1", port)).expect("connect");
    s.set_read_timeout(Some(Duration::from_secs(30))).expect("timeout");
    s
}

/// Reads one backend message: (type, body). None at end of stream.
fn read_msg(s: &mut TcpStream) -> Option<(u8, Vec<u8>)> {
    let mut head = [0u8; 5];
    s.read_exact(&mut head).ok()?;
    let len = u32::from_be_bytes([head[1], head[2], head[3], head[4]]) as usize;
    let mut body = vec![0u8; len.checked_sub(4)?];
    s.read_exact(&mut body).ok()?;
    Some((head[0], body))
}

/// Logs in with a StartupMessage and reads up to ReadyForQuery.
fn login(port: u16) -> TcpStream {
    let mut s = connect(port);
    let mut body = Vec::new();
    body.extend_from_slice(&196608u32.to_be_bytes());
    for kv in [&b"user"[..], b"postgres", b"database", b"postgres"] {
        body.extend_from_slice(kv);
        body.push(0);
    }
    body.push(0);
    let mut msg = ((body.len() + 4) as u32).to_be_bytes().to_vec();
    msg.extend_from_slice(&body);
    s.write_all(&msg).expect("startup");
    loop {
        let (t, _) = read_msg(&mut s).expect("login reply");
        if t == b'Z' {
            return s;
        }
    }
}

fn query_frame(sql: &[u8]) -> Vec<u8> {
    let mut m = vec![b'Q'];
    m.extend_from_slice(&((sql.len() + 5) as u32).to_be_bytes());
    m.extend_from_slice(sql);
    m.push(0);
    m
}

/// Sends a query and returns the SQLSTATE of its error (or "00000"), reading through ReadyForQuery.
fn query_state(s: &mut TcpStream, frame: &[u8]) -> String {
    s.write_all(frame).expect("send query");
    let mut state = "00000".to_string();
    loop {
        let (t, body) = read_msg(s).expect("reply");
        if t == b'E' {
            for field in body.split(|b| *b == 0) {
                if field.first() == Some(&b'C') {
                    state = String::from_utf8_lossy(&field[1..]).into_owned();
                }
            }
        }
        if t == b'Z' {
            return state;
        }
    }
}

/// Whether the server closed the connection (EOF, possibly after an ErrorResponse).
fn closed(s: &mut TcpStream) -> bool {
    loop {
        match read_msg(s) {
            None => return true,
            Some((b'E', _)) => continue,
            Some(_) => return false,
        }
    }
}

#[test]
fn bad_input_ends_only_its_connection() {
    let server = TestServer::start();
    let mut healthy = login(server.port);
    assert_eq!(query_state(&mut healthy, &query_frame(b"CREATE TABLE t (id int PRIMARY KEY)")), "00000");

    // Garbage instead of a startup packet.
    let mut g = connect(server.port);
    g.write_all(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n").expect("garbage");
    assert!(closed(&mut g));

    // Garbage after login: an unknown message type.
    let mut g = login(server.port);
    g.write_all(b"\xff\x00\x00\x00\x08garbage!").expect("garbage");
    assert!(closed(&mut g));

    // A truncated message: the length promises more than arrives before the client hangs up its side.
    let mut t = login(server.port);
    t.write_all(b"Q\x00\x00\x01\x00SELECT").expect("partial");
    t.shutdown(Shutdown::Write).expect("shutdown");
    assert!(closed(&mut t));

    // A nonsensical length.
    let mut t = login(server.port);
    t.write_all(b"Q\x00\x00\x00\x02").expect("bad length");
    assert!(closed(&mut t));

    // Invalid UTF-8 in a query: 22021, and the session goes on.
    let mut u = login(server.port);
    assert_eq!(query_state(&mut u, &query_frame(b"SELECT '\xff\xfe'")), "22021");
    assert_eq!(query_state(&mut u, &query_frame(b"SELECT 1")), "00000");

    // A query over 100 MB: 54000, and the session goes on.
    let mut big = login(server.port);
    let mut sql = b"SELECT '".to_vec();
    sql.resize(100 * 1024 * 1024 + 16, b'x');
    sql.extend_from_slice(b"'");
    assert_eq!(query_state(&mut big, &query_frame(&sql)), "54000");
    assert_eq!(query_state(&mut big, &query_frame(b"SELECT 1")), "00000");

    // The first session never noticed.
    assert_eq!(query_state(&mut healthy, &query_frame(b"INSERT INTO t VALUES (1)")), "00000");
    assert_eq!(query_state(&mut healthy, &query_frame(b"INSERT INTO t VALUES (1)")), "23505");
    assert_eq!(query_state(&mut healthy, &query_frame(b"SELECT count(*) FROM t")), "00000");
}
