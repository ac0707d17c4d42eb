//! The wire decoders: every decoder of bytes a client or a standby sends, given the same input, each as
//! it would see it.
//!
//! - the input as a startup packet's body ([`frontend::decode_startup`]);
//! - as one frontend message, its first byte the type ([`frontend::decode`]);
//! - as a stream of framed messages (type, length, body), read as the WAL sender reads them
//!   ([`protocol::read_message`]), each body decoded as a frontend message, a Query's text parsed as a
//!   replication command and a CopyData's payload as a standby's reply;
//! - as a replication command ([`Command::parse`]) and as a CopyData payload ([`CopyMessage::decode`]);
//! - as a bound parameter of every type, in text and in binary ([`format::decode_param`]).
//!
//! An error is an answer; a panic is a bug.

#![no_main]

use libfuzzer_sys::fuzz_target;
use tandem::replication::protocol::{self, Command, CopyMessage};
use tandem::server::format;
use tandem::server::frontend::{self, Frontend};
use tandem::storage::value::DataType;

const TYPES: &[DataType] = &[
    DataType::Bool,
    DataType::Int2,
    DataType::Int4,
    DataType::Int8,
    DataType::Float4,
    DataType::Float8,
    DataType::Numeric(None),
    DataType::Numeric(Some((10, 2))),
    DataType::Text,
    DataType::Varchar(Some(3)),
    DataType::Char(4),
    DataType::Bytea,
    DataType::Date,
    DataType::Timestamp,
    DataType::TimestampTz,
    DataType::Oid,
];

fn message(kind: u8, body: &[u8]) {
    match frontend::decode(kind, body) {
        Ok(Frontend::Query(text)) => {
            let _ = Command::parse(&text);
        }
        Ok(Frontend::CopyData(payload)) => {
            let _ = CopyMessage::decode(&payload);
        }
        _ => {}
    }
}

fuzz_target!(|data: &[u8]| {
    let _ = frontend::decode_startup(data);
    if let Some((&kind, body)) = data.split_first() {
        message(kind, body);
    }
    let mut stream = data;
    while let Ok(Some((kind, body))) = protocol::read_message(&mut stream, 1 << 20) {
        message(kind, &body);
    }
    let _ = Command::parse(&String::from_utf8_lossy(data));
    let _ = CopyMessage::decode(data);
    for ty in TYPES {
        let _ = format::decode_param(Some(data), ty, false);
        let _ = format::decode_param(Some(data), ty, true);
    }
});
