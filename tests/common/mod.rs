//! Helpers shared by the integration tests.
#![allow(dead_code)]

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};

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

use std::collections::HashMap;
use std::io::{Read, Write};
use std::net::{Shutdown, TcpListener, TcpStream};
use std::sync::atomic::AtomicBool;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use tandem::engine::{Engine, EngineConfig};
use tandem::replication::walsender::{self, ReplicationContext, SenderConfig};

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
    pub port: u16,
    stop: Arc<AtomicBool>,
    conns: Arc<Mutex<Vec<TcpStream>>>,
    acceptor: Option<std::thread::JoinHandle<()>>,
}

impl TestPrimary {
    pub fn start(dir: &Path, config: EngineConfig, port: u16) -> TestPrimary {
        let engine = Arc::new(Engine::open(dir, config).unwrap());
        let ctx = ReplicationContext::new(engine.clone(), SenderConfig::default());
        let listener = TcpListener::bind(("127.0.0.1", port)).unwrap();
        listener.set_nonblocking(true).unwrap();
        let port = listener.local_addr().unwrap().port();
        let stop = Arc::new(AtomicBool::new(false));
        let conns = Arc::new(Mutex::new(Vec::new()));
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
                                    let _ = walsender::serve(stream, &params, pid, ctx);
                                }
                            });
                        }
                        Err(_) => std::thread::sleep(Duration::from_millis(10)),
                    }
                }
            })
        };
        TestPrimary { engine, port, stop, conns, acceptor: Some(acceptor) }
    }

    /// Stops accepting, closes every replication connection and shuts the engine down cleanly.
    pub fn stop(mut self) {
        self.stop.store(true, Ordering::Release);
        if let Some(a) = self.acceptor.take() {
            a.join().unwrap();
        }
        for c in self.conns.lock().unwrap().drain(..) {
            let _ = c.shutdown(Shutdown::Both);
        }
        self.engine.shutdown().unwrap();
        // Wait for the senders to let go of the engine, so the data directory can be opened again.
        let deadline = Instant::now() + Duration::from_secs(10);
        while Arc::strong_count(&self.engine) > 1 && Instant::now() < deadline {
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
