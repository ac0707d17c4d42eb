//! The PostgreSQL protocol as a replication connection speaks it: framing, the few backend messages a
//! WAL sender sends, the replication command grammar, and the CopyBoth sub-messages.
//!
//! Replication connections get their own small codec rather than the SQL server's: after
//! START_REPLICATION both directions carry CopyData at once (WAL one way, status updates the other),
//! which a request-response codec cannot express. Layouts follow PostgreSQL 15's walsender.c and
//! receivelog.c; `../shared/reference/postgres-clients.md` has them byte by byte.

use std::io::{Read, Write};

use crate::error::{Error, Result, SqlState};
use crate::wal::Lsn;

/// Microseconds between the Unix epoch and PostgreSQL's (2000-01-01).
const PG_EPOCH_OFFSET_MICROS: i64 = 946_684_800_000_000;

/// Now, in PostgreSQL timestamp units (µs since 2000-01-01 UTC).
pub fn now() -> i64 {
    let d = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap_or_default();
    d.as_micros() as i64 - PG_EPOCH_OFFSET_MICROS
}

/// Builds one backend (or frontend) message: type byte, length, body.
pub struct Msg {
    buf: Vec<u8>,
}

impl Msg {
    pub fn new(kind: u8) -> Msg {
        Msg { buf: vec![kind, 0, 0, 0, 0] }
    }

    pub fn u8(mut self, v: u8) -> Msg {
        self.buf.push(v);
        self
    }

    pub fn i16(mut self, v: i16) -> Msg {
        self.buf.extend_from_slice(&v.to_be_bytes());
        self
    }

    pub fn i32(mut self, v: i32) -> Msg {
        self.buf.extend_from_slice(&v.to_be_bytes());
        self
    }

    pub fn i64(mut self, v: i64) -> Msg {
        self.buf.extend_from_slice(&v.to_be_bytes());
        self
    }

    pub fn bytes(mut self, v: &[u8]) -> Msg {
        self.buf.extend_from_slice(v);
        self
    }

    /// A NUL-terminated string.
    pub fn cstr(mut self, v: &str) -> Msg {
        self.buf.extend_from_slice(v.as_bytes());
        self.buf.push(0);
        self
    }

    /// The finished message.
    pub fn finish(mut self) -> Vec<u8> {
        let len = (self.buf.len() - 1) as u32;
        self.buf[1..5].copy_from_slice(&len.to_be_bytes());
        self.buf
    }
}

/// A text column for a RowDescription: name and type oid.
pub type Column = (&'static str, u32);

/// Text type oids used in replication results.
pub const TEXT: u32 = 25;
pub const INT4: u32 = 23;
pub const INT8: u32 = 20;
pub const OID: u32 = 26;

/// Writes a result set with text values (None is NULL), then CommandComplete.
pub fn write_rows(out: &mut impl Write, columns: &[Column], rows: &[Vec<Option<String>>], tag: &str) -> Result<()> {
    let mut m = Msg::new(b'T').i16(columns.len() as i16);
    for (name, oid) in columns {
        let size = match *oid {
            INT4 => 4,
            INT8 => 8,
            OID => 4,
            _ => -1,
        };
        m = m.cstr(name).i32(0).i16(0).i32(*oid as i32).i16(size).i32(-1).i16(0);
    }
    let mut bytes = m.finish();
    for row in rows {
        let mut d = Msg::new(b'D').i16(row.len() as i16);
        for v in row {
            d = match v {
                Some(s) => d.i32(s.len() as i32).bytes(s.as_bytes()),
                None => d.i32(-1),
            };
        }
        bytes.extend(d.finish());
    }
    bytes.extend(Msg::new(b'C').cstr(tag).finish());
    out.write_all(&bytes).map_err(io)
}

/// An ErrorResponse for an error.
pub fn error_message(e: &Error) -> Vec<u8> {
    let mut m = Msg::new(b'E').u8(b'S').cstr("ERROR").u8(b'V').cstr("ERROR").u8(b'C').cstr(e.code.0);
    m = m.u8(b'M').cstr(&e.message);
    if let Some(d) = &e.detail {
        m = m.u8(b'D').cstr(d);
    }
    if let Some(h) = &e.hint {
        m = m.u8(b'H').cstr(h);
    }
    m.u8(0).finish()
}

/// ReadyForQuery, idle.
pub fn ready() -> Vec<u8> {
    Msg::new(b'Z').u8(b'I').finish()
}

pub(crate) fn io(e: std::io::Error) -> Error {
    Error::io("replication connection", e)
}

/// Reads one message: its type and body. None at a clean end of stream.
pub fn read_message(input: &mut impl Read, max_len: usize) -> Result<Option<(u8, Vec<u8>)>> {
    let mut head = [0u8; 5];
    match input.read_exact(&mut head[..1]) {
        Ok(()) => {}
        Err(e) if e.kind() == std::io::ErrorKind::UnexpectedEof => return Ok(None),
        Err(e) => return Err(io(e)),
    }
    input.read_exact(&mut head[1..]).map_err(io)?;
    let len = u32::from_be_bytes([head[1], head[2], head[3], head[4]]) as usize;
    if len < 4 || len - 4 > max_len {
        return Err(Error::new(SqlState::PROTOCOL_VIOLATION, format!("invalid message length {len}")));
    }
    let mut body = vec![0u8; len - 4];
    input.read_exact(&mut body).map_err(io)?;
    Ok(Some((head[0], body)))
}

/// A standby status update ('r'), as a WAL receiver sends it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct StandbyStatus {
    pub write: Lsn,
    pub flush: Lsn,
    pub apply: Lsn,
    pub time: i64,
    pub reply_requested: bool,
}

