//! The database state: every table's rows and indexes, as persistent maps.
//!
//! [`DbState`] is a value. Cloning it is O(1) (a few reference counts), and a clone never changes when the
//! original does, because the maps underneath (B-trees with structural sharing: a table's rows in our
//! [`Tree`], which a snapshot load builds without inserting, the rest in imbl's `OrdMap`) copy only the path
//! to a changed entry. This one property carries most of the design:
//!
//! - a reader's snapshot is a clone, so readers never block writers and never see half a commit;
//! - a transaction's private view is a clone with its own writes applied;
//! - a checkpoint serializes a clone in the background while commits go on;
//! - the commit pipeline keeps one clone per not-yet-acknowledged commit and publishes each as it becomes
//!   durable.
//!
//! State changes only through [`Op`]s, the redo records a commit carries. The primary applies a commit's ops
//! when it appends the commit to the WAL; recovery and a standby apply the very same ops when they read it
//! back, so their states match the primary's at every LSN.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use imbl::OrdMap;

use crate::storage::tree::{Leaves, NotAscending, Tree};

use crate::encoding::{Decoder, Encoder};
use crate::error::{Error, Result, SqlState};
use crate::storage::catalog::{IndexDef, Oid, PrimaryKey, SequenceDef, TableDef, FIRST_USER_OID};
use crate::storage::value::{decode_values, encode_values, Key, Row, Value};

/// One table's rows and secondary indexes.
#[derive(Clone, Debug)]
pub struct TableData {
    pub def: Arc<TableDef>,
    /// Rows by key.
    pub rows: Tree<Key, Row>,
    /// Secondary indexes by index oid. An entry's key is the indexed values followed by the row key.
    pub indexes: OrdMap<Oid, OrdMap<Key, ()>>,
}

impl TableData {
    pub(crate) fn new(def: Arc<TableDef>) -> Self {
        let indexes = def.indexes.iter().map(|i| (i.id, OrdMap::new())).collect();
        TableData { def, rows: Tree::new(), indexes }
    }

    /// The entry a row has in an index: the indexed values, then the row key.
    pub fn index_entry(index: &IndexDef, key: &[Value], row: &[Value]) -> Key {
        index.columns.iter().map(|&c| row[c].clone()).chain(key.iter().cloned()).collect()
    }

    fn put(&mut self, key: Key, row: Row) {
        let old = self.rows.insert(key.clone(), row.clone());
        for index in &self.def.indexes {
            let map = self.indexes.entry(index.id).or_default();
            if let Some(old) = &old {
                map.remove(&Self::index_entry(index, &key, old));
            }
            map.insert(Self::index_entry(index, &key, &row), ());
        }
    }

    fn delete(&mut self, key: &Key) -> bool {
        let Some(old) = self.rows.remove(key) else { return false };
        for index in &self.def.indexes {
            if let Some(map) = self.indexes.get_mut(&index.id) {
                map.remove(&Self::index_entry(index, key, &old));
            }
        }
        true
    }

    /// A table of the given rows, its secondary indexes built from them.
    pub(crate) fn with_rows(def: Arc<TableDef>, rows: Tree<Key, Row>) -> TableData {
        let mut data = TableData::new(def);
        for index in &data.def.indexes {
            let map = data.indexes.entry(index.id).or_default();
            for (k, r) in rows.iter() {
                map.insert(Self::index_entry(index, k, r), ());
            }
        }
        data.rows = rows;
        data
    }

    /// A table of rows given in strictly ascending key order, packed into a new tree (see `storage/tree.rs`).
    pub(crate) fn from_sorted(
        def: Arc<TableDef>,
        rows: impl IntoIterator<Item = (Key, Row)>,
    ) -> std::result::Result<TableData, NotAscending> {
        Ok(TableData::with_rows(def, Tree::from_leaves([Leaves::pack(rows)?])?))
    }

    /// A table whose rows are an existing table's, each changed, in the same key order.
    fn rebuild(def: Arc<TableDef>, rows: impl Iterator<Item = (Key, Row)>) -> Result<TableData> {
        TableData::from_sorted(def, rows).map_err(|_| Error::internal("a rebuilt table's keys out of order"))
    }
}

