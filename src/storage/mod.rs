//! In-memory storage: values, the catalog and the persistent database state.

pub mod catalog;
pub mod shared;
pub mod state;
pub mod tree;
pub mod value;