impl StandbyStatus {
    pub fn encode(&self) -> Vec<u8> {
        let mut b = vec![b'r'];
        b.extend_from_slice(&self.write.0.to_be_bytes());
        b.extend_from_slice(&self.flush.0.to_be_bytes());
        b.extend_from_slice(&self.apply.0.to_be_bytes());
        b.extend_from_slice(&self.time.to_be_bytes());
        b.push(self.reply_requested as u8);
        b
    }
}

/// A CopyData payload on a replication stream.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum CopyMessage {
    /// 'w': WAL bytes starting at `start`; `end` is the sender's flushed position.
    XLogData { start: Lsn, end: Lsn, time: i64, data: Vec<u8> },
    /// 'k': the sender's position, and whether it wants a status update now.
    Keepalive { end: Lsn, time: i64, reply_requested: bool },
    /// 'r': a standby status update.
    Status(StandbyStatus),
    /// 'h': hot-standby feedback (read and ignored: there is no vacuum to hold back).
    HotStandbyFeedback,
}

fn be_u64(b: &[u8], at: usize) -> u64 {
    u64::from_be_bytes(b[at..at + 8].try_into().expect("8 bytes"))
}

impl CopyMessage {
    /// Decodes a CopyData payload.
    pub fn decode(b: &[u8]) -> Result<CopyMessage> {
        let bad = |what: &str| {
            Error::new(SqlState::PROTOCOL_VIOLATION, format!("invalid {what} message of {} bytes", b.len()))
        };
        match b.first() {
            Some(b'w') if b.len() >= 25 => Ok(CopyMessage::XLogData {
                start: Lsn(be_u64(b, 1)),
                end: Lsn(be_u64(b, 9)),
                time: be_u64(b, 17) as i64,
                data: b[25..].to_vec(),
            }),
            Some(b'w') => Err(bad("XLogData")),
            Some(b'k') if b.len() >= 18 => Ok(CopyMessage::Keepalive {
                end: Lsn(be_u64(b, 1)),
                time: be_u64(b, 9) as i64,
                reply_requested: b[17] != 0,
            }),
            Some(b'k') => Err(bad("keepalive")),
            Some(b'r') if b.len() >= 34 => Ok(CopyMessage::Status(StandbyStatus {
                write: Lsn(be_u64(b, 1)),
                flush: Lsn(be_u64(b, 9)),
                apply: Lsn(be_u64(b, 17)),
                time: be_u64(b, 25) as i64,
                reply_requested: b[33] != 0,
            })),
            Some(b'r') => Err(bad("standby status")),
            Some(b'h') => Ok(CopyMessage::HotStandbyFeedback),
            Some(&c) => Err(Error::new(
                SqlState::PROTOCOL_VIOLATION,
                format!("unrecognized streaming header: \"{}\"", c as char),
            )),
            None => Err(bad("empty CopyData")),
        }
    }
}

