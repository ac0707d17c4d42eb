//! The write-ahead log: positions, records, segment files, the group-commit writer and the reader.

pub mod lsn;
pub mod reader;
pub mod record;
pub mod segment;
pub mod timeline;
pub mod writer;

pub use lsn::Lsn;