/// A change to the catalog other than creating or dropping a table.
#[derive(Clone, Debug, PartialEq)]
pub enum AlterOp {
    /// Appends a column; existing rows get `fill`.
    AddColumn {
        column: crate::storage::catalog::ColumnDef,
        fill: Value,
    },
    /// Removes the column at a position from the definition and from every row.
    DropColumn(usize),
    /// Sets the primary key and re-keys every row by it.
    AddPrimaryKey(PrimaryKey),
    RenameTable(String),
    RenameColumn(usize, String),
    /// Sets or clears a column's NOT NULL.
    SetNotNull(usize, bool),
    /// Sets or clears a column's DEFAULT.
    SetDefault(usize, Option<String>),
    CreateIndex(IndexDef),
    DropIndex(Oid),
}

/// A redo operation: one change to the database state, as a commit record carries it.
#[derive(Clone, Debug, PartialEq)]
pub enum Op {
    /// Inserts or replaces the row at a key.
    Put {
        table: Oid,
        key: Key,
        row: Row,
    },
    /// Removes the row at a key.
    Delete {
        table: Oid,
        key: Key,
    },
    CreateTable(Arc<TableDef>),
    DropTable(Oid),
    Truncate(Oid),
    Alter {
        table: Oid,
        op: AlterOp,
    },
    CreateSequence(Arc<SequenceDef>),
    DropSequence(Oid),
    /// Sets a sequence's last value and whether it was handed out (PostgreSQL's is_called).
    SetSequence {
        seq: Oid,
        value: i64,
        called: bool,
    },
}

/// A sequence's position.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct SequenceValue {
    pub last: i64,
    pub called: bool,
}

/// Hands out catalog versions, unique within the process.
static CATALOG_VERSIONS: AtomicU64 = AtomicU64::new(1);

/// The whole database: catalog and data.
#[derive(Clone, Debug)]
pub struct DbState {
    /// Tables by oid.
    pub tables: OrdMap<Oid, TableData>,
    /// Table and sequence oids by name (they share one namespace, as PostgreSQL's relations do).
    pub names: OrdMap<Arc<str>, Oid>,
    /// Sequences by oid.
    pub sequences: OrdMap<Oid, Arc<SequenceDef>>,
    /// Sequence positions by oid.
    pub sequence_values: OrdMap<Oid, SequenceValue>,
    /// The next oid to hand out for a table or index.
    pub next_oid: Oid,
    /// Names this state's catalog (table definitions, names, sequences). A state gets a version no other
    /// state has had when it is made and at every change of its catalog; row changes keep it. So two
    /// states with the same version have the same catalog, and a plan made against one holds for the
    /// other (prepared statements keep their plans by it).
    catalog_version: u64,
}

impl Default for DbState {
    fn default() -> Self {
        DbState::new()
    }
}

impl DbState {
    /// An empty database.
    pub fn new() -> Self {
        DbState {
            tables: OrdMap::new(),
            names: OrdMap::new(),
            sequences: OrdMap::new(),
            sequence_values: OrdMap::new(),
            next_oid: FIRST_USER_OID,
            catalog_version: CATALOG_VERSIONS.fetch_add(1, Ordering::Relaxed),
        }
    }

    /// See the field: which catalog this state has.
    pub fn catalog_version(&self) -> u64 {
        self.catalog_version
    }

    /// Gives the state a new catalog version: after any change of its catalog.
    pub(crate) fn catalog_changed(&mut self) {
        self.catalog_version = CATALOG_VERSIONS.fetch_add(1, Ordering::Relaxed);
    }

    /// A table by name.
    pub fn table(&self, name: &str) -> Option<&TableData> {
        self.names.get(name).and_then(|id| self.tables.get(id))
    }

    /// A sequence by name.
    pub fn sequence(&self, name: &str) -> Option<&Arc<SequenceDef>> {
        self.names.get(name).and_then(|id| self.sequences.get(id))
    }

    /// A table by oid.
    pub fn table_by_id(&self, id: Oid) -> Option<&TableData> {
        self.tables.get(&id)
    }

    /// The row at a key.
    pub fn row(&self, table: Oid, key: &Key) -> Option<&Row> {
        self.tables.get(&table)?.rows.get(key)
    }

