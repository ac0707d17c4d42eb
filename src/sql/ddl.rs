//! DDL: CREATE/DROP/TRUNCATE/ALTER TABLE and CREATE/DROP INDEX, turned into the engine's catalog
//! operations inside the current transaction.
//!
//! DDL is transactional, as in PostgreSQL: it is part of the transaction's write set and reaches the WAL
//! with its commit. Names follow PostgreSQL's defaults (`<table>_pkey`, `<table>_<column>_key`,
//! `<table>_<column>_idx`). Storage options such as `WITH (fillfactor=100)` are accepted and ignored:
//! tables live in memory.

use sqlparser::ast;

use crate::error::{Error, Result, SqlState};
use crate::sql::planner::{ident, name_parts, table_name};
use crate::sql::types;
use crate::storage::catalog::{ColumnDef, IndexDef, Oid, PrimaryKey, SequenceDef, TableDef};
use crate::storage::state::AlterOp;
use crate::storage::value::{DataType, Value};
use crate::txn::Transaction;

/// What a DDL statement reports: its command tag and any notices.
pub struct DdlResult {
    pub tag: String,
    pub notices: Vec<String>,
}

fn tag(t: &str) -> DdlResult {
    DdlResult { tag: t.into(), notices: vec![] }
}

fn index_columns(def_cols: &[ColumnDef], cols: &[ast::IndexColumn], table: &str) -> Result<Vec<usize>> {
    cols.iter()
        .map(|c| {
            let name = match &c.column.expr {
                ast::Expr::Identifier(i) => ident(i),
                other => {
                    return Err(Error::new(
                        SqlState::FEATURE_NOT_SUPPORTED,
                        format!("index on expression {other} is not supported"),
                    ))
                }
            };
            def_cols.iter().position(|d| d.name == name).ok_or_else(|| {
                Error::new(SqlState::UNDEFINED_COLUMN, format!("column \"{name}\" named in key does not exist"))
                    .with_detail(format!("Table \"{table}\"."))
            })
        })
        .collect()
}

fn table_oid(txn: &Transaction, name: &ast::ObjectName) -> Result<Oid> {
    let n = table_name(name)?;
    txn.state()
        .table(&n)
        .map(|t| t.def.id)
        .ok_or_else(|| Error::new(SqlState::UNDEFINED_TABLE, format!("relation \"{n}\" does not exist")))
}

fn unique_name(txn: &Transaction, base: &str) -> String {
    let taken = |n: &str| {
        txn.state().names.contains_key(n)
            || txn.state().tables.values().any(|t| {
                t.def.indexes.iter().any(|i| i.name == n) || t.def.primary_key.as_ref().is_some_and(|p| p.name == n)
            })
    };
    if !taken(base) {
        return base.to_string();
    }
    (1..).map(|i| format!("{base}{i}")).find(|n| !taken(n)).unwrap_or_else(|| base.to_string())
}

