//! Split brain, with real processes and a TCP proxy between the standby and its primary. The link is cut;
//! commits on the primary wait (synchronous commit, the standby is gone) and none is acknowledged; the
//! standby is promoted with `--force`. When the link heals, the promoted standby reaches its old primary and
//! fences it: the waiting commits fail and new writes are refused, also after a restart. `tandem rewind`
//! then cuts the old primary's WAL back to the switch point and makes it a standby of the new primary; the
//! data converges (identical ordered dumps).

mod common;

use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use common::{tandem_bin, Node, Proxy, TempDir};

#[test]
fn a_cut_off_primary_acknowledges_nothing_is_fenced_and_rewinds() {
    let tmp = TempDir::new("split-brain");
    let primary = Node::primary(tmp.path().join("primary"), &[]);
    primary.sql("create table t (id int primary key, v text)");
    primary.sql("insert into t select g, 'before' from generate_series(1, 100) g");
    let standby = Node::standby(&primary, tmp.path().join("standby"), "mirror", &[]);
    // The standby streams through the proxy.
    let proxy = Proxy::start(primary.port);
    standby.sql(&format!(
        "alter system set primary_conninfo = 'host=127.0.0.1 port={} application_name=mirror'",
        proxy.port
    ));
    standby.sql("select pg_reload_conf()");
    primary.sql("alter system set synchronous_standby_names = 'mirror'");
    primary.sql("select pg_reload_conf()");
    assert_eq!(primary.wait_for("select sync_state from pg_stat_replication", "sync", 15), "sync");
    primary.sql("insert into t values (101, 'acked before the cut')");

    // Cut the link for 8 s: commits on the primary wait, none is acknowledged.
    proxy.cut(Duration::from_secs(8));
    let cut_at = Instant::now();
    let waiting: Vec<_> = (0..3)
        .map(|i| {
            Command::new("psql")
                .args(["-h", "127.0.0.1", "-p", &primary.port.to_string(), "-U", "postgres", "-X", "-At"])
                .args(["-c", &format!("insert into t values ({}, 'after the cut')", 200 + i), "postgres"])
                .stdout(Stdio::piped())
                .stderr(Stdio::piped())
                .spawn()
                .unwrap()
        })
        .collect();
    std::thread::sleep(Duration::from_millis(500));
    let out = Command::new(tandem_bin()).args(["promote", "--force", "-D"]).arg(&standby.dir).output().unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    standby.sql("insert into t values (300, 'written on the new primary')");

    // Until the link heals, nothing waiting on the old primary is acknowledged.
    let mut waiting = waiting;
    for w in &mut waiting {
        assert!(w.try_wait().unwrap().is_none(), "a commit returned during the cut");
    }
    assert_eq!(primary.sql("select count(*) from t where id >= 200"), "0");
    // Once it heals, the new primary fences the old one: the waiting commits fail, new writes are refused.
    let healed = Duration::from_secs(8).saturating_sub(cut_at.elapsed());
    std::thread::sleep(healed);
    assert_eq!(primary.wait_for("select tandem_fenced()", "t", 20), "t");
    for w in waiting {
        let out = w.wait_with_output().unwrap();
        assert!(!out.status.success(), "a commit after the cut was acknowledged");
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(err.contains("fenced"), "{err}");
    }
    let err = primary.try_sql("insert into t values (400, 'too late')").unwrap_err();
    assert!(err.contains("fenced"), "{err}");
    assert!(primary.log().contains("fenced:"), "{}", primary.log());
    // A restart keeps it fenced.
    assert!(primary.stop("fast"));
    primary.start(&[]);
    let err = primary.try_sql("insert into t values (401, 'too late')").unwrap_err();
    assert!(err.contains("fenced"), "{err}");
    // tandem status says so (text and JSON).
    let status = |json: bool| {
        let mut cmd = Command::new(tandem_bin());
        cmd.args(["status", "-h", "127.0.0.1", "-p", &primary.port.to_string()]);
        if json {
            cmd.arg("--json");
        }
        let out = cmd.output().unwrap();
        assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
        String::from_utf8_lossy(&out.stdout).to_string()
    };
    assert!(status(false).contains("primary, FENCED"), "{}", status(false));
    assert!(status(true).contains("\"fenced\": true"), "{}", status(true));
    assert!(primary.stop("fast"));

    // tandem rewind makes it a standby of the new primary; the data converges.
    let out = Command::new(tandem_bin())
        .args(["rewind", "-h", "127.0.0.1", "-p", &standby.port.to_string(), "--name", "old", "-D"])
        .arg(&primary.dir)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "rewind: {}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    primary.start(&[]);
    assert_eq!(
        primary.wait_for("select status, received_tli from pg_stat_wal_receiver", "streaming|2", 20),
        "streaming|2"
    );
    standby.sql("insert into t values (500, 'after the rewind')");
    let end = standby.sql("select pg_current_wal_lsn()");
    assert_eq!(primary.wait_for("select pg_last_wal_replay_lsn()", &end, 10), end);
    let dump = "select id, v from t order by id";
    assert_eq!(primary.sql(dump), standby.sql(dump));
    assert_eq!(primary.sql("select count(*) from t where id >= 200 and id < 300"), "0");

    // Rewinding a server that is not behind a newer timeline is refused with the reason.
    assert!(primary.stop("fast"));
    let out = Command::new(tandem_bin())
        .args(["rewind", "-h", "127.0.0.1", "-p", &standby.port.to_string(), "-D"])
        .arg(&standby.dir)
        .output()
        .unwrap();
    assert!(!out.status.success());
}