    /// Applies one redo operation.
    pub fn apply(&mut self, op: &Op) -> Result<()> {
        if !matches!(op, Op::Put { .. } | Op::Delete { .. } | Op::SetSequence { .. }) {
            // Before the change, so that a change failing half-way leaves no state with an old version.
            self.catalog_changed();
        }
        match op {
            Op::Put { table, key, row } => {
                let t = self.table_mut(*table)?;
                if row.len() != t.def.columns.len() {
                    return Err(Error::internal(format!(
                        "row of {} values for table {} with {} columns",
                        row.len(),
                        t.def.name,
                        t.def.columns.len()
                    )));
                }
                t.put(key.clone(), row.clone());
            }
            Op::Delete { table, key } => {
                self.table_mut(*table)?.delete(key);
            }
            Op::CreateTable(def) => {
                if self.tables.contains_key(&def.id) || self.names.contains_key(def.name.as_str()) {
                    return Err(Error::new(
                        SqlState::DUPLICATE_TABLE,
                        format!("relation \"{}\" already exists", def.name),
                    ));
                }
                self.names.insert(Arc::from(def.name.as_str()), def.id);
                self.tables.insert(def.id, TableData::new(def.clone()));
                self.bump_oids(def);
            }
            Op::DropTable(id) => {
                let t = self.tables.remove(id).ok_or_else(|| missing(*id))?;
                self.names.remove(t.def.name.as_str());
            }
            Op::Truncate(id) => {
                let def = self.table_mut(*id)?.def.clone();
                self.tables.insert(*id, TableData::new(def));
            }
            Op::Alter { table, op } => self.alter(*table, op)?,
            Op::CreateSequence(def) => {
                if self.names.contains_key(def.name.as_str()) {
                    return Err(Error::new(
                        SqlState::DUPLICATE_TABLE,
                        format!("relation \"{}\" already exists", def.name),
                    ));
                }
                self.names.insert(Arc::from(def.name.as_str()), def.id);
                self.sequences.insert(def.id, def.clone());
                self.sequence_values.insert(def.id, SequenceValue { last: def.start, called: false });
                self.next_oid = self.next_oid.max(def.id + 1);
            }
            Op::DropSequence(id) => {
                let def = self.sequences.remove(id).ok_or_else(|| missing(*id))?;
                self.sequence_values.remove(id);
                self.names.remove(def.name.as_str());
            }
            Op::SetSequence { seq, value, called } => {
                if !self.sequences.contains_key(seq) {
                    return Err(missing(*seq));
                }
                self.sequence_values.insert(*seq, SequenceValue { last: *value, called: *called });
            }
        }
        Ok(())
    }

    fn bump_oids(&mut self, def: &TableDef) {
        let max = def
            .indexes
            .iter()
            .map(|i| i.id)
            .chain(def.primary_key.as_ref().map(|p| p.index_id))
            .chain([def.id])
            .max()
            .unwrap_or(def.id);
        self.next_oid = self.next_oid.max(max + 1);
    }

    fn table_mut(&mut self, id: Oid) -> Result<&mut TableData> {
        self.tables.get_mut(&id).ok_or_else(|| missing(id))
    }