/// CREATE TABLE.
pub fn create_table(txn: &mut Transaction, ct: &ast::CreateTable) -> Result<DdlResult> {
    let name = table_name(&ct.name)?;
    if txn.state().table(&name).is_some() {
        if ct.if_not_exists {
            return Ok(DdlResult {
                tag: "CREATE TABLE".into(),
                notices: vec![format!("relation \"{name}\" already exists, skipping")],
            });
        }
        return Err(Error::new(SqlState::DUPLICATE_TABLE, format!("relation \"{name}\" already exists")));
    }
    if ct.query.is_some() || ct.like.is_some() {
        return Err(Error::new(SqlState::FEATURE_NOT_SUPPORTED, "CREATE TABLE AS / LIKE is not supported"));
    }
    let id = txn.allocate_oid();
    let mut columns: Vec<ColumnDef> = Vec::new();
    let mut pk: Option<Vec<usize>> = None;
    let mut uniques: Vec<Vec<usize>> = Vec::new();
    for c in &ct.columns {
        let cname = ident(&c.name);
        if columns.iter().any(|x| x.name == cname) {
            return Err(Error::new(SqlState::DUPLICATE_COLUMN, format!("column \"{cname}\" specified more than once")));
        }
        let ty = types::data_type(&c.data_type)?;
        let mut col = ColumnDef { name: cname.clone(), ty, not_null: false, default: None };
        if types::is_serial(&c.data_type) {
            // serial: an integer column whose default takes the next value of a sequence it owns.
            let seq_name = unique_name(txn, &format!("{name}_{cname}_seq"));
            let max = match col.ty {
                DataType::Int2 => i16::MAX as i64,
                DataType::Int4 => i32::MAX as i64,
                _ => i64::MAX,
            };
            let def = SequenceDef {
                id: txn.allocate_oid(),
                name: seq_name.clone(),
                start: 1,
                increment: 1,
                min: 1,
                max,
                cycle: false,
            };
            txn.create_sequence(def)?;
            col.default = Some(format!("nextval('{seq_name}'::regclass)"));
            col.not_null = true;
        }
        let pos = columns.len();
        for o in &c.options {
            match &o.option {
                ast::ColumnOption::NotNull => col.not_null = true,
                ast::ColumnOption::Null => col.not_null = false,
                ast::ColumnOption::Default(e) => col.default = Some(e.to_string()),
                ast::ColumnOption::PrimaryKey(_) => {
                    if pk.is_some() {
                        return Err(Error::new(
                            SqlState::INVALID_TABLE_DEFINITION,
                            format!("multiple primary keys for table \"{name}\" are not allowed"),
                        ));
                    }
                    pk = Some(vec![pos]);
                    col.not_null = true;
                }
                ast::ColumnOption::Unique(_) => uniques.push(vec![pos]),
                ast::ColumnOption::Check(_) | ast::ColumnOption::ForeignKey(_) | ast::ColumnOption::Collation(_) => {}
                other => {
                    return Err(Error::new(
                        SqlState::FEATURE_NOT_SUPPORTED,
                        format!("column option {other} is not supported"),
                    ))
                }
            }
        }
        columns.push(col);
    }
    for tc in &ct.constraints {
        match tc {
            ast::TableConstraint::PrimaryKey(p) => {
                if pk.is_some() {
                    return Err(Error::new(
                        SqlState::INVALID_TABLE_DEFINITION,
                        format!("multiple primary keys for table \"{name}\" are not allowed"),
                    ));
                }
                let cols = index_columns(&columns, &p.columns, &name)?;
                for &c in &cols {
                    columns[c].not_null = true;
                }
                pk = Some(cols);
            }
            ast::TableConstraint::Unique(u) => uniques.push(index_columns(&columns, &u.columns, &name)?),
            ast::TableConstraint::Check(_) | ast::TableConstraint::ForeignKey(_) => {}
            other => {
                return Err(Error::new(SqlState::FEATURE_NOT_SUPPORTED, format!("constraint {other} is not supported")))
            }
        }
    }
    let primary_key =
        pk.map(|cols| PrimaryKey { name: format!("{name}_pkey"), index_id: txn.allocate_oid(), columns: cols });
    let mut indexes = Vec::new();
    for cols in uniques {
        let base =
            format!("{name}_{}_key", cols.iter().map(|&c| columns[c].name.as_str()).collect::<Vec<_>>().join("_"));
        let iname = unique_name(txn, &base);
        indexes.push(IndexDef { id: txn.allocate_oid(), name: iname, columns: cols, unique: true, constraint: true });
    }
    txn.create_table(TableDef { id, name, columns, primary_key, indexes })?;
    Ok(tag("CREATE TABLE"))
}

/// DROP TABLE / DROP INDEX.
pub fn drop(
    txn: &mut Transaction,
    object_type: &ast::ObjectType,
    if_exists: bool,
    names: &[ast::ObjectName],
) -> Result<DdlResult> {
    let mut notices = Vec::new();
    match object_type {
        ast::ObjectType::Table => {
            for n in names {
                let name = table_name(n)?;
                match txn.state().table(&name).map(|t| t.def.clone()) {
                    Some(def) => {
                        txn.drop_table(def.id)?;
                        for seq in owned_sequences(&def) {
                            if let Some(id) = txn.state().sequence(&seq).map(|s| s.id) {
                                txn.drop_sequence(id)?;
                            }
                        }
                    }
                    None if if_exists => notices.push(format!("table \"{name}\" does not exist, skipping")),
                    None => {
                        return Err(Error::new(SqlState::UNDEFINED_TABLE, format!("table \"{name}\" does not exist")))
                    }
                }
            }
            Ok(DdlResult { tag: "DROP TABLE".into(), notices })
        }
        ast::ObjectType::Index => {
            for n in names {
                let name = name_parts(n).pop().unwrap_or_default();
                let found = txn.state().tables.values().find_map(|t| {
                    t.def.indexes.iter().find(|i| i.name == name).map(|i| (t.def.id, i.id, i.constraint))
                });
                match found {
                    Some((_, _, true)) => {
                        return Err(Error::new(
                            SqlState("2BP01"),
                            format!("cannot drop index {name} because constraint {name} on its table requires it"),
                        ))
                    }
                    Some((table, index, false)) => txn.alter_table(table, AlterOp::DropIndex(index))?,
                    None if if_exists => notices.push(format!("index \"{name}\" does not exist, skipping")),
                    None => {
                        return Err(Error::new(SqlState::UNDEFINED_OBJECT, format!("index \"{name}\" does not exist")))
                    }
                }
            }
            Ok(DdlResult { tag: "DROP INDEX".into(), notices })
        }
        ast::ObjectType::Sequence => {
            for n in names {
                let name = name_parts(n).pop().unwrap_or_default();
                match txn.state().sequence(&name).map(|s| s.id) {
                    Some(id) => txn.drop_sequence(id)?,
                    None if if_exists => notices.push(format!("sequence \"{name}\" does not exist, skipping")),
                    None => {
                        return Err(Error::new(
                            SqlState::UNDEFINED_TABLE,
                            format!("sequence \"{name}\" does not exist"),
                        ))
                    }
                }
            }
            Ok(DdlResult { tag: "DROP SEQUENCE".into(), notices })
        }
        other => Err(Error::new(SqlState::FEATURE_NOT_SUPPORTED, format!("DROP {other} is not supported"))),
    }
}

