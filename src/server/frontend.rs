//! Decoding what a client sends: the startup packet, then the messages of a session, with every length
//! and count checked.
//!
//! The bodies come straight off the network, so a short or inconsistent message must become a protocol
//! error (08P01) that closes the connection, never a panic. (pgwire's decoders index into the buffer
//! without checking, so the server decodes the handful of frontend messages itself and uses pgwire to
//! encode its replies.) Both decoders are pure functions of the bytes, so the `wire_decoder` fuzz target
//! (`fuzz/`) drives them directly.

use std::collections::HashMap;

use crate::error::{Error, Result, SqlState};

const SSL_REQUEST: u32 = 80877103;
const GSS_REQUEST: u32 = 80877104;
const CANCEL_REQUEST: u32 = 80877102;
const PROTOCOL_3: u32 = 196608;

/// A startup packet: the first thing a client sends, and again after a refused encryption request.
#[derive(Debug, PartialEq, Eq)]
pub enum Startup {
    /// SSLRequest or GSSENCRequest, answered 'N' (no encryption); the client then sends another packet.
    EncryptionRequest,
    /// A CancelRequest for another session's running statement.
    Cancel { pid: i32, key: i32 },
    /// A protocol 3.0 StartupMessage with its parameters (user, database, options...).
    Params(HashMap<String, String>),
}

/// Decodes a startup packet's body (what follows its length word, which the caller has checked).
pub fn decode_startup(body: &[u8]) -> Result<Startup> {
    let Some((code, rest)) = body.split_first_chunk::<4>() else {
        return Err(malformed("startup packet too short"));
    };
    let word = |b: &[u8]| i32::from_be_bytes([b[0], b[1], b[2], b[3]]);
    match u32::from_be_bytes(*code) {
        SSL_REQUEST | GSS_REQUEST => Ok(Startup::EncryptionRequest),
        CANCEL_REQUEST if rest.len() >= 8 => Ok(Startup::Cancel { pid: word(&rest[..4]), key: word(&rest[4..8]) }),
        PROTOCOL_3 => {
            let mut params = HashMap::new();
            let mut parts = rest.split(|b| *b == 0);
            while let (Some(k), Some(v)) = (parts.next(), parts.next()) {
                if k.is_empty() {
                    break;
                }
                params.insert(String::from_utf8_lossy(k).into_owned(), String::from_utf8_lossy(v).into_owned());
            }
            Ok(Startup::Params(params))
        }
        other => Err(Error::new(
            SqlState::PROTOCOL_VIOLATION,
            format!("unsupported frontend protocol {}.{}", other >> 16, other & 0xffff),
        )),
    }
}

/// A frontend message.
#[derive(Debug)]
pub enum Frontend {
    Query(String),
    Parse {
        name: String,
        query: String,
        types: Vec<u32>,
    },
    Bind {
        portal: String,
        statement: String,
        formats: Vec<i16>,
        params: Vec<Option<Vec<u8>>>,
        result_formats: Vec<i16>,
    },
    /// Describe a statement (`S`) or a portal (`P`).
    Describe {
        kind: u8,
        name: String,
    },
    Execute {
        portal: String,
        max_rows: i32,
    },
    Close {
        kind: u8,
        name: String,
    },
    Sync,
    Flush,
    Terminate,
    CopyData(Vec<u8>),
    CopyDone,
    CopyFail(String),
}

fn malformed(what: &str) -> Error {
    Error::new(SqlState::PROTOCOL_VIOLATION, format!("invalid frontend message: {what}"))
}

struct Cursor<'a> {
    buf: &'a [u8],
}

impl<'a> Cursor<'a> {
    fn take(&mut self, n: usize) -> Result<&'a [u8]> {
        if self.buf.len() < n {
            return Err(malformed("message too short"));
        }
        let (head, rest) = self.buf.split_at(n);
        self.buf = rest;
        Ok(head)
    }

    fn i16(&mut self) -> Result<i16> {
        let b = self.take(2)?;
        Ok(i16::from_be_bytes([b[0], b[1]]))
    }

    fn i32(&mut self) -> Result<i32> {
        let b = self.take(4)?;
        Ok(i32::from_be_bytes([b[0], b[1], b[2], b[3]]))
    }

    fn count(&mut self) -> Result<usize> {
        usize::try_from(self.i16()?).map_err(|_| malformed("negative count"))
    }

    fn cstr(&mut self) -> Result<String> {
        let end = self.buf.iter().position(|b| *b == 0).ok_or_else(|| malformed("unterminated string"))?;
        let s = std::str::from_utf8(&self.buf[..end])
            .map_err(|_| {
                Error::new(SqlState::CHARACTER_NOT_IN_REPERTOIRE, "invalid byte sequence for encoding \"UTF8\"")
            })?
            .to_string();
        self.buf = &self.buf[end + 1..];
        Ok(s)
    }
}

