//! Helpers shared by the integration tests: temporary directories, in-process primaries with WAL
//! senders, a TCP proxy that cuts connections, and real `tandem` server processes on ephemeral loopback
//! ports, stopped by their pid when the test ends; [`sql`] has tokio-postgres helpers for the SQL tests.
#![allow(dead_code)]

pub mod sql;

use std::collections::HashMap;
use std::io::{Read, Write};
use std::net::Shutdown;
use std::net::{TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::sync::atomic::AtomicBool;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use tandem::engine::{Engine, EngineConfig};
use tandem::replication::walsender::{self, ReplicationContext, SenderConfig};
use tandem::settings::ServerSettings;

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

/// Reads a startup packet (answering SSLRequest with 'N') and returns its parameters.
pub fn startup(stream: &mut TcpStream) -> Option<HashMap<String, String>> {
    loop {
        let mut len = [0u8; 4];
        stream.read_exact(&mut len).ok()?;
        let len = u32::from_be_bytes(len) as usize;
        let mut body = vec![0u8; len.checked_sub(4)?];
        stream.read_exact(&mut body).ok()?;
        let code = u32::from_be_bytes(body[..4].try_into().ok()?);
        if code == 80877103 || code == 80877104 {
            stream.write_all(b"N").ok()?;
            continue;
        }
        let mut params = HashMap::new();
        let mut parts = body[4..].split(|b| *b == 0);
        while let (Some(k), Some(v)) = (parts.next(), parts.next()) {
            if k.is_empty() {
                break;
            }
            params.insert(String::from_utf8_lossy(k).into_owned(), String::from_utf8_lossy(v).into_owned());
        }
        return Some(params);
    }
}

/// A primary engine with WAL senders on a loopback port, which can be stopped (closing every
/// replication connection) and started again on the same port.
pub struct TestPrimary {
    pub engine: Arc<Engine>,
    pub ctx: Arc<ReplicationContext>,
    pub port: u16,
    stop: Arc<AtomicBool>,
    conns: Arc<Mutex<Vec<TcpStream>>>,
    acceptor: Option<std::thread::JoinHandle<()>>,
}

impl TestPrimary {
    pub fn start(dir: &Path, config: EngineConfig, port: u16) -> TestPrimary {
        Self::start_with(dir, config, port, SenderConfig::default())
    }

    pub fn start_with(dir: &Path, config: EngineConfig, port: u16, sender: SenderConfig) -> TestPrimary {
        let engine = Arc::new(Engine::open(dir, config).unwrap());
        let settings = Arc::new(ServerSettings::load(dir).unwrap());
        let ctx = ReplicationContext::new(engine.clone(), sender, settings).unwrap();
        let listener = TcpListener::bind(("127.0.0.1", port)).unwrap();
        listener.set_nonblocking(true).unwrap();
        let port = listener.local_addr().unwrap().port();
        let stop = Arc::new(AtomicBool::new(false));
        let conns = Arc::new(Mutex::new(Vec::new()));
        let ctx_keep = ctx.clone();
        let acceptor = {
            let (stop, conns) = (stop.clone(), conns.clone());
            std::thread::spawn(move || {
                let mut pid = 1000;
                while !stop.load(Ordering::Acquire) {
                    match listener.accept() {
                        Ok((mut stream, _)) => {
                            stream.set_nonblocking(false).unwrap();
                            conns.lock().unwrap().push(stream.try_clone().unwrap());
                            let ctx = ctx.clone();
                            pid += 1;
                            std::thread::spawn(move || {
                                if let Some(params) = startup(&mut stream) {
                                    let _ = walsender::serve(
                                        tandem::server::stream::Stream::Tcp(stream),
                                        &params,
                                        pid,
                                        ctx,
                                    );
                                }
                            });
                        }
                        Err(_) => std::thread::sleep(Duration::from_millis(10)),
                    }
                }
            })
        };
        TestPrimary { engine, ctx: ctx_keep, port, stop, conns, acceptor: Some(acceptor) }
    }

    /// Stops accepting, closes every replication connection and shuts the engine down cleanly.
    pub fn stop(self) {
        let TestPrimary { engine, ctx, stop, conns, acceptor, .. } = self;
        drop(ctx);
        stop.store(true, Ordering::Release);
        if let Some(a) = acceptor {
            a.join().unwrap();
        }
        for c in conns.lock().unwrap().drain(..) {
            let _ = c.shutdown(Shutdown::Both);
        }
        engine.shutdown().unwrap();
        // Wait for the senders to let go of the engine, so the data directory can be opened again.
        let deadline = Instant::now() + Duration::from_secs(10);
        while Arc::strong_count(&engine) > 1 && Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(10));
        }
    }
}

/// A TCP proxy on a loopback port that can cut every connection through it for a while.
pub struct Proxy {
    pub port: u16,
    cut_until: Arc<Mutex<Option<Instant>>>,
    conns: Arc<Mutex<Vec<TcpStream>>>,
    stop: Arc<AtomicBool>,
}

