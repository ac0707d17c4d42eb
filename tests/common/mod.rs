//! Helpers shared by the integration tests: temporary directories, and a real `tandem` server in a
//! temporary directory on an ephemeral loopback port, stopped (by its pid) when the test ends.
#![allow(dead_code)]

use std::net::{TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

/// A temporary directory, removed when dropped.
pub struct TempDir(PathBuf);

impl TempDir {
    pub fn new(tag: &str) -> TempDir {
        static N: AtomicU64 = AtomicU64::new(0);
        let n = N.fetch_add(1, Ordering::Relaxed);
        let path = std::env::temp_dir().join(format!("tandem-test-{tag}-{}-{n}", std::process::id()));
        let _ = std::fs::remove_dir_all(&path);
        std::fs::create_dir_all(&path).expect("create temp dir");
        TempDir(path)
    }

    pub fn path(&self) -> &Path {
        &self.0
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// The tandem binary under test.
pub fn tandem_bin() -> &'static str {
    env!("CARGO_BIN_EXE_tandem")
}

/// A free loopback port (the kernel picks it; it is released before the server binds it).
pub fn free_port() -> u16 {
    let l = TcpListener::bind("127.0.0.1:0").expect("bind an ephemeral port");
    l.local_addr().expect("local address").port()
}

/// A running server.
pub struct TestServer {
    pub dir: tempfile::TempDir,
    pub port: u16,
    child: Option<Child>,
}

impl TestServer {
    /// Initializes a data directory and starts a server on it.
    pub fn start() -> TestServer {
        let dir = tempfile::tempdir().expect("temp dir");
        let port = free_port();
        let data = dir.path().join("data");
        let out = Command::new(tandem_bin())
            .arg("init")
            .arg("-D")
            .arg(&data)
            .arg("--port")
            .arg(port.to_string())
            .output()
            .expect("run tandem init");
        assert!(out.status.success(), "init failed: {}", String::from_utf8_lossy(&out.stderr));
        let mut s = TestServer { dir, port, child: None };
        s.launch();
        s
    }

    /// The data directory.
    pub fn data(&self) -> PathBuf {
        self.dir.path().join("data")
    }

    /// Starts the server process (foreground mode, as a child) and waits until it accepts connections.
    pub fn launch(&mut self) {
        let log = std::fs::File::create(self.dir.path().join("server.log")).expect("log file");
        let child = Command::new(tandem_bin())
            .arg("start")
            .arg("-D")
            .arg(self.data())
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .expect("start tandem");
        self.child = Some(child);
        let deadline = Instant::now() + Duration::from_secs(60);
        while TcpStream::connect(("127.0.0.1", self.port)).is_err() {
            assert!(Instant::now() < deadline, "server did not start: {}", self.log());
            if let Some(Ok(Some(status))) = self.child.as_mut().map(|c| c.try_wait()) {
                panic!("server exited with {status}: {}", self.log());
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// The server's log so far.
    pub fn log(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("server.log")).unwrap_or_default()
    }

    /// The server's pid.
    pub fn pid(&self) -> Option<u32> {
        self.child.as_ref().map(Child::id)
    }

    /// Kills the server with SIGKILL (a crash) and reaps it.
    pub fn kill(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }

    /// Stops the server with `tandem stop` (fast mode) and reaps it.
    pub fn stop(&mut self) {
        if let Some(mut c) = self.child.take() {
            let out = Command::new(tandem_bin()).arg("stop").arg("-D").arg(self.data()).output();
            let stopped = out.map(|o| o.status.success()).unwrap_or(false);
            if !stopped {
                let _ = c.kill();
            }
            let _ = c.wait();
        }
    }

    /// A libpq connection string for this server.
    pub fn conninfo(&self) -> String {
        format!("host=127.0.0.1 port={} user=postgres dbname=postgres", self.port)
    }

    /// Runs psql with a command and returns its unaligned, tuples-only output.
    pub fn psql(&self, sql: &str) -> String {
        let out = psql_output(self.port, &["-At", "-v", "ON_ERROR_STOP=1", "-c", sql]);
        assert!(out.status.success(), "psql failed on {sql}: {}", String::from_utf8_lossy(&out.stderr));
        String::from_utf8_lossy(&out.stdout).trim().to_string()
    }
}

/// Runs psql against a port with extra arguments.
pub fn psql_output(port: u16, args: &[&str]) -> Output {
    Command::new("psql")
        .args(["-h", "127.0.0.1", "-p", &port.to_string(), "-U", "postgres", "-X", "postgres"])
        .args(args)
        .env("PGCONNECT_TIMEOUT", "10")
        .output()
        .expect("run psql")
}

impl Drop for TestServer {
    fn drop(&mut self) {
        self.kill();
    }
}

/// Runs pgbench against a port; panics with its output if it fails.
pub fn pgbench(port: u16, args: &[&str]) -> String {
    let out = Command::new("pgbench")
        .args(["-h", "127.0.0.1", "-p", &port.to_string(), "-U", "postgres"])
        .args(args)
        .arg("postgres")
        .output()
        .expect("run pgbench");
    let text = format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
    assert!(out.status.success(), "pgbench {args:?} failed:\n{text}");
    text
}

/// A number that follows `label` in pgbench's output.
pub fn pgbench_number(output: &str, label: &str) -> f64 {
    output
        .lines()
        .find_map(|l| l.strip_prefix(label))
        .and_then(|rest| rest.split_whitespace().next().map(str::to_string))
        .and_then(|n| n.parse().ok())
        .unwrap_or_else(|| panic!("no \"{label}\" in pgbench output:\n{output}"))
}

/// A path inside the test's temporary directory.
pub fn path_in(dir: &Path, name: &str) -> PathBuf {
    dir.join(name)
}