/// Decodes a message body of the given type.
pub fn decode(kind: u8, body: &[u8]) -> Result<Frontend> {
    let mut c = Cursor { buf: body };
    Ok(match kind {
        b'Q' => Frontend::Query(c.cstr()?),
        b'P' => {
            let name = c.cstr()?;
            let query = c.cstr()?;
            let n = c.count()?;
            let mut types = Vec::with_capacity(n.min(body.len()));
            for _ in 0..n {
                types.push(c.i32()? as u32);
            }
            Frontend::Parse { name, query, types }
        }
        b'B' => {
            let portal = c.cstr()?;
            let statement = c.cstr()?;
            let n = c.count()?;
            let mut formats = Vec::with_capacity(n.min(body.len()));
            for _ in 0..n {
                formats.push(c.i16()?);
            }
            let n = c.count()?;
            let mut params = Vec::with_capacity(n.min(body.len()));
            for _ in 0..n {
                let len = c.i32()?;
                params.push(match len {
                    -1 => None,
                    l if l < 0 => return Err(malformed("negative parameter length")),
                    l => Some(c.take(l as usize)?.to_vec()),
                });
            }
            let n = c.count()?;
            let mut result_formats = Vec::with_capacity(n.min(body.len()));
            for _ in 0..n {
                result_formats.push(c.i16()?);
            }
            Frontend::Bind { portal, statement, formats, params, result_formats }
        }
        b'D' | b'C' => {
            let k = c.take(1)?[0];
            if k != b'S' && k != b'P' {
                return Err(malformed("Describe/Close target must be S or P"));
            }
            let name = c.cstr()?;
            if kind == b'D' {
                Frontend::Describe { kind: k, name }
            } else {
                Frontend::Close { kind: k, name }
            }
        }
        b'E' => Frontend::Execute { portal: c.cstr()?, max_rows: c.i32()? },
        b'S' => Frontend::Sync,
        b'H' => Frontend::Flush,
        b'X' => Frontend::Terminate,
        b'd' => Frontend::CopyData(body.to_vec()),
        b'c' => Frontend::CopyDone,
        b'f' => Frontend::CopyFail(String::from_utf8_lossy(body).trim_end_matches('\0').to_string()),
        other => return Err(malformed(&format!("unknown message type 0x{other:02x}"))),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn short_messages_are_errors() {
        assert!(decode(b'B', b"\0\0\0").is_err());
        assert!(decode(b'B', b"\0\0\0\x01").is_err());
        assert!(decode(b'P', b"s\0select 1").is_err());
        assert!(decode(b'E', b"\0\0\0").is_err());
        assert!(decode(b'D', b"X\0").is_err());
        assert!(matches!(decode(b'Q', b"select 1\0"), Ok(Frontend::Query(q)) if q == "select 1"));
        let bind = b"\0s\0\0\x01\0\0\0\x01\0\0\0\x012\0\0";
        assert!(matches!(decode(b'B', bind), Ok(Frontend::Bind { params, .. }) if params == vec![Some(b"2".to_vec())]));
    }

    #[test]
    fn startup_packets() {
        assert_eq!(decode_startup(b"\x04\xd2\x16\x2f").unwrap(), Startup::EncryptionRequest);
        let cancel = b"\x04\xd2\x16\x2e\0\0\0\x07\0\0\0\x09";
        assert_eq!(decode_startup(cancel).unwrap(), Startup::Cancel { pid: 7, key: 9 });
        // A cancel request cut short is not a protocol this server speaks.
        assert!(decode_startup(b"\x04\xd2\x16\x2e\0\0").is_err());
        assert!(decode_startup(b"\0\x03").is_err());
        let Startup::Params(p) = decode_startup(b"\0\x03\0\0user\0ann\0database\0db\0\0").unwrap() else { panic!() };
        assert_eq!((p["user"].as_str(), p["database"].as_str()), ("ann", "db"));
    }
}
