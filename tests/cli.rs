//! The command line: init refuses a non-empty directory and a non-loopback address, start --detach
//! returns once connections are accepted, stop (fast and immediate) ends the server, and data survive both.
//! Commands given a directory or port they cannot use refuse it and touch nothing.

mod common;

use std::process::Command;
use std::time::Duration;

use common::{free_port, psql_output, tandem_bin};

fn tandem(args: &[&str]) -> std::process::Output {
    Command::new(tandem_bin()).args(args).output().expect("run tandem")
}

/// Kills a detached server left behind by a failed assertion, by the pid in its lock file.
struct Cleanup(std::path::PathBuf);

impl Drop for Cleanup {
    fn drop(&mut self) {
        if let Some(pid) = common::server_pid(&self.0).filter(|_| common::server_running(&self.0)) {
            let _ = Command::new("kill").arg("-9").arg(pid.to_string()).status();
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

/// `start --detach` succeeds only for its own server: not when the directory's server already runs, nor
/// when another program holds the port (a connection would succeed there). `init-standby` and
/// `basebackup` refuse a non-empty directory without touching it (init-standby once emptied it while
/// undoing its failure), a bad standby name or transfer rate before they start, and remove what they
/// created when the primary cannot be reached. Port 0 is refused; `-h` is the host, never help.
#[test]
fn refusals_touch_nothing() {
    let tmp = tempfile::tempdir().expect("temp dir");
    let path = |name: &str| tmp.path().join(name).to_str().unwrap_or_default().to_string();
    let (a, b) = (path("a"), path("b"));
    let port = free_port();
    let p = port.to_string();
    let _cleanup = Cleanup(tmp.path().join("a"));
    let _cleanup_b = Cleanup(tmp.path().join("b"));
    let stderr = |out: &std::process::Output| String::from_utf8_lossy(&out.stderr).to_string();

    assert!(tandem(&["init", "-D", &a, "--port", &p]).status.success());
    assert!(tandem(&["start", "-D", &a, "--detach"]).status.success());
    let again = tandem(&["start", "-D", &a, "--detach"]);
    assert!(!again.status.success(), "a second start of a running directory succeeded");
    assert!(stderr(&again).contains("is held"), "{}", stderr(&again));
    assert!(tandem(&["init", "-D", &b, "--port", &p]).status.success());
    let taken = tandem(&["start", "-D", &b, "--detach"]);
    assert!(!taken.status.success(), "start succeeded on a port another server holds");
    assert!(stderr(&taken).contains("Address already in use"), "{}", stderr(&taken));
    let zero = tandem(&["start", "-D", &b, "--port", "0", "--detach"]);
    assert!(!zero.status.success() && stderr(&zero).contains("port 0"), "{}", stderr(&zero));

    let precious = tmp.path().join("precious");
    std::fs::create_dir_all(&precious).expect("mkdir");
    std::fs::write(precious.join("file.txt"), "important").expect("write");
    let pr = precious.to_str().unwrap_or_default();
    let other = free_port().to_string();
    for args in [
        vec!["init-standby", "-h", "127.0.0.1", "-p", &p, "-D", pr, "--port", &other],
        vec!["basebackup", "-h", "127.0.0.1", "-p", &p, "-D", pr],
        // A live server's own directory.
        vec!["init-standby", "-p", &p, "-D", &a, "--port", &other],
    ] {
        let out = tandem(&args);
        assert!(!out.status.success() && stderr(&out).contains("not empty"), "{args:?}: {}", stderr(&out));
    }
    assert_eq!(std::fs::read_to_string(precious.join("file.txt")).unwrap_or_default(), "important");
    assert!(tmp.path().join("a/tandem.toml").exists() && tmp.path().join("a/tandem.pid").exists());

    let fresh = path("fresh");
    let bad_name = tandem(&["init-standby", "-p", &p, "-D", &fresh, "--port", &other, "--name", "bad name'"]);
    assert!(!bad_name.status.success() && stderr(&bad_name).contains("invalid standby name"));
    let rate = tandem(&["basebackup", "-p", &p, "-D", &fresh, "--max-rate", "0"]);
    assert!(!rate.status.success() && stderr(&rate).contains("out of range"), "{}", stderr(&rate));
    let dead = tandem(&["basebackup", "-p", &free_port().to_string(), "-D", &fresh]);
    assert!(!dead.status.success());
    assert!(!tmp.path().join("fresh").exists(), "a failed basebackup left its directory behind");
    // A directory that is no data directory: every command that takes one says so, as start does.
    for cmd in ["start", "stop", "promote", "rewind"] {
        let mut args = vec![cmd, "-D", &fresh];
        if cmd == "rewind" {
            args.extend(["-h", "127.0.0.1", "-p", &p]);
        }
        let out = tandem(&args);
        assert!(
            !out.status.success() && stderr(&out).contains("is not a tandem data directory"),
            "{cmd}: {}",
            stderr(&out)
        );
    }
    assert!(!tmp.path().join("fresh").exists(), "a refused command made the directory");

    let status = tandem(&["status", "-h", "127.0.0.1", "-p", &p]);
    assert!(status.status.success(), "{}", stderr(&status));
    assert!(String::from_utf8_lossy(&status.stdout).contains("primary"));
    assert!(tandem(&["stop", "-D", &a]).status.success());
}

/// The file `name` (in /proc/PID/task/TID/) of each thread of `pid` named "session".
fn session_files(pid: u32, name: &str) -> Vec<String> {
    common::threads(pid)
        .into_iter()
        .filter(|(comm, _)| comm == "session")
        .filter_map(|(_, task)| std::fs::read_to_string(task.join(name)).ok())
        .collect()
}

/// The scheduling policy (field 41 of /proc/PID/task/TID/stat) of each thread of `pid` named "session".
fn session_policies(pid: u32) -> Vec<u32> {
    session_files(pid, "stat").iter().filter_map(|stat| common::stat_field(stat, 41)).map(|p| p as u32).collect()
}

/// A client speaking the simple query protocol over a raw socket, so the test decides how quickly it
/// sends each query after the previous reply.
struct RawClient(std::net::TcpStream);

impl RawClient {
    fn connect(port: u16) -> RawClient {
        use std::io::Write;
        let mut s = std::net::TcpStream::connect(("127.0.0.1", port)).expect("connect");
        let mut body = 196608u32.to_be_bytes().to_vec();
        body.extend_from_slice(b"user\0postgres\0database\0postgres\0\0");
        let mut msg = ((body.len() + 4) as u32).to_be_bytes().to_vec();
        msg.extend_from_slice(&body);
        s.write_all(&msg).expect("startup");
        let mut c = RawClient(s);
        c.until_ready();
        c
    }

    /// Reads messages until ReadyForQuery; panics on an ErrorResponse.
    fn until_ready(&mut self) {
        use std::io::Read;
        loop {
            let mut head = [0u8; 5];
            self.0.read_exact(&mut head).expect("read");
            let len = u32::from_be_bytes([head[1], head[2], head[3], head[4]]) as usize;
            let mut body = vec![0u8; len - 4];
            self.0.read_exact(&mut body).expect("read");
            assert_ne!(head[0], b'E', "error: {}", String::from_utf8_lossy(&body));
            if head[0] == b'Z' {
                return;
            }
        }
    }

    fn query(&mut self, sql: &str) {
        use std::io::Write;
        let mut msg = vec![b'Q'];
        msg.extend_from_slice(&((sql.len() + 5) as u32).to_be_bytes());
        msg.extend_from_slice(sql.as_bytes());
        msg.push(0);
        self.0.write_all(&msg).expect("query");
        self.until_ready();
    }
}

/// Runs queries on `client`, `pause` apart, until `check` holds (true) or 3,000 queries (false).
fn reaches(client: &mut RawClient, pause: Duration, check: impl Fn() -> bool) -> bool {
    for i in 0..3000 {
        client.query("select 1");
        std::thread::sleep(pause);
        if i % 10 == 9 && check() {
            return true;
        }
    }
    false
}

/// Runs queries on `client`, `pause` apart, until the server's only session thread has `policy` (true)
/// or 3,000 queries (false).
fn reaches_policy(server: &common::TestServer, client: &mut RawClient, pause: Duration, policy: u32) -> bool {
    let pid = server.pid().expect("server pid");
    reaches(client, pause, || session_policies(pid) == [policy])
}

/// `session_scheduling`: under `adaptive` (the default) a session whose client sends its next query at
/// once runs under SCHED_BATCH and one whose client pauses runs under the normal policy, both ways on one
/// connection; `batch` and `normal` (after ALTER SYSTEM and a reload) hold whatever the client does. A bad
/// value is refused with 22023 and the list of valid ones.
#[test]
fn session_threads_take_the_policy_session_scheduling_names() {
    const SCHED_OTHER: u32 = 0;
    const SCHED_BATCH: u32 = 3;
    let mut server = common::TestServer::start();
    let pid = server.pid().expect("server pid");
    assert_eq!(server.psql("show session_scheduling"), "adaptive");
    let quick = Duration::ZERO;
    let slow = Duration::from_millis(20);

    let mut client = RawClient::connect(server.port);
    assert!(reaches_policy(&server, &mut client, quick, SCHED_BATCH), "{:?}", session_policies(pid));
    assert!(reaches_policy(&server, &mut client, slow, SCHED_OTHER), "{:?}", session_policies(pid));
    assert!(reaches_policy(&server, &mut client, quick, SCHED_BATCH), "{:?}", session_policies(pid));
    drop(client);

    let bad = psql_output(
        server.port,
        &["-v", "VERBOSITY=verbose", "-c", "alter system set session_scheduling = 'sometimes'"],
    );
    let err = String::from_utf8_lossy(&bad.stderr);
    assert!(
        !bad.status.success() && err.contains("22023: invalid value for parameter \"session_scheduling\""),
        "{err}"
    );
    assert!(err.contains("adaptive, batch, normal"), "{err}");

    for (mode, held, other, pause) in
        [("batch", SCHED_BATCH, SCHED_OTHER, slow), ("normal", SCHED_OTHER, SCHED_BATCH, quick)]
    {
        server.psql(&format!("alter system set session_scheduling = '{mode}'"));
        server.psql("select pg_reload_conf()");
        assert_eq!(server.psql("show session_scheduling"), mode);
        let mut client = RawClient::connect(server.port);
        assert!(reaches_policy(&server, &mut client, pause, held), "{mode}: {:?}", session_policies(pid));
        for _ in 0..200 {
            client.query("select 1");
            std::thread::sleep(pause / 10);
        }
        assert!(!session_policies(pid).contains(&other), "{mode}: {:?}", session_policies(pid));
    }
    server.stop();
}

/// The CPUs each thread of `pid` named "session" may run on (`Cpus_allowed_list` in /proc/PID/task/TID/status),
/// and those of the process itself.
fn session_cpus(pid: u32) -> (Vec<String>, String) {
    let allowed = |status: &str| {
        status.lines().find_map(|l| l.strip_prefix("Cpus_allowed_list:")).unwrap_or_default().trim().to_string()
    };
    let process = allowed(&std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default());
    (session_files(pid, "status").iter().map(|s| allowed(s)).collect(), process)
}

/// `session_placement`: under `adaptive`, the session of a quick TCP client is held to one CPU (the one its
/// client's packets arrive on) and goes back to all of the server's CPUs when the client pauses; with
/// `any` it is never held. A bad value is refused with 22023 and the list of valid ones.
#[test]
fn a_quick_tcp_clients_session_follows_it_to_its_cpu() {
    let mut server = common::TestServer::start();
    let pid = server.pid().expect("server pid");
    assert_eq!(server.psql("show session_placement"), "follow_client");
    let quick = Duration::ZERO;
    let slow = Duration::from_millis(20);
    let one_cpu = || {
        let (sessions, _) = session_cpus(pid);
        sessions.len() == 1 && sessions[0].parse::<usize>().is_ok()
    };
    let all_cpus = || {
        let (sessions, process) = session_cpus(pid);
        sessions.len() == 1 && sessions[0] == process
    };
    let cpus = std::thread::available_parallelism().map_or(1, |n| n.get());
    if cpus >= 2 {
        let mut client = RawClient::connect(server.port);
        assert!(reaches(&mut client, quick, one_cpu), "{:?}", session_cpus(pid));
        assert!(reaches(&mut client, slow, all_cpus), "{:?}", session_cpus(pid));
        assert!(reaches(&mut client, quick, one_cpu), "{:?}", session_cpus(pid));
        drop(client);
    } else {
        eprintln!("one CPU: nothing to follow; only `any` and the bad value are checked");
    }

    let bad =
        psql_output(server.port, &["-v", "VERBOSITY=verbose", "-c", "alter system set session_placement = 'nearby'"]);
    let err = String::from_utf8_lossy(&bad.stderr);
    assert!(!bad.status.success() && err.contains("22023: invalid value for parameter \"session_placement\""), "{err}");
    assert!(err.contains("follow_client, any"), "{err}");

    server.psql("alter system set session_placement = 'any'");
    server.psql("select pg_reload_conf()");
    assert_eq!(server.psql("show session_placement"), "any");
    let mut client = RawClient::connect(server.port);
    // Quick enough to run under SCHED_BATCH, which is when a following session would be held.
    assert!(reaches_policy(&server, &mut client, quick, 3), "{:?}", session_policies(pid));
    for _ in 0..200 {
        client.query("select 1");
        assert!(all_cpus(), "{:?}", session_cpus(pid));
    }
    server.stop();
}