impl Proxy {
    pub fn start(target_port: u16) -> Proxy {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        listener.set_nonblocking(true).unwrap();
        let port = listener.local_addr().unwrap().port();
        let cut_until: Arc<Mutex<Option<Instant>>> = Arc::new(Mutex::new(None));
        let conns = Arc::new(Mutex::new(Vec::new()));
        let stop = Arc::new(AtomicBool::new(false));
        {
            let (cut_until, conns, stop) = (cut_until.clone(), conns.clone(), stop.clone());
            std::thread::spawn(move || {
                while !stop.load(Ordering::Acquire) {
                    let Ok((client, _)) = listener.accept() else {
                        std::thread::sleep(Duration::from_millis(10));
                        continue;
                    };
                    let cut = cut_until.lock().unwrap().is_some_and(|t| Instant::now() < t);
                    if cut {
                        let _ = client.shutdown(Shutdown::Both);
                        continue;
                    }
                    client.set_nonblocking(false).unwrap();
                    let Ok(server) = TcpStream::connect(("127.0.0.1", target_port)) else { continue };
                    conns.lock().unwrap().push(client.try_clone().unwrap());
                    conns.lock().unwrap().push(server.try_clone().unwrap());
                    for (mut from, mut to) in
                        [(client.try_clone().unwrap(), server.try_clone().unwrap()), (server, client)]
                    {
                        std::thread::spawn(move || {
                            let _ = std::io::copy(&mut from, &mut to);
                            let _ = to.shutdown(Shutdown::Both);
                        });
                    }
                }
            });
        }
        Proxy { port, cut_until, conns, stop }
    }

    /// Cuts every connection and refuses new ones for `d`.
    pub fn cut(&self, d: Duration) {
        *self.cut_until.lock().unwrap() = Some(Instant::now() + d);
        for c in self.conns.lock().unwrap().drain(..) {
            let _ = c.shutdown(Shutdown::Both);
        }
    }
}

impl Drop for Proxy {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Release);
        for c in self.conns.lock().unwrap().drain(..) {
            let _ = c.shutdown(Shutdown::Both);
        }
    }
}

/// Copies a stopped server's data directory (without its lock file).
pub fn copy_dir(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).unwrap();
    for e in std::fs::read_dir(from).unwrap() {
        let e = e.unwrap();
        let target = to.join(e.file_name());
        if e.path().is_dir() {
            copy_dir(&e.path(), &target);
        } else if e.file_name() != "tandem.pid" {
            std::fs::copy(e.path(), target).unwrap();
        }
    }
}

/// The tandem binary under test.
pub fn tandem_bin() -> &'static str {
    env!("CARGO_BIN_EXE_tandem")
}

/// A server's pid, from the first line of the lock file in its data directory.
pub fn server_pid(dir: &Path) -> Option<u32> {
    std::fs::read_to_string(dir.join("tandem.pid")).ok()?.lines().next()?.trim().parse().ok()
}

/// Whether a server runs in `dir`: its lock file is held.
pub fn server_running(dir: &Path) -> bool {
    std::fs::File::open(dir.join("tandem.pid")).map(|f| f.try_lock().is_err()).unwrap_or(false)
}

/// The threads of process `pid`: each one's name (`comm`) and its /proc/PID/task/TID directory.
pub fn threads(pid: u32) -> Vec<(String, PathBuf)> {
    let Ok(tasks) = std::fs::read_dir(format!("/proc/{pid}/task")) else { return Vec::new() };
    tasks
        .flatten()
        .filter_map(|task| {
            let name = std::fs::read_to_string(task.path().join("comm")).ok()?;
            Some((name.trim_end().to_string(), task.path()))
        })
        .collect()
}

