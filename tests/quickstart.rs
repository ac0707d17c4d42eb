//! The README's main job as a new user runs it: `tandem quickstart` in an empty folder brings up a primary on
//! 127.0.0.1:5433 and a synchronous standby on 5434, psql writes on 5433 are readable on 5434, Ctrl-C
//! (SIGINT) stops both cleanly, and a second run resumes the same pair with its data.
//!
//! quickstart's ports are fixed by contract, so this test needs 5433 and 5434 free; it says so if not.

mod common;

use std::io::{BufRead, BufReader};
use std::net::TcpListener;
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::time::Duration;

use common::{psql_output, tandem_bin, TempDir};

/// Starts quickstart in `dir` and waits for its "Press Ctrl-C" line; returns the child and its output so far.
fn run_quickstart(dir: &std::path::Path, extra: &[&str]) -> (Child, String) {
    let mut child = Command::new(tandem_bin())
        .args(["quickstart", "--dir"])
        .arg(dir.join("tandem-data"))
        .args(extra)
        .current_dir(dir)
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .expect("run tandem quickstart");
    let stdout = child.stdout.take().expect("stdout");
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        // Keep draining after the test stops listening, so quickstart never writes into a closed pipe.
        for line in BufReader::new(stdout).lines().map_while(Result::ok) {
            let _ = tx.send(line);
        }
    });
    let mut out = String::new();
    loop {
        match rx.recv_timeout(Duration::from_secs(90)) {
            Ok(line) => {
                out.push_str(&line);
                out.push('\n');
                if line.contains("Press Ctrl-C") {
                    return (child, out);
                }
            }
            Err(_) => {
                let _ = child.kill();
                let _ = child.wait();
                panic!("quickstart did not come up:\n{out}");
            }
        }
    }
}

fn sql(port: u16, q: &str) -> String {
    let out = psql_output(port, &["-At", "-v", "ON_ERROR_STOP=1", "-c", q]);
    assert!(out.status.success(), "psql on {port}: {}", String::from_utf8_lossy(&out.stderr));
    String::from_utf8_lossy(&out.stdout).trim().to_string()
}

fn interrupt(mut child: Child) {
    // SAFETY: signals the quickstart process this test started.
    unsafe {
        libc::kill(child.id() as i32, libc::SIGINT);
    }
    let status = child.wait().expect("wait for quickstart");
    assert!(status.success(), "quickstart exited with {status}");
}

/// Stops whatever quickstart left running in a data folder if the test fails half-way.
struct Cleanup(std::path::PathBuf);

impl Drop for Cleanup {
    fn drop(&mut self) {
        for node in ["primary", "standby"] {
            let dir = self.0.join(node);
            if common::server_running(&dir) {
                let _ = Command::new(tandem_bin()).args(["stop", "--mode", "immediate", "-D"]).arg(&dir).output();
            }
        }
    }
}

#[test]
fn quickstart_runs_a_synchronous_pair_and_resumes_it() {
    for port in [5433, 5434] {
        if TcpListener::bind(("127.0.0.1", port)).is_err() {
            panic!("port {port} is in use: quickstart's ports are 5433 and 5434; free them to run this test");
        }
    }
    let tmp = TempDir::new("quickstart");
    let data = tmp.path().join("tandem-data");
    let _cleanup = Cleanup(data.clone());
    let (child, out) = run_quickstart(tmp.path(), &[]);
    assert!(out.contains("psql -h 127.0.0.1 -p 5433"), "{out}");
    assert!(out.contains("sync"), "status should show the synchronous standby:\n{out}");
    sql(5433, "create table notes (id int primary key, body text)");
    sql(5433, "insert into notes values (1, 'written on the primary')");
    // Synchronous commit (remote flush) plus replay: the row shows up on the standby at once or very soon.
    let mut seen = String::new();
    for _ in 0..100 {
        seen = sql(5434, "select body from notes where id = 1");
        if !seen.is_empty() {
            break;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    assert_eq!(seen, "written on the primary");
    assert_eq!(sql(5434, "select pg_is_in_recovery()"), "t");
    assert_eq!(sql(5433, "select sync_state from pg_stat_replication"), "sync");
    interrupt(child);
    assert!(
        !common::server_running(&data.join("primary")) && !common::server_running(&data.join("standby")),
        "a server still runs after Ctrl-C"
    );

    // Run again: the same pair, with its data.
    let (child, out) = run_quickstart(tmp.path(), &[]);
    assert!(!out.contains("Created a new primary"), "{out}");
    assert_eq!(sql(5433, "select count(*) from notes"), "1");
    sql(5433, "insert into notes values (2, 'second run')");
    assert_eq!(sql(5433, "select sync_state from pg_stat_replication"), "sync");
    interrupt(child);
    assert!(!common::server_running(&data.join("primary")) && !common::server_running(&data.join("standby")));

    // The pair keeps its ports: another --port is refused, saying which one it has.
    let out = Command::new(tandem_bin()).args(["quickstart", "--port", "6001", "--dir"]).arg(&data).output().unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success() && err.contains("was created on port 5433, not 6001"), "{err}");
    assert!(!common::server_running(&data.join("primary")));
}

#[test]
fn quickstart_takes_another_port_for_a_new_pair() {
    // Two free ports in a row, for the primary and its standby.
    let port = (0..50)
        .map(|_| common::free_port())
        .find(|p| *p < u16::MAX && TcpListener::bind(("127.0.0.1", p + 1)).is_ok())
        .expect("two free ports in a row");
    let tmp = TempDir::new("quickstart-port");
    let data = tmp.path().join("tandem-data");
    let _cleanup = Cleanup(data.clone());
    let (child, out) = run_quickstart(tmp.path(), &["--port", &port.to_string()]);
    assert!(out.contains(&format!("psql -h 127.0.0.1 -p {port} ")), "{out}");
    assert!(out.contains(&format!("psql -h 127.0.0.1 -p {} ", port + 1)), "{out}");
    sql(port, "create table t (id int primary key)");
    sql(port, "insert into t values (1)");
    assert_eq!(sql(port, "select sync_state from pg_stat_replication"), "sync");
    assert_eq!(sql(port + 1, "select pg_is_in_recovery()"), "t");
    interrupt(child);
    // Resumed without --port, it comes back on the ports it was created with.
    let (child, _) = run_quickstart(tmp.path(), &[]);
    assert_eq!(sql(port, "select count(*) from t"), "1");
    interrupt(child);

    // A standby folder removed by hand is made again, on its port, from the primary's data; the slot the
    // removed standby left on the primary is dropped first (the pair is quickstart's own).
    std::fs::remove_dir_all(data.join("standby")).unwrap();
    let (child, out) = run_quickstart(tmp.path(), &["--port", &port.to_string()]);
    assert!(out.contains("Dropped the replication slot"), "{out}");
    assert_eq!(sql(port, "select sync_state from pg_stat_replication"), "sync");
    assert_eq!(sql(port + 1, "select count(*) from t"), "1");
    interrupt(child);
}