/// The sequences a table's serial columns own (named in their `nextval('...'::regclass)` defaults).
fn owned_sequences(def: &TableDef) -> Vec<String> {
    def.columns
        .iter()
        .filter_map(|c| c.default.as_deref())
        .filter_map(|d| d.strip_prefix("nextval('"))
        .filter_map(|d| d.split('\'').next())
        .map(str::to_string)
        .collect()
}

fn int_option(e: &ast::Expr) -> Result<i64> {
    e.to_string()
        .replace(' ', "")
        .parse()
        .map_err(|_| Error::new(SqlState::SYNTAX_ERROR, format!("sequence option must be an integer, not {e}")))
}

/// CREATE SEQUENCE.
pub fn create_sequence(
    txn: &mut Transaction,
    name: &ast::ObjectName,
    if_not_exists: bool,
    options: &[ast::SequenceOptions],
) -> Result<DdlResult> {
    let name = table_name(name)?;
    if txn.state().sequence(&name).is_some() && if_not_exists {
        return Ok(DdlResult {
            tag: "CREATE SEQUENCE".into(),
            notices: vec![format!("relation \"{name}\" already exists, skipping")],
        });
    }
    let (mut increment, mut min, mut max, mut start, mut cycle) = (1i64, None, None, None, false);
    for o in options {
        match o {
            ast::SequenceOptions::IncrementBy(e, _) => increment = int_option(e)?,
            ast::SequenceOptions::MinValue(Some(e)) => min = Some(int_option(e)?),
            ast::SequenceOptions::MaxValue(Some(e)) => max = Some(int_option(e)?),
            ast::SequenceOptions::StartWith(e, _) => start = Some(int_option(e)?),
            ast::SequenceOptions::Cycle(no) => cycle = !*no,
            _ => {}
        }
    }
    let min = min.unwrap_or(if increment > 0 { 1 } else { i64::MIN });
    let max = max.unwrap_or(if increment > 0 { i64::MAX } else { -1 });
    let start = start.unwrap_or(if increment > 0 { min } else { max });
    let def = SequenceDef { id: txn.allocate_oid(), name, start, increment, min, max, cycle };
    txn.create_sequence(def)?;
    Ok(tag("CREATE SEQUENCE"))
}

/// TRUNCATE.
pub fn truncate(txn: &mut Transaction, t: &ast::Truncate) -> Result<DdlResult> {
    let mut ids = Vec::new();
    for target in &t.table_names {
        ids.push(table_oid(txn, &target.name)?);
    }
    for id in ids {
        txn.truncate(id)?;
    }
    Ok(tag("TRUNCATE TABLE"))
}