/// A replication command.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Command {
    IdentifySystem,
    Show(String),
    TimelineHistory(u32),
    CreateSlot { name: String, temporary: bool, reserve_wal: bool },
    DropSlot { name: String },
    ReadSlot { name: String },
    StartReplication { slot: Option<String>, start: Lsn, timeline: Option<u32> },
    BaseBackup(Vec<(String, Option<String>)>),
}

/// Splits a command into words: identifiers (double quotes keep case), single-quoted strings, numbers,
/// LSNs, and the punctuation `( ) ,`.
fn tokens(s: &str) -> Result<Vec<String>> {
    let mut out = Vec::new();
    let mut chars = s.chars().peekable();
    let syntax = |m: String| Error::new(SqlState::SYNTAX_ERROR, m);
    while let Some(&c) = chars.peek() {
        if c.is_whitespace() || c == ';' {
            chars.next();
        } else if c == '(' || c == ')' || c == ',' {
            out.push(c.to_string());
            chars.next();
        } else if c == '"' || c == '\'' {
            chars.next();
            let mut t = String::from(if c == '\'' { "'" } else { "" });
            loop {
                match chars.next() {
                    Some(x) if x == c => {
                        if chars.peek() == Some(&c) {
                            t.push(c);
                            chars.next();
                        } else {
                            break;
                        }
                    }
                    Some(x) => t.push(x),
                    None => return Err(syntax("unterminated quoted string in replication command".into())),
                }
            }
            out.push(t);
        } else {
            let mut t = String::new();
            while let Some(&x) = chars.peek() {
                if x.is_whitespace() || matches!(x, '(' | ')' | ',' | ';' | '"' | '\'') {
                    break;
                }
                t.push(x);
                chars.next();
            }
            out.push(t);
        }
    }
    Ok(out)
}

