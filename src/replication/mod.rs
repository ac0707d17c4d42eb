//! Streaming replication: the PostgreSQL replication protocol, the WAL sender, and (soon) the WAL
//! receiver and the standby's startup process.

pub mod basebackup;
pub mod client;
pub mod protocol;
pub mod slot;
pub mod status;
pub mod walreceiver;
pub mod walsender;