/// CREATE INDEX.
pub fn create_index(txn: &mut Transaction, ci: &ast::CreateIndex) -> Result<DdlResult> {
    let table = table_oid(txn, &ci.table_name)?;
    let def = txn.state().table_by_id(table).map(|t| t.def.clone()).ok_or_else(|| Error::internal("table vanished"))?;
    let cols = index_columns(&def.columns, &ci.columns, &def.name)?;
    let base = match &ci.name {
        Some(n) => name_parts(n).pop().unwrap_or_default(),
        None => format!(
            "{}_{}_idx",
            def.name,
            cols.iter().map(|&c| def.columns[c].name.as_str()).collect::<Vec<_>>().join("_")
        ),
    };
    let exists = def.indexes.iter().any(|i| i.name == base) || txn.state().names.contains_key(base.as_str());
    if exists && ci.name.is_some() {
        if ci.if_not_exists {
            return Ok(DdlResult {
                tag: "CREATE INDEX".into(),
                notices: vec![format!("relation \"{base}\" already exists, skipping")],
            });
        }
        return Err(Error::new(SqlState::DUPLICATE_TABLE, format!("relation \"{base}\" already exists")));
    }
    let name = unique_name(txn, &base);
    let index = IndexDef { id: txn.allocate_oid(), name, columns: cols, unique: ci.unique, constraint: false };
    if ci.unique {
        check_unique(txn, table, &index.columns, &index.name)?;
    }
    txn.alter_table(table, AlterOp::CreateIndex(index))?;
    Ok(tag("CREATE INDEX"))
}

fn check_unique(txn: &Transaction, table: Oid, cols: &[usize], name: &str) -> Result<()> {
    let Some(t) = txn.state().table_by_id(table) else { return Ok(()) };
    let mut seen = std::collections::HashSet::new();
    for row in t.rows.values() {
        let key: Vec<Value> = cols.iter().map(|&c| row[c].clone()).collect();
        if key.iter().any(Value::is_null) {
            continue;
        }
        if !seen.insert(key) {
            return Err(Error::new(SqlState::UNIQUE_VIOLATION, format!("could not create unique index \"{name}\"")));
        }
    }
    Ok(())
}

