//! The command line: init refuses a non-empty directory and a non-loopback address, start --detach
//! returns once connections are accepted, stop (fast and immediate) ends the server, and data survive both.

mod common;

use std::process::Command;

use common::{free_port, psql_output, tandem_bin};

fn tandem(args: &[&str]) -> std::process::Output {
    Command::new(tandem_bin()).args(args).output().expect("run tandem")
}

/// Kills a detached server left behind by a failed assertion, by the pid in its lock file.
struct Cleanup(std::path::PathBuf);

impl Drop for Cleanup {
    fn drop(&mut self) {
        if let Ok(text) = std::fs::read_to_string(self.0.join("tandem.pid")) {
            if let Ok(pid) = text.trim().parse::<u32>() {
                let held =
                    std::fs::File::open(self.0.join("tandem.pid")).map(|f| f.try_lock().is_err()).unwrap_or(false);
                if held {
                    let _ = Command::new("kill").arg("-9").arg(pid.to_string()).status();
                }
            }
        }
    }
}

#[test]
fn init_start_stop() {
    let tmp = tempfile::tempdir().expect("temp dir");
    let data = tmp.path().join("data");
    let d = data.to_str().unwrap_or_default();
    let port = free_port();
    let p = port.to_string();
    let _cleanup = Cleanup(data.clone());

    let out = tandem(&["init", "-D", d, "--port", &p, "--listen", "0.0.0.0"]);
    assert!(!out.status.success(), "init accepted a non-loopback address");
    assert!(tandem(&["init", "-D", d, "--port", &p]).status.success());
    let again = tandem(&["init", "-D", d]);
    assert!(!again.status.success() && String::from_utf8_lossy(&again.stderr).contains("not empty"));
    assert!(std::fs::read_to_string(data.join("tandem.toml")).unwrap_or_default().contains(&format!("port = {port}")));

    let out = tandem(&["start", "-D", d, "--detach"]);
    assert!(out.status.success(), "start --detach failed: {}", String::from_utf8_lossy(&out.stderr));
    let q = psql_output(port, &["-At", "-c", "CREATE TABLE t (x int); INSERT INTO t VALUES (1), (2);"]);
    assert!(q.status.success(), "{}", String::from_utf8_lossy(&q.stderr));
    let second = tandem(&["start", "-D", d, "--port", &free_port().to_string()]);
    assert!(!second.status.success(), "a second server started on the same directory");

    let out = tandem(&["stop", "-D", d]);
    assert!(out.status.success(), "stop failed: {}", String::from_utf8_lossy(&out.stderr));
    assert!(!psql_output(port, &["-c", "SELECT 1"]).status.success(), "server still answers after stop");
    assert!(std::fs::read_to_string(data.join("log/tandem.log")).unwrap_or_default().contains("shut down"));

    // Immediate stop: the next start recovers from the WAL.
    assert!(tandem(&["start", "-D", d, "--detach"]).status.success());
    let q = psql_output(port, &["-At", "-c", "INSERT INTO t VALUES (3)"]);
    assert!(q.status.success());
    assert!(tandem(&["stop", "-D", d, "--mode", "immediate"]).status.success());
    assert!(tandem(&["start", "-D", d, "--detach"]).status.success());
    let q = psql_output(port, &["-At", "-c", "SELECT sum(x) FROM t"]);
    assert_eq!(String::from_utf8_lossy(&q.stdout).trim(), "6");
    assert!(tandem(&["stop", "-D", d]).status.success());
    assert!(!tandem(&["stop", "-D", d]).status.success(), "stop of a stopped server succeeded");

    for sub in ["init", "start", "stop", "quickstart"] {
        let help = tandem(&[sub, "--help"]);
        assert!(String::from_utf8_lossy(&help.stdout).contains("Examples:"), "no examples in {sub} --help");
    }
}
