//! Table definitions: the catalog.
//!
//! A [`TableDef`] says what a table's columns are, which of them form the primary key, and which secondary
//! indexes exist. Definitions are immutable values shared by `Arc`; DDL replaces a definition with a new one
//! through a redo [`Op`](super::state::Op), so the catalog changes exactly like rows do: in the WAL, in
//! commit order, replayed identically by recovery and by a standby.
//!
//! A table without a primary key is keyed by a hidden row id (`[Int(rowid)]`), as PostgreSQL tables are
//! by their ctid; `ALTER TABLE ... ADD PRIMARY KEY` re-keys the rows.

use crate::encoding::{Decoder, Encoder};
use crate::error::Result;
use crate::storage::value::{DataType, Value};

/// Identifies a table or index (its pg_class oid).
pub type Oid = u32;

/// The first oid handed out to user objects, as in PostgreSQL.
pub const FIRST_USER_OID: Oid = 16384;

/// A column of a table.
#[derive(Clone, Debug, PartialEq)]
pub struct ColumnDef {
    pub name: String,
    pub ty: DataType,
    pub not_null: bool,
    /// The DEFAULT expression as SQL text; the SQL layer evaluates it.
    pub default: Option<String>,
}

/// A secondary index (or the index behind a UNIQUE constraint).
#[derive(Clone, Debug, PartialEq)]
pub struct IndexDef {
    pub id: Oid,
    pub name: String,
    /// Column positions in the table, in index order.
    pub columns: Vec<usize>,
    pub unique: bool,
    /// True when the index backs a UNIQUE constraint rather than a CREATE INDEX.
    pub constraint: bool,
}

/// The primary key: a constraint name and its columns.
#[derive(Clone, Debug, PartialEq)]
pub struct PrimaryKey {
    /// The name of the constraint and of its index, `<table>_pkey` by default.
    pub name: String,
    /// The oid of the primary key's index, for pg_class.
    pub index_id: Oid,
    pub columns: Vec<usize>,
}

/// A table definition.
#[derive(Clone, Debug, PartialEq)]
pub struct TableDef {
    pub id: Oid,
    pub name: String,
    pub columns: Vec<ColumnDef>,
    pub primary_key: Option<PrimaryKey>,
    pub indexes: Vec<IndexDef>,
}

impl TableDef {
    /// The position of a column, by name.
    pub fn column_index(&self, name: &str) -> Option<usize> {
        self.columns.iter().position(|c| c.name == name)
    }

    /// The key of a row: its primary-key values. Tables without a primary key use a hidden row id,
    /// which the caller supplies.
    pub fn key_of(&self, row: &[Value], rowid: impl FnOnce() -> i64) -> Vec<Value> {
        match &self.primary_key {
            Some(pk) => pk.columns.iter().map(|&i| row[i].clone()).collect(),
            None => vec![Value::Int(rowid())],
        }
    }

    /// An index by name.
    pub fn index(&self, name: &str) -> Option<&IndexDef> {
        self.indexes.iter().find(|i| i.name == name)
    }

    pub(crate) fn encode(&self, e: &mut Encoder) {
        e.u32(self.id);
        e.str(&self.name);
        e.var(self.columns.len() as u64);
        for c in &self.columns {
            e.str(&c.name);
            c.ty.encode(e);
            e.bool(c.not_null);
            match &c.default {
                Some(d) => {
                    e.u8(1);
                    e.str(d);
                }
                None => e.u8(0),
            }
        }
        match &self.primary_key {
            Some(pk) => {
                e.u8(1);
                e.str(&pk.name);
                e.u32(pk.index_id);
                encode_positions(e, &pk.columns);
            }
            None => e.u8(0),
        }
        e.var(self.indexes.len() as u64);
        for i in &self.indexes {
            i.encode(e);
        }
    }

    pub(crate) fn decode(d: &mut Decoder) -> Result<TableDef> {
        let id = d.u32()?;
        let name = d.str()?.to_string();
        let ncols = d.count()?;
        let mut columns = Vec::with_capacity(ncols);
        for _ in 0..ncols {
            let name = d.str()?.to_string();
            let ty = DataType::decode(d)?;
            let not_null = d.bool()?;
            let default = if d.bool()? { Some(d.str()?.to_string()) } else { None };
            columns.push(ColumnDef { name, ty, not_null, default });
        }
        let primary_key = if d.bool()? {
            let name = d.str()?.to_string();
            let index_id = d.u32()?;
            let columns = decode_positions(d, ncols)?;
            Some(PrimaryKey { name, index_id, columns })
        } else {
            None
        };
        let nidx = d.count()?;
        let mut indexes = Vec::with_capacity(nidx);
        for _ in 0..nidx {
            indexes.push(IndexDef::decode(d, ncols)?);
        }
        Ok(TableDef { id, name, columns, primary_key, indexes })
    }
}

impl IndexDef {
    pub(crate) fn encode(&self, e: &mut Encoder) {
        e.u32(self.id);
        e.str(&self.name);
        encode_positions(e, &self.columns);
        e.bool(self.unique);
        e.bool(self.constraint);
    }

    pub(crate) fn decode(d: &mut Decoder, ncols: usize) -> Result<IndexDef> {
        Ok(IndexDef {
            id: d.u32()?,
            name: d.str()?.to_string(),
            columns: decode_positions(d, ncols)?,
            unique: d.bool()?,
            constraint: d.bool()?,
        })
    }
}

fn encode_positions(e: &mut Encoder, positions: &[usize]) {
    e.var(positions.len() as u64);
    for &p in positions {
        e.var(p as u64);
    }
}

fn decode_positions(d: &mut Decoder, ncols: usize) -> Result<Vec<usize>> {
    let n = d.count()?;
    let mut out = Vec::with_capacity(n);
    for _ in 0..n {
        let p = d.var()? as usize;
        if p >= ncols {
            return Err(d.malformed(format!("column position {p} of {ncols}")));
        }
        out.push(p);
    }
    Ok(out)
}

/// A sequence (CREATE SEQUENCE, or the one behind a serial column).
#[derive(Clone, Debug, PartialEq)]
pub struct SequenceDef {
    pub id: Oid,
    pub name: String,
    pub start: i64,
    pub increment: i64,
    pub min: i64,
    pub max: i64,
    pub cycle: bool,
}

impl SequenceDef {
    pub(crate) fn encode(&self, e: &mut Encoder) {
        e.u32(self.id);
        e.str(&self.name);
        e.svar(self.start);
        e.svar(self.increment);
        e.svar(self.min);
        e.svar(self.max);
        e.bool(self.cycle);
    }

    pub(crate) fn decode(d: &mut Decoder) -> Result<SequenceDef> {
        Ok(SequenceDef {
            id: d.u32()?,
            name: d.str()?.to_string(),
            start: d.svar()?,
            increment: d.svar()?,
            min: d.svar()?,
            max: d.svar()?,
            cycle: d.bool()?,
        })
    }
}
