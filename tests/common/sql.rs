//! Small tokio-postgres helpers for the SQL tests: a connection to a [`TestServer`](super::TestServer), and
//! a simple query's value, rows, row count or SQLSTATE as text.

use tokio_postgres::{Client, NoTls, SimpleQueryMessage};

/// A session on the server, its connection driven on the runtime.
pub async fn connect(server: &super::TestServer) -> Client {
    let (client, conn) = tokio_postgres::connect(&server.conninfo(), NoTls).await.expect("connect");
    tokio::spawn(async move {
        let _ = conn.await;
    });
    client
}

/// The single value of a simple query, as text.
pub async fn one(c: &Client, sql: &str) -> String {
    let msgs = c.simple_query(sql).await.unwrap_or_else(|e| panic!("{sql}: {e:?}"));
    msgs.into_iter()
        .find_map(|m| match m {
            SimpleQueryMessage::Row(r) => Some(r.get(0).map(str::to_string)),
            _ => None,
        })
        .flatten()
        .unwrap_or_else(|| format!("<no value: {sql}>"))
}

/// The rows of a simple query, each row's values joined with '|' (NULL as empty).
pub async fn rows(c: &Client, sql: &str) -> Vec<String> {
    let msgs = c.simple_query(sql).await.unwrap_or_else(|e| panic!("{sql}: {e:?}"));
    msgs.into_iter()
        .filter_map(|m| match m {
            SimpleQueryMessage::Row(r) => {
                Some((0..r.len()).map(|i| r.get(i).unwrap_or("")).collect::<Vec<_>>().join("|"))
            }
            _ => None,
        })
        .collect()
}

/// The row count a statement reports.
pub async fn count(c: &Client, sql: &str) -> u64 {
    let msgs = c.simple_query(sql).await.unwrap_or_else(|e| panic!("{sql}: {e:?}"));
    msgs.into_iter()
        .find_map(|m| match m {
            SimpleQueryMessage::CommandComplete(n) => Some(n),
            _ => None,
        })
        .unwrap_or_else(|| panic!("{sql}: no command tag"))
}

/// The SQLSTATE and message of a statement's error ("00000" if it succeeds).
pub async fn error(c: &Client, sql: &str) -> (String, String) {
    match c.simple_query(sql).await {
        Ok(_) => ("00000".into(), String::new()),
        Err(e) => match e.as_db_error() {
            Some(d) => (d.code().code().to_string(), d.message().to_string()),
            None => (format!("{e:?}"), String::new()),
        },
    }
}
