//! The client side of the PostgreSQL protocol, as tandem's own tools use it: the WAL receiver, the base
//! backup client, `init-standby` and `tandem status`.
//!
//! Only the simple query protocol, text results and the startup handshake (trust authentication). Every
//! field a server sends is bounds-checked: a misbehaving server gives an error, never a panic.

use std::io::{BufReader, Write};
use std::time::Duration;

use crate::error::{Error, Result, SqlState};
use crate::replication::protocol::{io, read_message, Msg};
use crate::server::stream::Stream;

/// A result row as text (None is NULL).
pub type TextRow = Vec<Option<String>>;

/// A StartupMessage (protocol 3.0) with the given parameters.
pub fn startup_packet(params: &[(&str, &str)]) -> Vec<u8> {
    let mut body = 196608u32.to_be_bytes().to_vec();
    for (k, v) in params {
        body.extend_from_slice(k.as_bytes());
        body.push(0);
        body.extend_from_slice(v.as_bytes());
        body.push(0);
    }
    body.push(0);
    let mut packet = ((body.len() + 4) as u32).to_be_bytes().to_vec();
    packet.extend(body);
    packet
}

fn malformed(what: &str) -> Error {
    Error::new(SqlState::PROTOCOL_VIOLATION, format!("malformed {what} from the server"))
}

/// The values of a DataRow.
pub fn data_row(body: &[u8]) -> Result<TextRow> {
    let bad = || malformed("DataRow");
    let n = i16::from_be_bytes([*body.first().ok_or_else(bad)?, *body.get(1).ok_or_else(bad)?]).max(0) as usize;
    let mut at = 2;
    let mut row = Vec::with_capacity(n);
    for _ in 0..n {
        let len = i32::from_be_bytes(body.get(at..at + 4).ok_or_else(bad)?.try_into().map_err(|_| bad())?);
        at += 4;
        if len < 0 {
            row.push(None);
            continue;
        }
        let value = body.get(at..at + len as usize).ok_or_else(bad)?;
        row.push(Some(String::from_utf8_lossy(value).into_owned()));
        at += len as usize;
    }
    Ok(row)
}

/// The column names of a RowDescription.
pub fn row_names(body: &[u8]) -> Result<Vec<String>> {
    let bad = || malformed("RowDescription");
    let n = u16::from_be_bytes([*body.first().ok_or_else(bad)?, *body.get(1).ok_or_else(bad)?]) as usize;
    let mut at = 2;
    let mut names = Vec::with_capacity(n);
    for _ in 0..n {
        let len = body.get(at..).ok_or_else(bad)?.iter().position(|&b| b == 0).ok_or_else(bad)?;
        names.push(String::from_utf8_lossy(&body[at..at + len]).into_owned());
        at += len + 1 + 18;
    }
    Ok(names)
}

/// An ErrorResponse as an error, keeping the server's message, detail and (for the codes tandem acts on)
/// SQLSTATE; other codes become 08006, a failure of the connection's purpose.
pub fn server_error(body: &[u8]) -> Error {
    let field = |tag: u8| {
        body.split(|b| *b == 0).find(|f| f.first() == Some(&tag)).map(|f| String::from_utf8_lossy(&f[1..]).into_owned())
    };
    let code = match field(b'C').as_deref() {
        Some("58P01") => SqlState("58P01"),
        Some("22023") => SqlState::INVALID_PARAMETER_VALUE,
        Some("42710") => SqlState::DUPLICATE_OBJECT,
        Some("42704") => SqlState::UNDEFINED_OBJECT,
        Some("55006") => SqlState::OBJECT_IN_USE,
        Some("57P03") => SqlState::CANNOT_CONNECT_NOW,
        _ => SqlState("08006"),
    };
    let mut e = Error::new(code, format!("error from {}: {}", "the server", field(b'M').unwrap_or_default()));
    if let Some(d) = field(b'D') {
        e = e.with_detail(d);
    }
    if let Some(h) = field(b'H') {
        e = e.with_hint(h);
    }
    e
}

