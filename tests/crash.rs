//! Crash recovery under load: kill -9 the server while pgbench runs and a tracking client inserts rows
//! one commit at a time; after a restart the balances still add up and every acknowledged row is there.

mod common;

use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use common::{pgbench, TestServer};

#[test]
fn kill_during_pgbench_loses_no_acknowledged_commit() {
    let mut server = TestServer::start();
    pgbench(server.port, &["-i", "-s", "1"]);
    server.psql("CREATE TABLE track (id int PRIMARY KEY)");

    let bench = Command::new("pgbench")
        .args([
            "-h",
            "127.0.0.1",
            "-p",
            &server.port.to_string(),
            "-U",
            "postgres",
            "-c",
            "8",
            "-j",
            "2",
            "-T",
            "60",
            "-n",
            "postgres",
        ])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("start pgbench");

    // The tracking client: one autocommit INSERT at a time, remembering each acknowledged id.
    let conninfo = server.conninfo();
    let tracker = std::thread::spawn(move || {
        let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().expect("runtime");
        rt.block_on(async move {
            let (client, conn) = tokio_postgres::connect(&conninfo, tokio_postgres::NoTls).await.expect("connect");
            tokio::spawn(async move {
                let _ = conn.await;
            });
            let mut acked = Vec::new();
            let deadline = Instant::now() + Duration::from_secs(60);
            for id in 0..1_000_000i32 {
                if Instant::now() > deadline {
                    break;
                }
                match client.execute("INSERT INTO track VALUES ($1)", &[&id]).await {
                    Ok(_) => acked.push(id),
                    Err(_) => break,
                }
            }
            acked
        })
    });

    std::thread::sleep(Duration::from_secs(4));
    server.kill();
    let acked = tracker.join().expect("tracker");
    let mut bench = bench;
    let _ = bench.kill();
    let _ = bench.wait();
    assert!(!acked.is_empty(), "the tracking client saw no commit");

    server.launch();
    let sums = server.psql(
        "select (select sum(abalance) from pgbench_accounts), (select sum(bbalance) from pgbench_branches), \
         (select sum(tbalance) from pgbench_tellers), (select coalesce(sum(delta), 0) from pgbench_history)",
    );
    let v: Vec<&str> = sums.split('|').collect();
    assert!(v.len() == 4 && v[0] == v[1] && v[0] == v[2] && v[0] == v[3], "sums disagree after the crash: {sums}");
    let present: usize = server
        .psql(&format!("select count(*) from track where id <= {}", acked.last().copied().unwrap_or(0)))
        .parse()
        .unwrap_or(0);
    assert_eq!(present, acked.len(), "acknowledged commits were lost");
    server.stop();
}
