//! psql 15 against a real server: a script with DDL, DML and `\copy` under ON_ERROR_STOP, and the
//! catalog queries behind `\dt` and `\d TABLE`; psql, pgbench and a replication connection through the
//! Unix-domain socket.

mod common;

use std::os::unix::fs::{FileTypeExt, PermissionsExt};
use std::process::Command;

use common::{pgbench_number, psql_output, tandem_bin, TestServer};

/// psql against a socket directory, tuples only.
fn psql_socket(sock: &std::path::Path, port: u16, conn_extra: &str, sql: &str) -> std::process::Output {
    let conninfo = format!("host={} port={port} user=postgres dbname=postgres {conn_extra}", sock.display());
    Command::new("psql")
        .args(["-X", "-At", "-v", "ON_ERROR_STOP=1", "-d", &conninfo, "-c", sql])
        .env("PGCONNECT_TIMEOUT", "10")
        .output()
        .expect("run psql")
}

#[test]
fn unix_socket_sessions() {
    let mut server = TestServer::start();
    server.stop();
    let sock = server.dir.path().join("sock");
    std::fs::create_dir(&sock).unwrap();
    let toml = server.data().join("tandem.toml");
    let mut text = std::fs::read_to_string(&toml).unwrap();
    text.push_str(&format!("unix_socket_directories = '{}'\n", sock.display()));
    std::fs::write(&toml, text).unwrap();
    server.launch();
    let file = sock.join(format!(".s.PGSQL.{}", server.port));
    let meta = std::fs::symlink_metadata(&file).expect("the socket file exists");
    assert!(meta.file_type().is_socket());
    assert_eq!(meta.permissions().mode() & 0o777, 0o777, "every local user may connect, as in PostgreSQL");
    assert!(server.log().contains("listening on a Unix-domain socket"), "{}", server.log());
    assert!(!server.log().contains('\u{1b}'), "no terminal colors in a log file: {}", server.log());

    let out = psql_socket(
        &sock,
        server.port,
        "",
        "CREATE TABLE t (k int PRIMARY KEY); INSERT INTO t VALUES (1), (2); SELECT sum(k) FROM t",
    );
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    assert_eq!(String::from_utf8_lossy(&out.stdout).trim(), "CREATE TABLE\nINSERT 0 2\n3");

    // pgbench through the socket, as it connects by default on one machine.
    let host = sock.to_str().unwrap();
    let port = server.port.to_string();
    let run = |args: &[&str]| {
        let out = Command::new("pgbench")
            .args(["-h", host, "-p", &port, "-U", "postgres"])
            .args(args)
            .arg("postgres")
            .output()
            .unwrap();
        let text = format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
        assert!(out.status.success(), "pgbench {args:?}: {text}");
        text
    };
    run(&["-i", "-q", "-s", "1"]);
    let out = run(&["-c", "4", "-j", "2", "-t", "50"]);
    assert!(out.contains("number of transactions actually processed: 200/200"), "{out}");
    assert_eq!(pgbench_number(&out, "number of failed transactions: "), 0.0, "{out}");

    // tandem's own tools take a socket directory as host, as libpq does: status, and a standby whose base
    // backup and WAL receiver go through the primary's socket.
    let out = Command::new(tandem_bin()).args(["status", "-h", host, "-p", &port]).output().unwrap();
    let text = String::from_utf8_lossy(&out.stdout).to_string();
    assert!(out.status.success() && text.contains("primary"), "{text}{}", String::from_utf8_lossy(&out.stderr));
    let standby = server.dir.path().join("standby");
    let standby_port = common::free_port().to_string();
    let out = Command::new(tandem_bin())
        .args(["init-standby", "-h", host, "-p", &port, "-D"])
        .arg(&standby)
        .args(["--port", &standby_port, "--name", "viasocket"])
        .output()
        .unwrap();
    assert!(out.status.success(), "init-standby through the socket: {}", String::from_utf8_lossy(&out.stderr));
    assert!(std::fs::read_to_string(standby.join("tandem.toml")).unwrap().contains(&format!("host={host} ")));
    let out = psql_socket(
        &sock,
        server.port,
        "",
        "SELECT state, client_addr IS NULL, client_port FROM pg_stat_replication WHERE application_name = 'viasocket'",
    );
    assert_eq!(
        String::from_utf8_lossy(&out.stdout).trim(),
        "streaming|t|-1",
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let stopped = Command::new(tandem_bin()).args(["stop", "-D"]).arg(&standby).output().unwrap();
    assert!(stopped.status.success(), "{}", String::from_utf8_lossy(&stopped.stderr));

    // A replication connection through the socket.
    let out = psql_socket(&sock, server.port, "replication=true", "IDENTIFY_SYSTEM");
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    assert!(String::from_utf8_lossy(&out.stdout).contains("|1|"), "{}", String::from_utf8_lossy(&out.stdout));

    // A fast stop removes the socket file; a crash leaves it, and the next start replaces it.
    server.stop();
    assert!(!file.exists(), "a fast stop removes the socket");
    server.launch();
    server.kill();
    assert!(file.exists(), "SIGKILL leaves the socket file behind");
    server.launch();
    let out = psql_socket(&sock, server.port, "", "SELECT count(*) FROM t");
    assert_eq!(String::from_utf8_lossy(&out.stdout).trim(), "2", "{}", String::from_utf8_lossy(&out.stderr));

    // A second server cannot take a live server's socket (same directory, same port, another address).
    let other = server.dir.path().join("other");
    let out = Command::new(tandem_bin())
        .args(["init", "-D"])
        .arg(&other)
        .args(["--port", &port, "--listen", "127.0.0.2"])
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let toml = other.join("tandem.toml");
    let mut text = std::fs::read_to_string(&toml).unwrap();
    text.push_str(&format!("unix_socket_directories = '{}'\n", sock.display()));
    std::fs::write(&toml, text).unwrap();
    let out = Command::new(tandem_bin()).args(["start", "-D"]).arg(&other).output().unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success(), "the second server must not start: {err}");
    assert!(err.contains("another server is listening"), "{err}");
    let out = psql_socket(&sock, server.port, "", "SELECT 1");
    assert!(
        out.status.success(),
        "the first server still answers on its socket: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

#[test]
fn psql_script_and_describe() {
    let server = TestServer::start();
    let dir = server.dir.path();
    let csv = dir.join("items.csv");
    std::fs::write(&csv, "id,name,price\n10,widget,2.50\n11,\"gadget, large\",10.00\n").expect("write csv");
    let out_csv = dir.join("out.csv");
    let script = dir.join("script.sql");
    std::fs::write(
        &script,
        format!(
            r#"
CREATE TABLE items (id integer PRIMARY KEY, name varchar(40) NOT NULL, price numeric(10,2) DEFAULT 0, note text);
CREATE TABLE tags (item_id int, tag char(8), UNIQUE (item_id, tag));
CREATE INDEX items_name_idx ON items (name);
INSERT INTO items (id, name, price) VALUES (1, 'apple', 1.25), (2, 'pear', 0.75);
INSERT INTO items (id, name) VALUES (3, 'plum');
UPDATE items SET price = price * 2 WHERE id = 1;
DELETE FROM items WHERE id = 2;
\copy items (id, name, price) from '{csv}' with (format csv, header true)
\copy (select id, name from items order by id) to '{out}' csv
INSERT INTO tags VALUES (1, 'fruit'), (3, 'fruit');
BEGIN;
ALTER TABLE items ADD COLUMN stock int DEFAULT 5;
ALTER TABLE items RENAME COLUMN note TO remark;
COMMIT;
SELECT id, name, price, stock FROM items ORDER BY id;
"#,
            csv = csv.display(),
            out = out_csv.display()
        ),
    )
    .expect("write script");
    let out = psql_output(server.port, &["-v", "ON_ERROR_STOP=1", "-At", "-f", script.to_str().unwrap_or_default()]);
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "script failed: {}\n{}", String::from_utf8_lossy(&out.stderr), stdout);
    assert!(stdout.contains("1|apple|2.50|5\n3|plum|0.00|5\n10|widget|2.50|5\n11|gadget, large|10.00|5"), "{stdout}");
    let exported = std::fs::read_to_string(&out_csv).unwrap_or_default();
    assert_eq!(exported, "1,apple\n3,plum\n10,widget\n11,\"gadget, large\"\n");

    let dt = psql_output(server.port, &["-c", "\\dt"]);
    let dt = String::from_utf8_lossy(&dt.stdout);
    assert!(dt.contains(" public | items | table | postgres"), "{dt}");
    assert!(dt.contains(" public | tags  | table | postgres"), "{dt}");

    let d = psql_output(server.port, &["-c", "\\d items"]);
    let text = String::from_utf8_lossy(&d.stdout);
    let err = String::from_utf8_lossy(&d.stderr);
    assert!(d.status.success() && err.is_empty(), "{err}");
    for line in [
        "Table \"public.items\"",
        " id     | integer               |           | not null | ",
        " name   | character varying(40) |           | not null | ",
        " price  | numeric(10,2)         |           |          | 0",
        " remark | text                  |           |          | ",
        " stock  | integer               |           |          | 5",
        "\"items_pkey\" PRIMARY KEY, btree (id)",
        "\"items_name_idx\" btree (name)",
    ] {
        assert!(text.contains(line), "missing {line:?} in:\n{text}");
    }
    let d = psql_output(server.port, &["-c", "\\d tags"]);
    let text = String::from_utf8_lossy(&d.stdout);
    assert!(text.contains(" tag     | character(8) |"), "{text}");
    assert!(text.contains("\"tags_item_id_tag_key\" UNIQUE CONSTRAINT, btree (item_id, tag)"), "{text}");

    // \l lists the database with psql 15's columns (locale provider, ICU locale).
    let l = psql_output(server.port, &["-c", "\\l"]);
    let text = String::from_utf8_lossy(&l.stdout);
    assert!(l.status.success(), "{}", String::from_utf8_lossy(&l.stderr));
    assert!(text.contains(" postgres | postgres | UTF8 ") && text.contains("| libc "), "{text}");

    // The verbose forms and the other listings a user tries first run without an error.
    let ok = |meta: &str| {
        let o = psql_output(server.port, &["-c", meta]);
        let err = String::from_utf8_lossy(&o.stderr).to_string();
        assert!(o.status.success() && err.is_empty(), "{meta}: {err}");
        String::from_utf8_lossy(&o.stdout).to_string()
    };
    let text = ok("\\d+ items");
    for line in [
        " id     | integer               |           | not null |         | plain    |",
        " name   | character varying(40) |           | not null |         | extended |",
        " price  | numeric(10,2)         |           |          | 0       | main     |",
        "\"items_name_idx\" btree (name)",
        "Access method: heap",
    ] {
        assert!(text.contains(line), "missing {line:?} in:\n{text}");
    }
    let text = ok("\\du");
    assert!(text.contains(" postgres  | Superuser, Create role, Create DB, Replication, Bypass RLS | {}"), "{text}");
    assert!(ok("\\dt+").contains(" public | items | table | postgres | permanent   | heap "));
    assert!(ok("\\l+").contains("| pg_default |"));
    assert!(ok("\\db").contains(" pg_default | postgres | "));
    assert!(ok("\\df").contains("(0 rows)"));
    for meta in ["\\di+", "\\dn+", "\\dp", "\\dx", "\\dT", "\\dD", "\\dS+ tags"] {
        ok(meta);
    }

    // What those listings are built from: ARRAY(subquery) (correlated, too), unnest in FROM, and
    // pg_size_pretty's units.
    let q = |sql: &str| {
        let o = psql_output(server.port, &["-At", "-c", sql]);
        assert!(o.status.success(), "{sql}: {}", String::from_utf8_lossy(&o.stderr));
        String::from_utf8_lossy(&o.stdout).trim_end().to_string()
    };
    assert_eq!(q("SELECT array(SELECT name FROM items WHERE id < 4 ORDER BY id)"), "{apple,plum}");
    assert_eq!(q("SELECT array(SELECT NULL::text UNION ALL SELECT 'a b,c')"), "{NULL,\"a b,c\"}");
    assert_eq!(q("SELECT array(SELECT 1 WHERE false)"), "{}");
    assert_eq!(
        q("SELECT relname, (SELECT count(*) FROM unnest(array(SELECT attname FROM pg_attribute a \
           WHERE a.attrelid = c.oid)) u) FROM pg_class c WHERE relkind = 'r' ORDER BY 1"),
        "items|5\ntags|2"
    );
    assert_eq!(q("SELECT coalesce(x, 'null') FROM unnest('{a,\"b c\",NULL}') x"), "a\nb c\nnull");
    assert_eq!(q("SELECT count(*) FROM unnest(NULL::text)"), "0");
    assert_eq!(
        q("SELECT pg_size_pretty(123) || '|' || pg_size_pretty(10240) || '|' || pg_size_pretty(1048576) || '|' \
           || pg_size_pretty(10485760) || '|' || pg_size_pretty(-20000)"),
        "123 bytes|10 kB|1024 kB|10 MB|-20 kB"
    );
    let size: i64 = q("SELECT pg_database_size('postgres')").parse().unwrap_or(-1);
    assert!(size > 0, "pg_database_size is the latest snapshot's size: {size}");
    let bad = psql_output(server.port, &["-c", "SELECT * FROM unnest('abc')"]);
    assert!(String::from_utf8_lossy(&bad.stderr).contains("malformed array literal: \"abc\""));
}
