//! The SQL engine: from statement text to results, over the transaction layer.
//!
//! ```text
//!   text ─▶ preparse ─▶ sqlparser AST ─▶ planner (bind, infer $n types, choose access paths) ─▶ Plan
//!                                                                                        │
//!   session (transaction state, DDL, DML, COPY, SET/SHOW) ◀── execute (rows) ◀───────────┘
//! ```
//!
//! Layered as toydb's SQL engine is: [`preparse`] and sqlparser read text ([`depth`] first refuses a
//! statement nested deeper than a session's stack allows), and [`shape`] keeps a session's
//! parsed trees by statement shape so that a statement repeated with new constants is not parsed again;
//! [`planner`] binds names and types and builds a [`plan::Plan`] of [`expr::Expr`]s; [`execute`] runs plans
//! against a database state; [`dml`] and [`ddl`] write through a [`crate::txn::Transaction`]; [`session`]
//! holds a client's transaction and settings and dispatches statements. [`catalog`] serves pg_catalog and
//! information_schema as views of the state; [`types`] and [`functions`] are the value-level library.

pub mod catalog;
pub mod copy;
pub mod ddl;
pub mod depth;
pub mod dml;
pub mod execute;
pub mod expr;
pub mod formatting;
pub mod functions;
pub mod interval;
pub mod params;
pub mod plan;
pub mod planner;
pub mod preparse;
pub mod session;
pub mod shape;
pub mod timezone;
pub mod types;
pub mod window;