/// ALTER TABLE.
pub fn alter_table(txn: &mut Transaction, at: &ast::AlterTable) -> Result<DdlResult> {
    let name = table_name(&at.name)?;
    let Some(table) = txn.state().table(&name).map(|t| t.def.id) else {
        if at.if_exists {
            return Ok(DdlResult {
                tag: "ALTER TABLE".into(),
                notices: vec![format!("relation \"{name}\" does not exist, skipping")],
            });
        }
        return Err(Error::new(SqlState::UNDEFINED_TABLE, format!("relation \"{name}\" does not exist")));
    };
    for op in &at.operations {
        let def =
            txn.state().table_by_id(table).map(|t| t.def.clone()).ok_or_else(|| Error::internal("table vanished"))?;
        let col = |n: &ast::Ident| {
            let n = ident(n);
            def.column_index(&n).ok_or_else(|| {
                Error::new(
                    SqlState::UNDEFINED_COLUMN,
                    format!("column \"{n}\" of relation \"{}\" does not exist", def.name),
                )
            })
        };
        let alter = match op {
            ast::AlterTableOperation::AddColumn { column_def, if_not_exists, .. } => {
                let cname = ident(&column_def.name);
                if def.column_index(&cname).is_some() {
                    if *if_not_exists {
                        continue;
                    }
                    return Err(Error::new(
                        SqlState::DUPLICATE_COLUMN,
                        format!("column \"{cname}\" of relation \"{name}\" already exists"),
                    ));
                }
                let ty = types::data_type(&column_def.data_type)?;
                let mut column = ColumnDef { name: cname, ty: ty.clone(), not_null: false, default: None };
                let mut fill = Value::Null;
                for o in &column_def.options {
                    match &o.option {
                        ast::ColumnOption::NotNull => column.not_null = true,
                        ast::ColumnOption::Default(e) => {
                            column.default = Some(e.to_string());
                            if let ast::Expr::Value(v) = e {
                                let text = match &v.value {
                                    ast::Value::SingleQuotedString(s) => s.clone(),
                                    other => other.to_string(),
                                };
                                if !matches!(v.value, ast::Value::Null) {
                                    fill = types::parse_value(&text, &ty)?;
                                }
                            }
                        }
                        ast::ColumnOption::Null => {}
                        other => {
                            return Err(Error::new(
                                SqlState::FEATURE_NOT_SUPPORTED,
                                format!("column option {other} is not supported here"),
                            ))
                        }
                    }
                }
                if column.not_null
                    && fill.is_null()
                    && txn.state().table_by_id(table).is_some_and(|t| !t.rows.is_empty())
                {
                    return Err(Error::new(
                        SqlState::NOT_NULL_VIOLATION,
                        format!("column \"{}\" of relation \"{name}\" contains null values", column.name),
                    ));
                }
                AlterOp::AddColumn { column, fill }
            }
            ast::AlterTableOperation::DropColumn { column_names, if_exists, .. } => {
                let Some(first) = column_names.first() else { continue };
                match col(first) {
                    Ok(c) => {
                        if def.primary_key.as_ref().is_some_and(|pk| pk.columns.contains(&c)) {
                            return Err(Error::new(
                                SqlState::FEATURE_NOT_SUPPORTED,
                                "cannot drop a primary key column",
                            ));
                        }
                        AlterOp::DropColumn(c)
                    }
                    Err(_) if *if_exists => continue,
                    Err(e) => return Err(e),
                }
            }
            ast::AlterTableOperation::AddConstraint { constraint, .. } => match constraint {
                ast::TableConstraint::PrimaryKey(p) => {
                    if def.primary_key.is_some() {
                        return Err(Error::new(
                            SqlState::INVALID_TABLE_DEFINITION,
                            format!("multiple primary keys for table \"{name}\" are not allowed"),
                        ));
                    }
                    let cols = index_columns(&def.columns, &p.columns, &name)?;
                    let pname = p.name.as_ref().map(ident).unwrap_or_else(|| format!("{name}_pkey"));
                    AlterOp::AddPrimaryKey(PrimaryKey { name: pname, index_id: txn.allocate_oid(), columns: cols })
                }
                ast::TableConstraint::Unique(u) => {
                    let cols = index_columns(&def.columns, &u.columns, &name)?;
                    let base = u.name.as_ref().map(ident).unwrap_or_else(|| {
                        format!(
                            "{name}_{}_key",
                            cols.iter().map(|&c| def.columns[c].name.as_str()).collect::<Vec<_>>().join("_")
                        )
                    });
                    let iname = unique_name(txn, &base);
                    check_unique(txn, table, &cols, &iname)?;
                    AlterOp::CreateIndex(IndexDef {
                        id: txn.allocate_oid(),
                        name: iname,
                        columns: cols,
                        unique: true,
                        constraint: true,
                    })
                }
                ast::TableConstraint::ForeignKey(_) | ast::TableConstraint::Check(_) => continue,
                other => {
                    return Err(Error::new(
                        SqlState::FEATURE_NOT_SUPPORTED,
                        format!("constraint {other} is not supported"),
                    ))
                }
            },
            ast::AlterTableOperation::RenameTable { table_name: new } => {
                let n = match new {
                    ast::RenameTableNameKind::As(n) | ast::RenameTableNameKind::To(n) => table_name(n)?,
                };
                AlterOp::RenameTable(n)
            }
            ast::AlterTableOperation::RenameColumn { old_column_name, new_column_name } => {
                let c = col(old_column_name)?;
                let n = ident(new_column_name);
                if def.column_index(&n).is_some() {
                    return Err(Error::new(
                        SqlState::DUPLICATE_COLUMN,
                        format!("column \"{n}\" of relation \"{name}\" already exists"),
                    ));
                }
                AlterOp::RenameColumn(c, n)
            }
            ast::AlterTableOperation::AlterColumn { column_name, op } => {
                let c = col(column_name)?;
                match op {
                    ast::AlterColumnOperation::SetNotNull => {
                        let has_null =
                            txn.state().table_by_id(table).is_some_and(|t| t.rows.values().any(|r| r[c].is_null()));
                        if has_null {
                            return Err(Error::new(
                                SqlState::NOT_NULL_VIOLATION,
                                format!(
                                    "column \"{}\" of relation \"{name}\" contains null values",
                                    def.columns[c].name
                                ),
                            ));
                        }
                        AlterOp::SetNotNull(c, true)
                    }
                    ast::AlterColumnOperation::DropNotNull => AlterOp::SetNotNull(c, false),
                    ast::AlterColumnOperation::SetDefault { value } => AlterOp::SetDefault(c, Some(value.to_string())),
                    ast::AlterColumnOperation::DropDefault => AlterOp::SetDefault(c, None),
                    other => {
                        return Err(Error::new(
                            SqlState::FEATURE_NOT_SUPPORTED,
                            format!("ALTER COLUMN {other} is not supported"),
                        ))
                    }
                }
            }
            other => {
                return Err(Error::new(
                    SqlState::FEATURE_NOT_SUPPORTED,
                    format!("ALTER TABLE {other} is not supported"),
                ))
            }
        };
        txn.alter_table(table, alter)?;
    }
    Ok(tag("ALTER TABLE"))
}