    fn alter(&mut self, id: Oid, op: &AlterOp) -> Result<()> {
        let t = self.table_mut(id)?.clone();
        let mut def = (*t.def).clone();
        let ncols = def.columns.len();
        let positions_ok = |cols: &[usize]| cols.iter().all(|&c| c < ncols);
        match op {
            AlterOp::AddPrimaryKey(PrimaryKey { columns, .. }) | AlterOp::CreateIndex(IndexDef { columns, .. })
                if !positions_ok(columns) =>
            {
                return Err(Error::internal(format!("column position out of range for table {}", def.name)));
            }
            _ => {}
        }
        let new = match op {
            AlterOp::AddColumn { column, fill } => {
                def.columns.push(column.clone());
                let def = Arc::new(def);
                let rows = t.rows.iter().map(|(k, r)| {
                    let row: Row = r.iter().cloned().chain([fill.clone()]).collect();
                    (k.clone(), row)
                });
                TableData::rebuild(def, rows)?
            }
            AlterOp::DropColumn(pos) => {
                let pos = *pos;
                if pos >= def.columns.len() {
                    return Err(Error::internal(format!("drop of column {pos} of {}", def.columns.len())));
                }
                def.columns.remove(pos);
                let shift = |c: &mut usize| {
                    if *c > pos {
                        *c -= 1
                    }
                };
                def.indexes.retain(|i| !i.columns.contains(&pos));
                def.indexes.iter_mut().for_each(|i| i.columns.iter_mut().for_each(shift));
                if def.primary_key.as_ref().is_some_and(|pk| pk.columns.contains(&pos)) {
                    return Err(Error::internal("drop of a primary-key column"));
                }
                if let Some(pk) = &mut def.primary_key {
                    pk.columns.iter_mut().for_each(shift);
                }
                let def = Arc::new(def);
                let rows = t.rows.iter().map(|(k, r)| {
                    let row: Row = r.iter().enumerate().filter(|(i, _)| *i != pos).map(|(_, v)| v.clone()).collect();
                    (k.clone(), row)
                });
                TableData::rebuild(def, rows)?
            }
            AlterOp::AddPrimaryKey(pk) => {
                def.primary_key = Some(pk.clone());
                let def = Arc::new(def);
                // Re-keyed rows are sorted and packed into a new tree, not inserted one by one: rows loaded
                // in key order (pgbench's, by COPY) are a sorted run already, which the sort only checks.
                let mut rows = Vec::with_capacity(t.rows.len());
                for row in t.rows.values() {
                    let key: Key = pk.columns.iter().map(|&c| row[c].clone()).collect();
                    if key.iter().any(Value::is_null) {
                        return Err(Error::new(
                            SqlState::NOT_NULL_VIOLATION,
                            "primary key column contains null values",
                        ));
                    }
                    rows.push((key, row.clone()));
                }
                rows.sort_by(|a, b| a.0.cmp(&b.0));
                TableData::from_sorted(def, rows).map_err(|_| {
                    Error::new(SqlState::UNIQUE_VIOLATION, format!("could not create unique index \"{}\"", pk.name))
                })?
            }
            AlterOp::RenameTable(name) => {
                if self.names.contains_key(name.as_str()) {
                    return Err(Error::new(SqlState::DUPLICATE_TABLE, format!("relation \"{name}\" already exists")));
                }
                self.names.remove(def.name.as_str());
                self.names.insert(Arc::from(name.as_str()), id);
                def.name = name.clone();
                TableData { def: Arc::new(def), ..t }
            }
            AlterOp::RenameColumn(pos, name) => {
                def.columns.get_mut(*pos).ok_or_else(|| Error::internal("rename of a missing column"))?.name =
                    name.clone();
                TableData { def: Arc::new(def), ..t }
            }
            AlterOp::SetNotNull(pos, on) => {
                def.columns.get_mut(*pos).ok_or_else(|| Error::internal("alter of a missing column"))?.not_null = *on;
                TableData { def: Arc::new(def), ..t }
            }
            AlterOp::SetDefault(pos, default) => {
                def.columns.get_mut(*pos).ok_or_else(|| Error::internal("alter of a missing column"))?.default =
                    default.clone();
                TableData { def: Arc::new(def), ..t }
            }
            AlterOp::CreateIndex(index) => {
                let mut map = OrdMap::new();
                for (k, r) in t.rows.iter() {
                    map.insert(TableData::index_entry(index, k, r), ());
                }
                def.indexes.push(index.clone());
                self.next_oid = self.next_oid.max(index.id + 1);
                let mut indexes = t.indexes.clone();
                indexes.insert(index.id, map);
                TableData { def: Arc::new(def), rows: t.rows.clone(), indexes }
            }
            AlterOp::DropIndex(index_id) => {
                def.indexes.retain(|i| i.id != *index_id);
                let mut indexes = t.indexes.clone();
                indexes.remove(index_id);
                TableData { def: Arc::new(def), rows: t.rows.clone(), indexes }
            }
        };
        if let AlterOp::AddPrimaryKey(pk) = op {
            self.next_oid = self.next_oid.max(pk.index_id + 1);
        }
        self.tables.insert(id, new);
        Ok(())
    }

    /// The highest hidden row id in use, so that a restarted server hands out fresh ones.
    pub fn max_rowid(&self) -> i64 {
        self.tables
            .values()
            .filter(|t| t.def.primary_key.is_none())
            .filter_map(|t| t.rows.last().map(|(k, _)| k))
            .filter_map(|k| match k.first() {
                Some(Value::Int(i)) => Some(*i),
                _ => None,
            })
            .max()
            .unwrap_or(0)
    }
}

fn missing(id: Oid) -> Error {
    Error::new(SqlState::UNDEFINED_TABLE, format!("relation with oid {id} does not exist"))
}

impl Op {
    pub(crate) fn encode(&self, e: &mut Encoder) {
        match self {
            Op::Put { table, key, row } => {
                e.u8(1);
                e.u32(*table);
                encode_values(e, key);
                encode_values(e, row);
            }
            Op::Delete { table, key } => {
                e.u8(2);
                e.u32(*table);
                encode_values(e, key);
            }
            Op::CreateTable(def) => {
                e.u8(3);
                def.encode(e);
            }
            Op::DropTable(id) => {
                e.u8(4);
                e.u32(*id);
            }
            Op::Truncate(id) => {
                e.u8(5);
                e.u32(*id);
            }
            Op::Alter { table, op } => {
                e.u8(6);
                e.u32(*table);
                op.encode(e);
            }
            Op::CreateSequence(def) => {
                e.u8(7);
                def.encode(e);
            }
            Op::DropSequence(id) => {
                e.u8(8);
                e.u32(*id);
            }
            Op::SetSequence { seq, value, called } => {
                e.u8(9);
                e.u32(*seq);
                e.svar(*value);
                e.bool(*called);
            }
        }
    }

