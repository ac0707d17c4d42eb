//! Promotion and timelines with real server processes: `tandem promote` refuses while the primary still
//! serves; after the primary dies it promotes the standby onto timeline 2 (history file in pg_wal, writes
//! accepted when it returns); a second standby is pointed at the new primary with `ALTER SYSTEM SET
//! primary_conninfo` and `pg_reload_conf()` — no restart — follows it onto the new timeline, and ends with
//! the same data. `pg_promote()` promotes from SQL.

mod common;

use std::process::Command;

use common::{tandem_bin, Node, TempDir};

fn dump(node: &Node) -> String {
    node.sql("select aid, abalance from pgbench_accounts order by aid")
        + &node.sql("select bid, bbalance from pgbench_branches order by bid")
        + &node.sql("select tid, tbalance from pgbench_tellers order by tid")
        + &node.sql("select tid, bid, aid, delta from pgbench_history order by tid, bid, aid, delta, mtime")
}

#[test]
fn a_promoted_standby_takes_the_other_along_onto_its_timeline() {
    let tmp = TempDir::new("promote");
    let primary = Node::primary(tmp.path().join("primary"), &["--wal-segment-size", "1MB"]);
    let out = Command::new("pgbench")
        .args(["-h", "127.0.0.1", "-p", &primary.port.to_string(), "-U", "postgres", "-i", "-s", "1", "-q", "postgres"])
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let s1 = Node::standby(&primary, tmp.path().join("s1"), "s1", &[]);
    let s2 = Node::standby(&primary, tmp.path().join("s2"), "s2", &[]);
    let load = Command::new("pgbench")
        .args(["-h", "127.0.0.1", "-p", &primary.port.to_string(), "-U", "postgres", "-c", "4", "-j", "2", "-T", "3"])
        .arg("postgres")
        .output()
        .unwrap();
    assert!(load.status.success(), "{}", String::from_utf8_lossy(&load.stderr));

    // The primary still serves: promotion is refused.
    let refused = Command::new(tandem_bin()).args(["promote", "-D"]).arg(&s1.dir).output().unwrap();
    assert!(!refused.status.success());
    let msg = String::from_utf8_lossy(&refused.stderr);
    assert!(msg.contains("still running and accepting writes"), "{msg}");
    assert_eq!(s1.sql("select pg_is_in_recovery()"), "t");

    let end = primary.sql("select pg_current_wal_lsn()");
    for s in [&s1, &s2] {
        assert_eq!(s.wait_for("select pg_last_wal_replay_lsn()", &end, 10), end);
    }
    primary.signal(libc::SIGKILL);
    let out = Command::new(tandem_bin()).args(["promote", "-D"]).arg(&s1.dir).output().unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    assert_eq!(s1.sql("select pg_is_in_recovery()"), "f");
    let history = std::fs::read_to_string(s1.dir.join("pg_wal").join("00000002.history")).unwrap();
    assert!(history.starts_with(&format!("1\t{end}\t")), "{history}");
    assert!(!s1.dir.join("standby.signal").exists());
    // The old primary, started again, learns from its mirrors that it was replaced, and refuses writes.
    primary.start(&[]);
    assert_eq!(primary.sql("select tandem_fenced()"), "t");
    let err = primary.try_sql("create table stray (id int)").unwrap_err();
    assert!(err.contains("fenced"), "{err}");
    assert!(primary.stop("fast"));
    s1.sql("create table after_promotion (id int primary key)");
    s1.sql("insert into after_promotion select g from generate_series(1, 500) g");

    // The other standby follows the new primary without a restart.
    let pid = s2.pid();
    s2.sql(&format!("alter system set primary_conninfo = 'host=127.0.0.1 port={} application_name=s2'", s1.port));
    assert_eq!(s2.sql("select pg_reload_conf()"), "t");
    assert_eq!(s2.wait_for("select status, received_tli from pg_stat_wal_receiver", "streaming|2", 20), "streaming|2");
    let load = Command::new("pgbench")
        .args(["-h", "127.0.0.1", "-p", &s1.port.to_string(), "-U", "postgres", "-c", "4", "-j", "2", "-T", "2"])
        .arg("postgres")
        .output()
        .unwrap();
    assert!(load.status.success(), "{}", String::from_utf8_lossy(&load.stderr));
    let end = s1.sql("select pg_current_wal_lsn()");
    assert_eq!(s2.wait_for("select pg_last_wal_replay_lsn()", &end, 10), end);
    assert_eq!(s2.pid(), pid, "the standby restarted");
    assert_eq!(s2.sql("select count(*) from after_promotion"), "500");
    assert_eq!(dump(&s1), dump(&s2));
    assert_eq!(s1.sql("select application_name, state from pg_stat_replication"), "s2|streaming");

    // pg_promote() from SQL; a primary refuses it.
    let err = s1.try_sql("select pg_promote()").unwrap_err();
    assert!(err.contains("recovery is not in progress"), "{err}");
    assert!(s1.stop("immediate"));
    assert_eq!(s2.sql("select pg_promote(true, 30)"), "t");
    assert_eq!(s2.sql("select pg_is_in_recovery()"), "f");
    s2.sql("insert into after_promotion values (501)");
    assert!(s2.dir.join("pg_wal").join("00000003.history").exists());
    // Stopped without a checkpoint and restarted, the twice-promoted server replays across its three
    // timelines, through the switch segments promotion renamed to each new timeline's name.
    assert!(s2.stop("immediate"));
    s2.start(&[]);
    assert_eq!(s2.sql("select count(*) from after_promotion"), "501");
}