impl Command {
    /// Parses a replication command. Anything else is an SQL statement, which a physical WAL sender
    /// refuses.
    pub fn parse(text: &str) -> Result<Command> {
        let t = tokens(text)?;
        let upper: Vec<String> = t.iter().map(|x| x.to_ascii_uppercase()).collect();
        let word = |i: usize| upper.get(i).map(String::as_str).unwrap_or("");
        let syntax =
            || Error::new(SqlState::SYNTAX_ERROR, format!("syntax error in replication command \"{}\"", text.trim()));
        let lsn = |s: &str| s.parse::<Lsn>().map_err(|_| syntax());
        let num = |s: &str| s.parse::<u32>().map_err(|_| syntax());
        match word(0) {
            "IDENTIFY_SYSTEM" if t.len() == 1 => Ok(Command::IdentifySystem),
            "SHOW" if t.len() == 2 => Ok(Command::Show(t[1].to_ascii_lowercase())),
            "TIMELINE_HISTORY" if t.len() == 2 => Ok(Command::TimelineHistory(num(&t[1])?)),
            "CREATE_REPLICATION_SLOT" if t.len() >= 3 => {
                let name = t[1].clone();
                let mut i = 2;
                let temporary = word(i) == "TEMPORARY";
                if temporary {
                    i += 1;
                }
                if word(i) != "PHYSICAL" {
                    return Err(Error::new(
                        SqlState::FEATURE_NOT_SUPPORTED,
                        "only physical replication slots are supported",
                    ));
                }
                let rest: Vec<&str> =
                    upper[i + 1..].iter().map(String::as_str).filter(|w| !matches!(*w, "(" | ")" | ",")).collect();
                if rest.iter().any(|w| *w != "RESERVE_WAL") {
                    return Err(syntax());
                }
                Ok(Command::CreateSlot { name, temporary, reserve_wal: !rest.is_empty() })
            }
            "DROP_REPLICATION_SLOT" if t.len() == 2 || (t.len() == 3 && word(2) == "WAIT") => {
                Ok(Command::DropSlot { name: t[1].clone() })
            }
            "READ_REPLICATION_SLOT" if t.len() == 2 => Ok(Command::ReadSlot { name: t[1].clone() }),
            "START_REPLICATION" => {
                let mut i = 1;
                let mut slot = None;
                if word(i) == "SLOT" {
                    slot = Some(t.get(i + 1).ok_or_else(syntax)?.clone());
                    i += 2;
                }
                if word(i) == "PHYSICAL" {
                    i += 1;
                }
                if word(i) == "LOGICAL" {
                    return Err(Error::new(SqlState::FEATURE_NOT_SUPPORTED, "logical replication is not supported"));
                }
                let start = lsn(t.get(i).ok_or_else(syntax)?)?;
                i += 1;
                let mut timeline = None;
                if word(i) == "TIMELINE" {
                    timeline = Some(num(t.get(i + 1).ok_or_else(syntax)?)?);
                    i += 2;
                }
                if i != t.len() {
                    return Err(syntax());
                }
                Ok(Command::StartReplication { slot, start, timeline })
            }
            "BASE_BACKUP" => {
                let mut options = Vec::new();
                let mut i = 1;
                if word(i) == "(" {
                    i += 1;
                    while i < t.len() && word(i) != ")" {
                        let name = upper[i].clone();
                        i += 1;
                        let value = if i < t.len() && !matches!(word(i), "," | ")") {
                            let v = t[i].trim_start_matches('\'').to_string();
                            i += 1;
                            Some(v)
                        } else {
                            None
                        };
                        options.push((name, value));
                        if word(i) == "," {
                            i += 1;
                        }
                    }
                    if word(i) != ")" {
                        return Err(syntax());
                    }
                    i += 1;
                }
                if i != t.len() {
                    return Err(syntax());
                }
                Ok(Command::BaseBackup(options))
            }
            "" => Err(syntax()),
            _ => Err(Error::new(
                SqlState::FEATURE_NOT_SUPPORTED,
                "cannot execute SQL commands in WAL sender for physical replication",
            )),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_what_postgres_clients_send() {
        assert_eq!(Command::parse("IDENTIFY_SYSTEM").unwrap(), Command::IdentifySystem);
        assert_eq!(Command::parse("SHOW wal_segment_size;").unwrap(), Command::Show("wal_segment_size".into()));
        assert_eq!(
            Command::parse("CREATE_REPLICATION_SLOT \"pg_basebackup_9641\" TEMPORARY PHYSICAL ( RESERVE_WAL)").unwrap(),
            Command::CreateSlot { name: "pg_basebackup_9641".into(), temporary: true, reserve_wal: true }
        );
        assert_eq!(
            Command::parse("START_REPLICATION SLOT \"rs1\" 0/4000000 TIMELINE 1").unwrap(),
            Command::StartReplication { slot: Some("rs1".into()), start: Lsn(0x4000000), timeline: Some(1) }
        );
        assert_eq!(
            Command::parse("START_REPLICATION PHYSICAL 0/B000000").unwrap(),
            Command::StartReplication { slot: None, start: Lsn(0xB000000), timeline: None }
        );
        let bb = Command::parse(
            "BASE_BACKUP ( LABEL 'pg_basebackup base backup',  PROGRESS,  CHECKPOINT 'fast',  WAIT 0,  MANIFEST 'yes',  TARGET 'client')",
        )
        .unwrap();
        let Command::BaseBackup(opts) = bb else { panic!() };
        assert_eq!(opts[0], ("LABEL".into(), Some("pg_basebackup base backup".into())));
        assert_eq!(opts[1], ("PROGRESS".into(), None));
        assert_eq!(opts[3], ("WAIT".into(), Some("0".into())));
        assert_eq!(Command::parse("select 1").unwrap_err().code, SqlState::FEATURE_NOT_SUPPORTED);
        assert_eq!(Command::parse("START_REPLICATION x/y").unwrap_err().code, SqlState::SYNTAX_ERROR);
    }

    #[test]
    fn copy_messages() {
        let s = StandbyStatus { write: Lsn(1), flush: Lsn(2), apply: Lsn(3), time: 4, reply_requested: true };
        assert_eq!(CopyMessage::decode(&s.encode()).unwrap(), CopyMessage::Status(s));
        assert!(CopyMessage::decode(b"zzz").unwrap_err().message.contains("unrecognized streaming header"));
        assert!(CopyMessage::decode(b"r123").is_err());
    }
}