    pub(crate) fn decode(d: &mut Decoder) -> Result<Op> {
        Ok(match d.u8()? {
            1 => Op::Put { table: d.u32()?, key: decode_values(d)?.into(), row: decode_values(d)? },
            2 => Op::Delete { table: d.u32()?, key: decode_values(d)?.into() },
            3 => Op::CreateTable(Arc::new(TableDef::decode(d)?)),
            4 => Op::DropTable(d.u32()?),
            5 => Op::Truncate(d.u32()?),
            6 => Op::Alter { table: d.u32()?, op: AlterOp::decode(d)? },
            7 => Op::CreateSequence(Arc::new(SequenceDef::decode(d)?)),
            8 => Op::DropSequence(d.u32()?),
            9 => Op::SetSequence { seq: d.u32()?, value: d.svar()?, called: d.bool()? },
            t => return Err(d.malformed(format!("unknown op tag {t}"))),
        })
    }
}

impl AlterOp {
    fn encode(&self, e: &mut Encoder) {
        match self {
            AlterOp::AddColumn { column, fill } => {
                e.u8(1);
                let def = TableDef {
                    id: 0,
                    name: String::new(),
                    columns: vec![column.clone()],
                    primary_key: None,
                    indexes: vec![],
                };
                def.encode(e);
                fill.encode(e);
            }
            AlterOp::DropColumn(pos) => {
                e.u8(2);
                e.var(*pos as u64);
            }
            AlterOp::AddPrimaryKey(pk) => {
                e.u8(3);
                e.str(&pk.name);
                e.u32(pk.index_id);
                e.var(pk.columns.len() as u64);
                pk.columns.iter().for_each(|&c| e.var(c as u64));
            }
            AlterOp::RenameTable(name) => {
                e.u8(4);
                e.str(name);
            }
            AlterOp::RenameColumn(pos, name) => {
                e.u8(5);
                e.var(*pos as u64);
                e.str(name);
            }
            AlterOp::SetNotNull(pos, on) => {
                e.u8(6);
                e.var(*pos as u64);
                e.bool(*on);
            }
            AlterOp::SetDefault(pos, default) => {
                e.u8(7);
                e.var(*pos as u64);
                match default {
                    Some(d) => {
                        e.u8(1);
                        e.str(d);
                    }
                    None => e.u8(0),
                }
            }
            AlterOp::CreateIndex(index) => {
                e.u8(8);
                index.encode(e);
            }
            AlterOp::DropIndex(id) => {
                e.u8(9);
                e.u32(*id);
            }
        }
    }

    fn decode(d: &mut Decoder) -> Result<AlterOp> {
        // Column positions are checked against the table when the op is applied.
        let pos = |d: &mut Decoder| -> Result<usize> { Ok(d.var()? as usize) };
        Ok(match d.u8()? {
            1 => {
                let def = TableDef::decode(d)?;
                let column =
                    def.columns.into_iter().next().ok_or_else(|| Error::corrupted("ADD COLUMN without a column"))?;
                AlterOp::AddColumn { column, fill: Value::decode(d)? }
            }
            2 => AlterOp::DropColumn(pos(d)?),
            3 => {
                let name = d.str()?.to_string();
                let index_id = d.u32()?;
                let n = d.count()?;
                let columns = (0..n).map(|_| pos(d)).collect::<Result<Vec<_>>>()?;
                AlterOp::AddPrimaryKey(PrimaryKey { name, index_id, columns })
            }
            4 => AlterOp::RenameTable(d.str()?.to_string()),
            5 => AlterOp::RenameColumn(pos(d)?, d.str()?.to_string()),
            6 => AlterOp::SetNotNull(pos(d)?, d.bool()?),
            7 => {
                let p = pos(d)?;
                let default = if d.bool()? { Some(d.str()?.to_string()) } else { None };
                AlterOp::SetDefault(p, default)
            }
            8 => AlterOp::CreateIndex(IndexDef::decode(d, usize::MAX)?),
            9 => AlterOp::DropIndex(d.u32()?),
            t => return Err(d.malformed(format!("unknown alter tag {t}"))),
        })
    }
}
