//! Zero-loss failover under real faults. Each round: a primary with a synchronous standby; a writer commits
//! numbered rows as fast as it can, a reader records every row it sees, and pgbench tpcb-like runs beside
//! them; the primary is killed with SIGKILL at a random moment and the standby is promoted with
//! `tandem promote`. Every acknowledged row and every row the reader saw must be on the new primary, and
//! pgbench's balances must agree. The promoted standby is the next round's primary (with a fresh standby
//! made by `tandem init-standby`), so the rounds also walk through timelines 1, 2, 3, ...
//!
//! `TANDEM_FAILOVER_ROUNDS` sets the number of rounds (10 by default; `scripts/failover-soak` runs 100).

mod common;

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use common::{Node, TempDir};
use tandem::replication::client::Conn;

fn connect(port: u16) -> Option<Conn> {
    Conn::connect("127.0.0.1", port, &[("user", "postgres"), ("database", "postgres")]).ok()
}

/// A cheap pseudo-random number (no dependency): the clock's nanoseconds, mixed.
fn random(n: u64) -> u64 {
    let t = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap_or_default().as_nanos() as u64;
    (t ^ (t >> 17)).wrapping_mul(0x9E37_79B9_7F4A_7C15) % n
}

fn set_sync(primary: &Node) {
    primary.sql("alter system set synchronous_standby_names = '*'");
    primary.sql("select pg_reload_conf()");
}

#[test]
fn zero_loss_failover_rounds() {
    let rounds: usize = std::env::var("TANDEM_FAILOVER_ROUNDS").ok().and_then(|v| v.parse().ok()).unwrap_or(10);
    let tmp = TempDir::new("failover");
    let mut primary = Node::primary(tmp.path().join("node0"), &[]);
    let init = std::process::Command::new("pgbench")
        .args(["-h", "127.0.0.1", "-p", &primary.port.to_string(), "-U", "postgres", "-i", "-s", "1", "-q"])
        .arg("postgres")
        .output()
        .unwrap();
    assert!(init.status.success(), "{}", String::from_utf8_lossy(&init.stderr));
    primary.sql("create table numbered (n bigint primary key)");
    let mut standby = Node::standby(&primary, tmp.path().join("node1"), "mirror0", &[]);
    let mut next_row: i64 = 1;
    let mut promote_ms = Vec::new();
    for round in 0..rounds {
        set_sync(&primary);
        primary.wait_for("select sync_state from pg_stat_replication", "sync", 15);
        let stop = Arc::new(AtomicBool::new(false));
        let acked = Arc::new(Mutex::new(Vec::new()));
        let seen = Arc::new(Mutex::new(Vec::new()));
        let writer = {
            let (stop, acked, port, first) = (stop.clone(), acked.clone(), primary.port, next_row);
            std::thread::spawn(move || {
                let Some(mut c) = connect(port) else { return };
                let mut n = first;
                while !stop.load(Ordering::Acquire) {
                    if c.query(&format!("insert into numbered values ({n})")).is_err() {
                        return;
                    }
                    acked.lock().unwrap().push(n);
                    n += 1;
                }
            })
        };
        let reader = {
            let (stop, seen, port, first) = (stop.clone(), seen.clone(), primary.port, next_row);
            std::thread::spawn(move || {
                let Some(mut c) = connect(port) else { return };
                let mut last = first - 1;
                while !stop.load(Ordering::Acquire) {
                    let Ok((_, rows)) = c.query(&format!("select n from numbered where n > {last} order by n")) else {
                        return;
                    };
                    for r in rows {
                        if let Some(n) = r.first().cloned().flatten().and_then(|v| v.parse::<i64>().ok()) {
                            seen.lock().unwrap().push(n);
                            last = n;
                        }
                    }
                }
            })
        };
        let pgbench = std::process::Command::new("pgbench")
            .args(["-h", "127.0.0.1", "-p", &primary.port.to_string(), "-U", "postgres", "-c", "4", "-j", "2"])
            // -n: no vacuum, and so no truncation of pgbench_history, which must add up across rounds.
            .args(["-n", "-T", "30", "postgres"])
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .spawn()
            .unwrap();
        std::thread::sleep(Duration::from_millis(300 + random(1200)));
        primary.signal(libc::SIGKILL);
        stop.store(true, Ordering::Release);
        let _ = writer.join();
        let _ = reader.join();
        let mut pgbench = pgbench;
        let _ = pgbench.wait();

        let started = Instant::now();
        let out = std::process::Command::new(common::tandem_bin())
            .args(["promote", "-D"])
            .arg(&standby.dir)
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "round {round}: promote failed: {}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        promote_ms.push(started.elapsed().as_secs_f64() * 1000.0);
        assert_eq!(standby.sql("select pg_is_in_recovery()"), "f");

        // Every acknowledged row and every row a reader saw is on the new primary.
        let acked = acked.lock().unwrap().clone();
        let seen = seen.lock().unwrap().clone();
        let present: std::collections::HashSet<i64> =
            standby.sql("select n from numbered").lines().filter_map(|l| l.trim().parse().ok()).collect();
        let lost: Vec<i64> = acked.iter().chain(&seen).filter(|n| !present.contains(n)).copied().collect();
        assert!(lost.is_empty(), "round {round}: rows acknowledged or seen but lost in failover: {lost:?}");
        let sums = standby.sql(
            "select (select sum(abalance) from pgbench_accounts), (select sum(bbalance) from pgbench_branches), \
             (select sum(tbalance) from pgbench_tellers), (select coalesce(sum(delta), 0) from pgbench_history)",
        );
        let parts: Vec<&str> = sums.split('|').collect();
        assert!(parts.windows(2).all(|w| w[0] == w[1]), "round {round}: pgbench sums disagree: {sums}");
        eprintln!(
            "round {round}: {} rows acknowledged, {} seen, promoted in {:.0} ms, sums {}",
            acked.len(),
            seen.len(),
            promote_ms.last().unwrap(),
            parts[0]
        );
        next_row = present.iter().max().copied().unwrap_or(0) + 1;

        // The promoted standby is the next primary; the dead one is replaced by a fresh standby.
        let old = std::mem::replace(&mut primary, standby);
        drop(old);
        let name = format!("mirror{}", round + 1);
        standby = Node::standby(&primary, tmp.path().join(format!("node{}", round + 2)), &name, &[]);
    }
    promote_ms.sort_by(|a, b| a.partial_cmp(b).unwrap());
    eprintln!(
        "{rounds} failovers: promote (command to writable) min {:.0} ms, median {:.0} ms, max {:.0} ms",
        promote_ms[0],
        promote_ms[promote_ms.len() / 2],
        promote_ms[promote_ms.len() - 1]
    );
}
