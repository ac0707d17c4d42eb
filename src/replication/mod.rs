//! Streaming replication: the PostgreSQL replication protocol, the WAL sender and receiver, base backups,
//! slots, synchronous replication and monitoring.

pub mod basebackup;
pub mod client;
pub mod protocol;
pub mod slot;
pub mod status;
pub mod syncrep;
pub mod walreceiver;
pub mod walsender;
