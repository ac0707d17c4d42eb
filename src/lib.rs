//! tandem: a PostgreSQL-wire database server whose primary keeps a standby in lockstep by streaming its
//! write-ahead log.
//!
//! The layers, from the bottom: [`wal`] (the log and its group-commit writer), [`storage`] (the in-memory
//! persistent database state and its redo operations), [`txn`] (transactions, row locks, isolation),
//! [`engine`] (the commit pipeline, checkpoints and recovery that tie them together), [`sql`] (parse, plan,
//! execute, sessions) and [`server`] (the PostgreSQL wire protocol).

pub mod activity;
pub mod control;
pub mod encoding;
pub mod engine;
pub mod error;
pub mod failpoint;
pub mod memory;
pub mod priority;
pub mod recovery;
pub mod replication;
pub mod server;
pub mod settings;
pub mod snapshot;
pub mod sql;
pub mod storage;
pub mod txn;
pub mod wal;

pub use error::{Error, Result, SqlState};

/// The server_version tandem reports: a PostgreSQL 15 that clients accept.
pub const SERVER_VERSION: &str = "15.0 (tandem 0.1.0)";