#[test]
fn promote_with_fence_stops_the_old_primary_first() {
    let tmp = TempDir::new("promote-fence");
    let primary = Node::primary(tmp.path().join("primary"), &[]);
    primary.sql("create table t (id int primary key)");
    let standby = Node::standby(&primary, tmp.path().join("standby"), "mirror", &[]);
    primary.sql("insert into t values (1)");
    let end = primary.sql("select pg_current_wal_lsn()");
    assert_eq!(standby.wait_for("select pg_last_wal_replay_lsn()", &end, 10), end);
    let out = Command::new(tandem_bin()).args(["promote", "--fence", "-D"]).arg(&standby.dir).output().unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    assert!(String::from_utf8_lossy(&out.stdout).contains("fenced the old primary"));
    assert_eq!(primary.sql("select tandem_fenced()"), "t");
    let err = primary.try_sql("insert into t values (2)").unwrap_err();
    assert!(err.contains("fenced"), "{err}");
    standby.sql("insert into t values (2)");
    assert_eq!(standby.sql("select count(*) from t"), "2");
}

/// A planned switchover, as an operator runs it: a fast stop of the primary hands its standby everything,
/// the shutdown checkpoint included, before the replication connection closes. The promoted standby then
/// branches off exactly where the old primary's WAL ends, so `tandem rewind` has nothing to cut and the old
/// primary follows the new one with every row.
#[test]
fn a_planned_switchover_leaves_nothing_to_rewind() {
    let tmp = TempDir::new("switchover");
    let primary = Node::primary(tmp.path().join("primary"), &[]);
    let standby = Node::standby(&primary, tmp.path().join("standby"), "mirror", &[]);
    primary.sql("create table s (k int primary key)");
    primary.sql("insert into s select g from generate_series(1, 1000) g");
    assert!(primary.stop("fast"));
    let stopped = primary.log();
    assert!(!stopped.contains("have not flushed the shutdown checkpoint"), "{stopped}");

    let out = Command::new(tandem_bin()).args(["promote", "-D"]).arg(&standby.dir).output().unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    standby.sql("insert into s values (1001)");
    let out = Command::new(tandem_bin())
        .args(["rewind", "-h", "127.0.0.1", "-p", &standby.port.to_string(), "--name", "old", "-D"])
        .arg(&primary.dir)
        .output()
        .unwrap();
    let said = String::from_utf8_lossy(&out.stdout).to_string();
    assert!(out.status.success(), "rewind: {said}{}", String::from_utf8_lossy(&out.stderr));
    assert!(said.contains("nothing to cut"), "{said}");
    primary.start(&[]);
    assert_eq!(primary.wait_for("select count(*), max(k) from s", "1001|1001", 20), "1001|1001");
}