/// Reads results until ReadyForQuery (or, with `stop_at_copy`, a CopyOutResponse): column names and rows.
pub fn read_results(input: &mut BufReader<Stream>, stop_at_copy: bool) -> Result<(Vec<String>, Vec<TextRow>)> {
    let mut names = Vec::new();
    let mut rows = Vec::new();
    let mut error = None;
    loop {
        let Some((kind, body)) = read_message(input, 64 << 20)? else {
            return Err(Error::new(SqlState("08006"), "the server closed the connection"));
        };
        match kind {
            b'T' => names = row_names(&body)?,
            b'D' => rows.push(data_row(&body)?),
            b'E' if stop_at_copy => return Err(server_error(&body)),
            b'E' => error = Some(server_error(&body)),
            b'Z' => return error.map_or(Ok((names, rows)), Err),
            b'H' if stop_at_copy => return Ok((names, rows)),
            _ => {}
        }
    }
}

/// Quotes a string as an SQL literal.
pub fn literal(s: &str) -> String {
    format!("'{}'", s.replace('\'', "''"))
}

/// A connection to a PostgreSQL-protocol server.
pub struct Conn {
    pub out: Stream,
    pub input: BufReader<Stream>,
}

impl Conn {
    /// Connects and completes the startup handshake.
    pub fn connect(host: &str, port: u16, params: &[(&str, &str)]) -> Result<Conn> {
        Self::connect_timeout(host, port, params, Duration::from_secs(10))
    }

    /// Connects like [`connect`](Self::connect), giving up after `timeout` (for connecting and for each
    /// read of the handshake).
    pub fn connect_timeout(host: &str, port: u16, params: &[(&str, &str)], timeout: Duration) -> Result<Conn> {
        let mut out = Stream::connect(host, port, timeout, "the server")?;
        let _ = out.set_read_timeout(Some(timeout));
        out.write_all(&startup_packet(params)).map_err(io)?;
        let mut input = BufReader::with_capacity(1 << 20, out.try_clone().map_err(io)?);
        loop {
            match read_message(&mut input, 1 << 20)? {
                Some((b'Z', _)) => break,
                Some((b'E', body)) => return Err(server_error(&body)),
                Some(_) => {}
                None => return Err(Error::new(SqlState("08006"), "the server closed the connection")),
            }
        }
        let _ = out.set_read_timeout(None);
        Ok(Conn { out, input })
    }

    /// Connects as a physical replication client.
    pub fn replication(host: &str, port: u16, application_name: &str) -> Result<Conn> {
        Self::connect(
            host,
            port,
            &[
                ("user", "tandem"),
                ("database", "replication"),
                ("replication", "true"),
                ("application_name", application_name),
            ],
        )
    }

    /// Sends a simple query without reading its results.
    pub fn send_query(&mut self, sql: &str) -> Result<()> {
        self.out.write_all(&Msg::new(b'Q').cstr(sql).finish()).map_err(io)
    }

    /// Runs a simple query: column names and rows.
    pub fn query(&mut self, sql: &str) -> Result<(Vec<String>, Vec<TextRow>)> {
        self.send_query(sql)?;
        read_results(&mut self.input, false)
    }

    /// An SQL session as `postgres` on database `postgres`, named `application`: what tandem's own commands
    /// open. With a `timeout`, connecting and every reply wait at most that long.
    pub fn session(host: &str, port: u16, application: &str, timeout: Option<Duration>) -> Result<Conn> {
        let params = [("user", "postgres"), ("database", "postgres"), ("application_name", application)];
        let c = Self::connect_timeout(host, port, &params, timeout.unwrap_or(Duration::from_secs(10)))?;
        if timeout.is_some() {
            c.out.set_read_timeout(timeout).map_err(io)?;
        }
        Ok(c)
    }

    /// Runs a query and returns the first column of its first row (None without a row, or for NULL).
    pub fn value(&mut self, sql: &str) -> Result<Option<String>> {
        let (_, rows) = self.query(sql)?;
        Ok(rows.into_iter().next().and_then(|r| r.into_iter().next().flatten()))
    }

    /// Says goodbye.
    pub fn close(mut self) {
        let _ = self.out.write_all(&Msg::new(b'X').finish());
    }
}
