//! Streaming replication: the PostgreSQL replication protocol, the WAL sender, and (soon) the WAL
//! receiver and the standby's startup process.

pub mod protocol;
pub mod walsender;
