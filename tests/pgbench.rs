//! pgbench 15 against a real `tandem start` process: both init methods, tpcb-like in every query mode,
//! select-only, and the invariant that every balance change is accounted for exactly once.

mod common;

use common::{pgbench, pgbench_number, TestServer};

/// Checks that the balances of accounts, branches and tellers and the history all add up, and that the
/// history has one row per transaction pgbench reported.
fn check_consistency(server: &TestServer, transactions: f64) {
    let sums = server.psql(
        "select (select coalesce(sum(abalance), 0) from pgbench_accounts), (select coalesce(sum(bbalance), 0) from pgbench_branches), \
         (select coalesce(sum(tbalance), 0) from pgbench_tellers), (select coalesce(sum(delta), 0) from pgbench_history), \
         (select count(*) from pgbench_history)",
    );
    let v: Vec<&str> = sums.split('|').collect();
    assert_eq!(v.len(), 5, "unexpected result {sums}");
    assert_eq!(v[0], v[1], "sum(abalance) != sum(bbalance): {sums}");
    assert_eq!(v[0], v[2], "sum(abalance) != sum(tbalance): {sums}");
    assert_eq!(v[0], v[3], "sum(abalance) != sum(delta): {sums}");
    assert_eq!(v[4].parse::<f64>().ok(), Some(transactions), "history rows != transactions: {sums}");
}

fn run_tpcb(server: &TestServer, mode: &str) -> f64 {
    let out = pgbench(server.port, &["-c", "8", "-j", "2", "-T", "10", "-M", mode]);
    assert_eq!(pgbench_number(&out, "number of failed transactions:"), 0.0, "{out}");
    let n = pgbench_number(&out, "number of transactions actually processed:");
    assert!(n > 0.0, "no transactions in mode {mode}:\n{out}");
    eprintln!("tpcb-like -M {mode}: {n} transactions, tps {}", pgbench_number(&out, "tps ="));
    n
}

#[test]
fn pgbench_end_to_end() {
    let mut server = TestServer::start();

    // Default init steps (dtgvp): client-side data through COPY ... WITH (freeze on).
    pgbench(server.port, &["-i", "-s", "2"]);
    assert_eq!(server.psql("select count(*) from pgbench_accounts"), "200000");
    assert_eq!(server.psql("select count(*) from pgbench_branches"), "2");
    let n = run_tpcb(&server, "simple");
    check_consistency(&server, n);

    // Server-side generation: INSERT ... SELECT ... FROM generate_series.
    pgbench(server.port, &["-i", "-I", "dtGvp", "-s", "2"]);
    assert_eq!(server.psql("select count(*) from pgbench_accounts"), "200000");
    assert_eq!(server.psql("select count(*), min(filler), max(bid) from pgbench_tellers"), format!("20||2"));
    let n = run_tpcb(&server, "extended");
    check_consistency(&server, n);

    pgbench(server.port, &["-i", "-s", "2"]);
    let n = run_tpcb(&server, "prepared");
    check_consistency(&server, n);

    let out = pgbench(server.port, &["-c", "8", "-j", "2", "-T", "5", "-S", "-n"]);
    assert_eq!(pgbench_number(&out, "number of failed transactions:"), 0.0, "{out}");
    check_consistency(&server, n);

    // The data survive a clean restart.
    server.stop();
    server.launch();
    check_consistency(&server, n);
    server.stop();
}