/// Field `n` of a /proc/PID/task/TID/stat line, numbered as proc(5) numbers them.
pub fn stat_field(stat: &str, n: usize) -> Option<i64> {
    // "TID (COMM) STATE ...": the fields after the command name start at field 3.
    stat.rsplit_once(") ")?.1.split_whitespace().nth(n - 3)?.parse().ok()
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

/// Creates a table `name (k int8 primary key, v text)` and commits; returns its oid.
pub fn create_kv_table(engine: &Engine, name: &str) -> u32 {
    use tandem::storage::catalog::{ColumnDef, PrimaryKey, TableDef};
    use tandem::storage::value::DataType;
    let mut txn = engine.begin(tandem::txn::Isolation::ReadCommitted);
    let id = txn.allocate_oid();
    let index_id = txn.allocate_oid();
    let col = |n: &str, ty| ColumnDef { name: n.into(), ty, not_null: false, default: None };
    txn.create_table(TableDef {
        id,
        name: name.into(),
        columns: vec![col("k", DataType::Int8), col("v", DataType::Text)],
        primary_key: Some(PrimaryKey { name: format!("{name}_pkey"), index_id, columns: vec![0] }),
        indexes: vec![],
    })
    .unwrap();
    txn.commit().unwrap().wait().unwrap();
    id
}

/// A `tandem` server started detached (`tandem start --detach`), as an operator runs it; stopped
/// immediately, by the pid in its data directory, when dropped.
pub struct Node {
    pub dir: PathBuf,
    pub port: u16,
}

impl Node {
    /// Initializes and starts a primary.
    pub fn primary(dir: PathBuf, extra_init: &[&str]) -> Node {
        let port = free_port();
        let mut init = vec!["init", "--port"];
        let p = port.to_string();
        init.push(&p);
        init.extend_from_slice(extra_init);
        tandem_ok(&init, &dir);
        let node = Node { dir, port };
        node.start(&[]);
        node
    }

    /// Creates a standby of `primary` with `tandem init-standby` (environment `env` for the standby).
    pub fn standby(primary: &Node, dir: PathBuf, name: &str, env: &[(&str, &str)]) -> Node {
        let port = free_port();
        let out = Command::new(tandem_bin())
            .args(["init-standby", "-h", "127.0.0.1", "-p", &primary.port.to_string(), "--port"])
            .arg(port.to_string())
            .args(["--name", name, "-D"])
            .arg(&dir)
            .envs(env.iter().copied())
            .output()
            .expect("run tandem init-standby");
        let node = Node { dir, port };
        assert!(
            out.status.success(),
            "init-standby {name} failed: {}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        node
    }

    /// `tandem start --detach` with extra environment.
    pub fn start(&self, env: &[(&str, &str)]) {
        let out = Command::new(tandem_bin())
            .args(["start", "--detach", "-D"])
            .arg(&self.dir)
            .envs(env.iter().copied())
            .output()
            .expect("run tandem start");
        assert!(out.status.success(), "start failed: {}", String::from_utf8_lossy(&out.stderr));
    }

    /// `tandem stop` in the given mode; Ok if the server was running and stopped.
    pub fn stop(&self, mode: &str) -> bool {
        Command::new(tandem_bin())
            .args(["stop", "--mode", mode, "-D"])
            .arg(&self.dir)
            .output()
            .is_ok_and(|o| o.status.success())
    }

    /// The server's pid, from its lock file.
    pub fn pid(&self) -> i32 {
        server_pid(&self.dir).expect("pid in tandem.pid") as i32
    }

    /// Sends a signal to the server (SIGSTOP, SIGCONT, SIGKILL).
    pub fn signal(&self, sig: i32) {
        assert!(self.running(), "server in {} is not running", self.dir.display());
        // SAFETY: signals the pid this test's server wrote into its own lock file.
        unsafe {
            libc::kill(self.pid(), sig);
        }
    }

    /// Runs SQL with psql; Ok(unaligned tuples-only output) or Err(stderr).
    pub fn try_sql(&self, sql: &str) -> std::result::Result<String, String> {
        let out = psql_output(self.port, &["-At", "-v", "ON_ERROR_STOP=1", "-c", sql]);
        if out.status.success() {
            Ok(String::from_utf8_lossy(&out.stdout).trim().to_string())
        } else {
            Err(String::from_utf8_lossy(&out.stderr).to_string())
        }
    }

    /// Runs SQL with psql and returns its output; panics on failure.
    pub fn sql(&self, sql: &str) -> String {
        self.try_sql(sql).unwrap_or_else(|e| panic!("psql on port {} failed on {sql}: {e}", self.port))
    }

    /// Polls `sql` until it returns `expected` (at most `secs` seconds); returns the last output.
    pub fn wait_for(&self, sql: &str, expected: &str, secs: u64) -> String {
        let deadline = Instant::now() + Duration::from_secs(secs);
        loop {
            let got = self.try_sql(sql).unwrap_or_else(|e| e);
            if got == expected || Instant::now() > deadline {
                return got;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// The server's log.
    pub fn log(&self) -> String {
        std::fs::read_to_string(self.dir.join("log").join("tandem.log")).unwrap_or_default()
    }
}

impl Node {
    /// Whether the server is running: its lock file is held.
    pub fn running(&self) -> bool {
        server_running(&self.dir)
    }
}

impl Drop for Node {
    fn drop(&mut self) {
        if self.running() {
            // A stopped (SIGSTOP) server must be continued to act on the stop request.
            self.signal(libc::SIGCONT);
            self.stop("immediate");
        }
    }
}

/// Runs `tandem ARGS -D DIR`; panics on failure.
pub fn tandem_ok(args: &[&str], dir: &Path) -> Output {
    let out = Command::new(tandem_bin()).args(args).arg("-D").arg(dir).output().expect("run tandem");
    assert!(out.status.success(), "tandem {args:?} failed: {}", String::from_utf8_lossy(&out.stderr));
    out
}
