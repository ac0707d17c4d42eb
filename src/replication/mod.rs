//! Streaming replication: the PostgreSQL replication protocol, the WAL sender, and (soon) the WAL
//! receiver and the standby's startup process.

pub mod basebackup;
pub mod protocol;
pub mod slot;
pub mod walreceiver;
pub mod walsender;
