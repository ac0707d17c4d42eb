//! INSERT, UPDATE and DELETE: binding and execution against a transaction.
//!
//! UPDATE and DELETE follow PostgreSQL's READ COMMITTED rules. Candidate rows come from the statement's
//! snapshot through the same access paths queries use; each is then locked, which returns its newest
//! version. If that version is not the one the snapshot showed (another transaction changed it and
//! committed while we waited), the WHERE clause is checked again against the newest version and the row
//! is skipped if it no longer matches, and the new values are computed from the newest version, so that
//! `SET abalance = abalance + 1` never loses a concurrent increment. Under REPEATABLE READ the lock itself
//! fails with 40001 instead.
//!
//! UPDATE ... FROM and DELETE ... USING join each candidate target row to the first row of the other
//! tables that the WHERE accepts for it, and join again from the newest version after the lock.
//!
//! An UPDATE that only adds to numeric columns of one row named by its whole primary key
//! (`SET abalance = abalance + $1 WHERE aid = $2`, no RETURNING, the columns in no index) is deferred
//! under READ COMMITTED: see [`increment_only`] and the transaction module. Its result is the same as
//! the locking path's; other incrementers of the row do not wait for it.
//!
//! INSERT ... ON CONFLICT handles conflicts with one constraint, its arbiter: the primary key or the
//! unique index the target names (any unique constraint for DO NOTHING without a target). The row is
//! inserted first; if that fails with 23505, the existing row holding the arbiter's values is looked up
//! (through the unique index for a UNIQUE column), locked, and updated; a conflict with another
//! constraint stays the statement's error. As in PostgreSQL, DO UPDATE may not touch a row the same
//! statement inserted or updated already (21000).
//!
//! Column DEFAULTs are stored as SQL text; they are parsed and bound when a statement needs them.

use std::collections::HashSet;
use std::sync::Arc;

use sqlparser::ast;
use sqlparser::dialect::PostgreSqlDialect;
use sqlparser::parser::Parser;

use crate::error::{Error, Result, SqlState};
use crate::sql::execute::{self, Env, TxnCell};
use crate::sql::expr::{binary, truth, BinOp, Expr};
use crate::sql::plan::{Access, Plan};
use crate::sql::planner::{choose_access, conjuncts, ident, name_parts, table_name, Planner, Scope};
use crate::sql::types;
use crate::storage::catalog::{Oid, TableDef};
use crate::storage::value::{DataType, Key, Row, Value};
use crate::txn::Change;

/// RETURNING: expressions over the written row, and the output columns.
#[derive(Clone, Debug)]
pub struct Returning {
    pub exprs: Vec<Expr>,
    pub columns: Vec<(String, DataType)>,
}

/// The constraint whose conflicts ON CONFLICT handles.
#[derive(Clone, Debug)]
pub enum Arbiter {
    PrimaryKey,
    /// A unique index, by oid, and its columns.
    Unique {
        index: Oid,
        columns: Vec<usize>,
    },
}

/// What to do when an inserted row collides with an existing key.
#[derive(Clone, Debug)]
pub enum OnConflict {
    /// Skip the row; without an arbiter, whatever unique constraint it violates.
    Nothing(Option<Arbiter>),
    /// Assignments over the existing row followed by the proposed (`excluded`) row.
    Update { arbiter: Arbiter, assignments: Vec<(usize, Expr)>, filter: Option<Expr> },
}

/// A bound INSERT.
#[derive(Clone, Debug)]
pub struct InsertPlan {
    pub def: Arc<TableDef>,
    pub targets: Vec<usize>,
    pub source: Plan,
    pub on_conflict: Option<OnConflict>,
    pub returning: Option<Returning>,
}

/// A bound UPDATE or DELETE (no assignments).
#[derive(Clone, Debug)]
pub struct WritePlan {
    pub def: Arc<TableDef>,
    pub access: Access,
    pub filter: Option<Expr>,
    pub assignments: Vec<(usize, Expr)>,
    pub returning: Option<Returning>,
    /// UPDATE ... FROM / DELETE ... USING: the other tables' rows. The WHERE, SET and RETURNING
    /// expressions read the target row followed by one of these.
    pub from: Option<Plan>,
}

fn lookup(p: &Planner, name: &ast::ObjectName) -> Result<Arc<TableDef>> {
    let n = table_name(name)?;
    p.state
        .table(&n)
        .map(|t| t.def.clone())
        .ok_or_else(|| Error::new(SqlState::UNDEFINED_TABLE, format!("relation \"{n}\" does not exist")))
}

fn column_of(def: &TableDef, name: &str) -> Result<usize> {
    def.column_index(name).ok_or_else(|| {
        Error::new(SqlState::UNDEFINED_COLUMN, format!("column \"{name}\" of relation \"{}\" does not exist", def.name))
    })
}

fn returning(p: &mut Planner, items: &Option<Vec<ast::SelectItem>>, scope: &Scope) -> Result<Option<Returning>> {
    let Some(items) = items else { return Ok(None) };
    let mut exprs = Vec::new();
    let mut columns = Vec::new();
    for item in items {
        match item {
            ast::SelectItem::Wildcard(_) => {
                for (i, c) in scope.columns.iter().enumerate().filter(|(_, c)| !c.hidden) {
                    exprs.push(Expr::Column(i));
                    columns.push((c.name.clone(), c.ty.clone()));
                }
            }
            ast::SelectItem::UnnamedExpr(e) => {
                let (x, t) = p.expr(e, scope)?;
                let name = match e {
                    ast::Expr::Identifier(i) => ident(i),
                    ast::Expr::CompoundIdentifier(v) => v.last().map(ident).unwrap_or_default(),
                    _ => "?column?".into(),
                };
                exprs.push(x);
                columns.push((name, t));
            }
            ast::SelectItem::ExprWithAlias { expr, alias } => {
                let (x, t) = p.expr(expr, scope)?;
                exprs.push(x);
                columns.push((ident(alias), t));
            }
            ast::SelectItem::QualifiedWildcard(ast::SelectItemQualifiedWildcardKind::ObjectName(n), _) => {
                let q = name_parts(n).pop().unwrap_or_default();
                let before = exprs.len();
                for (i, c) in scope.columns.iter().enumerate().filter(|(_, c)| c.table.as_deref() == Some(q.as_str())) {
                    exprs.push(Expr::Column(i));
                    columns.push((c.name.clone(), c.ty.clone()));
                }
                if exprs.len() == before {
                    return Err(Error::new(
                        SqlState::UNDEFINED_TABLE,
                        format!("missing FROM-clause entry for table \"{q}\""),
                    ));
                }
            }
            other => {
                return Err(Error::new(SqlState::FEATURE_NOT_SUPPORTED, format!("RETURNING {other} is not supported")))
            }
        }
    }
    Ok(Some(Returning { exprs, columns }))
}

fn assignments(p: &mut Planner, def: &TableDef, list: &[ast::Assignment], scope: &Scope) -> Result<Vec<(usize, Expr)>> {
    let mut out = Vec::new();
    for a in list {
        let ast::AssignmentTarget::ColumnName(name) = &a.target else {
            return Err(Error::new(SqlState::FEATURE_NOT_SUPPORTED, "tuple assignment is not supported"));
        };
        let col = column_of(def, &name_parts(name).pop().unwrap_or_default())?;
        let ty = def.columns[col].ty.clone();
        let x = if matches!(&a.value, ast::Expr::Identifier(i) if i.quote_style.is_none() && i.value.eq_ignore_ascii_case("default"))
        {
            default_expr(p, def, col)?
        } else {
            let (x, t) = p.expr(&a.value, scope)?;
            p.coerce_to(x, &t, &ty)?
        };
        out.push((col, x));
    }
    Ok(out)
}

/// The bound DEFAULT of a column (NULL if it has none).
pub fn default_expr(p: &mut Planner, def: &TableDef, col: usize) -> Result<Expr> {
    let Some(text) = &def.columns[col].default else { return Ok(Expr::Const(Value::Null)) };
    let parsed = Parser::new(&PostgreSqlDialect {})
        .try_with_sql(text)
        .and_then(|mut parser| parser.parse_expr())
        .map_err(|e| {
            Error::new(SqlState::SYNTAX_ERROR, format!("bad DEFAULT for column \"{}\": {e}", def.columns[col].name))
        })?;
    Ok(p.expr(&parsed, &Scope::default())?.0)
}

/// Binds an INSERT.
pub fn plan_insert(p: &mut Planner, ins: &ast::Insert) -> Result<InsertPlan> {
    let ast::TableObject::TableName(name) = &ins.table else {
        return Err(Error::new(SqlState::FEATURE_NOT_SUPPORTED, "INSERT into a table function is not supported"));
    };
    let def = lookup(p, name)?;
    let targets: Vec<usize> = if ins.columns.is_empty() {
        (0..def.columns.len()).collect()
    } else {
        ins.columns.iter().map(|c| column_of(&def, &name_parts(c).pop().unwrap_or_default())).collect::<Result<_>>()?
    };
    let target_types: Vec<DataType> = targets.iter().map(|&c| def.columns[c].ty.clone()).collect();
    let source = match &ins.source {
        None => Plan::Values(vec![vec![]]),
        Some(q) => match q.body.as_ref() {
            ast::SetExpr::Values(v) if q.order_by.is_none() && q.limit_clause.is_none() && q.fetch.is_none() => {
                let (plan, columns) = p.values(v, Some(&target_types))?;
                check_width(columns.len(), targets.len(), !ins.columns.is_empty())?;
                plan
            }
            _ => {
                let planned = p.query(q)?;
                check_width(planned.columns.len(), targets.len(), !ins.columns.is_empty())?;
                planned.plan
            }
        },
    };
    let alias = ins.table_alias.as_ref().map(|a| ident(&a.alias)).unwrap_or_else(|| def.name.clone());
    let scope = Scope::of_table(&def, &alias);
    let on_conflict = match &ins.on {
        None => None,
        Some(ast::OnInsert::OnConflict(oc)) => Some({
            let arbiter = match &oc.conflict_target {
                None => None,
                Some(target) => Some(arbiter(&def, target)?),
            };
            match &oc.action {
                ast::OnConflictAction::DoNothing => OnConflict::Nothing(arbiter),
                ast::OnConflictAction::DoUpdate(u) => {
                    let mut both = scope.clone();
                    both.columns.extend(Scope::of_table(&def, "excluded").columns);
                    let assignments = assignments(p, &def, &u.assignments, &both)?;
                    let filter = match &u.selection {
                        Some(w) => Some(p.expr(w, &both)?.0),
                        None => None,
                    };
                    OnConflict::Update { arbiter: arbiter.unwrap_or(Arbiter::PrimaryKey), assignments, filter }
                }
            }
        }),
        Some(_) => return Err(Error::new(SqlState::FEATURE_NOT_SUPPORTED, "ON DUPLICATE KEY is not supported")),
    };
    let returning = returning(p, &ins.returning, &scope)?;
    Ok(InsertPlan { def, targets, source, on_conflict, returning })
}

/// The arbiter an ON CONFLICT target names: the primary key or a unique index with exactly the target's
/// columns, or a constraint by name.
fn arbiter(def: &TableDef, target: &ast::ConflictTarget) -> Result<Arbiter> {
    match target {
        ast::ConflictTarget::Columns { columns: cols, .. } => {
            let mut wanted = cols.iter().map(|c| column_of(def, &ident(c))).collect::<Result<Vec<_>>>()?;
            wanted.sort_unstable();
            let matches = |columns: &[usize]| {
                let mut have = columns.to_vec();
                have.sort_unstable();
                have == wanted
            };
            if def.primary_key.as_ref().is_some_and(|pk| matches(&pk.columns)) {
                return Ok(Arbiter::PrimaryKey);
            }
            def.indexes
                .iter()
                .find(|i| i.unique && matches(&i.columns))
                .map(|i| Arbiter::Unique { index: i.id, columns: i.columns.clone() })
                .ok_or_else(|| {
                    Error::new(
                        SqlState("42P10"),
                        "there is no unique or exclusion constraint matching the ON CONFLICT specification",
                    )
                })
        }
        ast::ConflictTarget::OnConstraint(name) => {
            let name = name_parts(name).pop().unwrap_or_default();
            if def.primary_key.as_ref().is_some_and(|pk| pk.name == name) {
                return Ok(Arbiter::PrimaryKey);
            }
            def.indexes
                .iter()
                .find(|i| i.unique && i.constraint && i.name == name)
                .map(|i| Arbiter::Unique { index: i.id, columns: i.columns.clone() })
                .ok_or_else(|| {
                    Error::new(
                        SqlState::UNDEFINED_OBJECT,
                        format!("constraint \"{name}\" for table \"{}\" does not exist", def.name),
                    )
                })
        }
    }
}

/// Checks the width of an INSERT's source against its target columns. Without a column list the
/// source may leave trailing columns to their defaults, as in PostgreSQL.
fn check_width(source: usize, targets: usize, listed: bool) -> Result<()> {
    if source > targets {
        return Err(Error::new(SqlState::SYNTAX_ERROR, "INSERT has more expressions than target columns"));
    }
    if source < targets && listed {
        return Err(Error::new(SqlState::SYNTAX_ERROR, "INSERT has more target columns than expressions"));
    }
    Ok(())
}

fn from_table(tables: &[ast::TableWithJoins]) -> Result<(ast::ObjectName, Option<String>)> {
    match tables {
        [t] if t.joins.is_empty() => match &t.relation {
            ast::TableFactor::Table { name, alias, .. } => Ok((name.clone(), alias.as_ref().map(|a| ident(&a.name)))),
            _ => Err(Error::new(SqlState::FEATURE_NOT_SUPPORTED, "only plain tables can be updated")),
        },
        _ => Err(Error::new(SqlState::FEATURE_NOT_SUPPORTED, "UPDATE/DELETE with joins is not supported")),
    }
}

/// Binds an UPDATE.
pub fn plan_update(p: &mut Planner, u: &ast::Update) -> Result<WritePlan> {
    let (name, alias) = from_table(std::slice::from_ref(&u.table))?;
    let def = lookup(p, &name)?;
    let alias = alias.unwrap_or_else(|| def.name.clone());
    let others = match &u.from {
        Some(ast::UpdateTableFromKind::AfterSet(t)) => Some(t.as_slice()),
        Some(ast::UpdateTableFromKind::BeforeSet(_)) => {
            return Err(Error::new(SqlState::SYNTAX_ERROR, "FROM goes after SET in UPDATE"))
        }
        None => None,
    };
    let (scope, from) = target_scope(p, &def, &alias, others)?;
    let assignments = assignments(p, &def, &u.assignments, &scope)?;
    write_plan(p, def, scope, u.selection.as_ref(), assignments, &u.returning, from)
}

/// Binds a DELETE.
pub fn plan_delete(p: &mut Planner, d: &ast::Delete) -> Result<WritePlan> {
    let tables = match &d.from {
        ast::FromTable::WithFromKeyword(t) | ast::FromTable::WithoutKeyword(t) => t,
    };
    let (name, alias) = from_table(tables)?;
    let def = lookup(p, &name)?;
    let alias = alias.unwrap_or_else(|| def.name.clone());
    let (scope, from) = target_scope(p, &def, &alias, d.using.as_deref())?;
    write_plan(p, def, scope, d.selection.as_ref(), vec![], &d.returning, from)
}

/// The columns an UPDATE's or DELETE's expressions see: the target's, then those of the other tables of
/// UPDATE ... FROM or DELETE ... USING (planned as a query's FROM list), whose plan comes with them.
fn target_scope(
    p: &mut Planner,
    def: &TableDef,
    alias: &str,
    others: Option<&[ast::TableWithJoins]>,
) -> Result<(Scope, Option<Plan>)> {
    let mut scope = Scope::of_table(def, alias);
    let Some(others) = others.filter(|o| !o.is_empty()) else { return Ok((scope, None)) };
    let (plan, more) = p.from(others)?;
    if more.columns.iter().any(|c| c.table.as_deref() == Some(alias)) {
        return Err(Error::new(SqlState("42712"), format!("table name \"{alias}\" specified more than once")));
    }
    scope.columns.extend(more.columns);
    Ok((scope, Some(plan)))
}

fn write_plan(
    p: &mut Planner,
    def: Arc<TableDef>,
    scope: Scope,
    selection: Option<&ast::Expr>,
    assignments: Vec<(usize, Expr)>,
    ret: &Option<Vec<ast::SelectItem>>,
    from: Option<Plan>,
) -> Result<WritePlan> {
    let filter = match selection {
        Some(w) => Some(p.expr(w, &scope)?.0),
        None => None,
    };
    // Key lookups use only the conditions on the target's own columns (a join condition is not one).
    let access = choose_access(&def, filter.as_ref());
    let returning = returning(p, ret, &scope)?;
    Ok(WritePlan { def, access, filter, assignments, returning, from })
}

/// Checks NOT NULL and casts each value to its column's type.
fn finish_row(def: &TableDef, mut row: Vec<Value>) -> Result<Row> {
    for (i, col) in def.columns.iter().enumerate() {
        let v = std::mem::replace(&mut row[i], Value::Null);
        let v = types::cast(v, &col.ty)?;
        let pk = def.primary_key.as_ref().is_some_and(|pk| pk.columns.contains(&i));
        if v.is_null() && (col.not_null || pk) {
            return Err(Error::new(
                SqlState::NOT_NULL_VIOLATION,
                format!(
                    "null value in column \"{}\" of relation \"{}\" violates not-null constraint",
                    col.name, def.name
                ),
            ));
        }
        row[i] = v;
    }
    Ok(row.into())
}

/// What a write statement did: the row count and the RETURNING rows.
pub struct WriteResult {
    pub count: u64,
    pub rows: Vec<Vec<Value>>,
}

/// Runs an INSERT.
pub fn insert(txn: &TxnCell, plan: &InsertPlan, env: &Env, planner: &mut Planner) -> Result<WriteResult> {
    let def = &plan.def;
    let mut defaults: Vec<Option<Expr>> = vec![None; def.columns.len()];
    let mut default_of = |c: usize, planner: &mut Planner| -> Result<Expr> {
        if defaults[c].is_none() {
            defaults[c] = Some(default_expr(planner, def, c)?);
        }
        Ok(defaults[c].clone().unwrap_or(Expr::Const(Value::Null)))
    };
    let source_rows: Vec<Vec<Option<Value>>> = match &plan.source {
        Plan::Values(rows) => {
            let mut out = Vec::with_capacity(rows.len());
            for r in rows {
                let mut vals = Vec::with_capacity(r.len());
                for e in r {
                    vals.push(match e {
                        Expr::Call(name, _) if &**name == "__default" => None,
                        e => Some(e.eval(&[], env)?),
                    });
                }
                out.push(vals);
            }
            out
        }
        other => execute::run(other, env)?.into_iter().map(|r| r.into_iter().map(Some).collect()).collect(),
    };
    let mut result = WriteResult { count: 0, rows: Vec::new() };
    // The rows this statement inserted or updated, which DO UPDATE may not update (again).
    let mut affected: HashSet<Key> = HashSet::new();
    for src in source_rows {
        let mut row = vec![None; def.columns.len()];
        for (v, &c) in src.into_iter().zip(&plan.targets) {
            row[c] = Some(v);
        }
        let mut full = Vec::with_capacity(row.len());
        for (c, v) in row.into_iter().enumerate() {
            full.push(match v {
                Some(Some(v)) => v,
                _ => default_of(c, planner)?.eval(&[], env)?,
            });
        }
        let row = finish_row(def, full)?;
        let inserted = match &plan.on_conflict {
            None => {
                txn.borrow_mut().insert(def.id, row.clone())?;
                Some(row)
            }
            Some(oc) => upsert(txn, def, oc, row, &mut affected, env)?,
        };
        if let Some(row) = inserted {
            result.count += 1;
            if let Some(r) = &plan.returning {
                result.rows.push(r.exprs.iter().map(|e| e.eval(&row, env)).collect::<Result<_>>()?);
            }
        }
    }
    Ok(result)
}

/// Inserts a row under ON CONFLICT: returns the row written (inserted or updated), or None if it was
/// skipped.
fn upsert(
    txn: &TxnCell,
    def: &TableDef,
    oc: &OnConflict,
    proposed: Row,
    affected: &mut HashSet<Key>,
    env: &Env,
) -> Result<Option<Row>> {
    loop {
        let err = match txn.borrow_mut().insert(def.id, proposed.clone()) {
            Ok(key) => {
                if matches!(oc, OnConflict::Update { .. }) {
                    affected.insert(key);
                }
                return Ok(Some(proposed));
            }
            Err(e) if e.code == SqlState::UNIQUE_VIOLATION => e,
            Err(e) => return Err(e),
        };
        let (arbiter, assignments, filter) = match oc {
            OnConflict::Nothing(None) => return Ok(None),
            OnConflict::Nothing(Some(arbiter)) => {
                return match conflicting_key(txn, def, arbiter, &proposed) {
                    Some(_) => Ok(None),
                    None => Err(err),
                }
            }
            OnConflict::Update { arbiter, assignments, filter } => (arbiter, assignments, filter),
        };
        let Some(key) = conflicting_key(txn, def, arbiter, &proposed) else { return Err(err) };
        // The row may have been deleted, or its unique values changed, between the look-up and the lock:
        // then the insert is tried again.
        let Some(existing) = txn.borrow_mut().lock_row(def.id, &key)? else { continue };
        if let Arbiter::Unique { columns, .. } = arbiter {
            if columns.iter().any(|&c| existing[c] != proposed[c]) {
                continue;
            }
        }
        if !affected.insert(key.clone()) {
            return Err(Error::new(
                SqlState::CARDINALITY_VIOLATION,
                "ON CONFLICT DO UPDATE command cannot affect row a second time",
            )
            .with_hint(
                "Ensure that no rows proposed for insertion within the same command have duplicate constrained values.",
            ));
        }
        let both: Vec<Value> = existing.iter().chain(proposed.iter()).cloned().collect();
        if let Some(f) = filter {
            if truth(&f.eval(&both, env)?)? != Some(true) {
                return Ok(None);
            }
        }
        let mut new = existing.to_vec();
        for (c, e) in assignments {
            new[*c] = e.eval(&both, env)?;
        }
        let row = finish_row(def, new)?;
        let moved_to = txn.borrow_mut().update(def.id, &key, row.clone())?;
        affected.insert(moved_to);
        return Ok(Some(row));
    }
}

/// The key of the existing row `row` conflicts with on the arbiter, after inserting it failed (which
/// left its primary key locked, and the unique value it collided with).
fn conflicting_key(txn: &TxnCell, def: &TableDef, arbiter: &Arbiter, row: &Row) -> Option<Key> {
    match arbiter {
        Arbiter::PrimaryKey => {
            let pk = def.primary_key.as_ref()?;
            let key: Key = pk.columns.iter().map(|&c| row[c].clone()).collect::<Vec<_>>().into();
            txn.borrow_mut().exists(def.id, &key).then_some(key)
        }
        Arbiter::Unique { index, columns } => {
            let values: Vec<Value> = columns.iter().map(|&c| row[c].clone()).collect();
            if values.iter().any(Value::is_null) {
                return None;
            }
            txn.borrow().unique_holder(def.id, *index, &values)
        }
    }
}

/// Runs an UPDATE (with assignments) or a DELETE (without).
pub fn update_or_delete(txn: &TxnCell, plan: &WritePlan, env: &Env, delete: bool) -> Result<WriteResult> {
    let def = &plan.def;
    let table: Oid = def.id;
    // With FROM/USING the WHERE reads the other tables too, so it is checked on the joined rows below.
    let (others, scan_filter) = match &plan.from {
        Some(from) => (Some(execute::run(from, env)?), None),
        None => (None, plan.filter.as_ref()),
    };
    let candidates = execute::table_rows(env.state, table, &def.name, &plan.access, scan_filter, env)?;
    let width = def.columns.len();
    // The row, joined with the first row of the other tables that the WHERE accepts for it (as in
    // PostgreSQL, a target row is changed once however many rows it joins); None if the WHERE rejects it.
    let joined = |row: &[Value]| -> Result<Option<Vec<Value>>> {
        let accepts = |r: &[Value]| -> Result<bool> {
            Ok(match &plan.filter {
                Some(f) => truth(&f.eval(r, env)?)? == Some(true),
                None => true,
            })
        };
        let Some(others) = &others else { return Ok(accepts(row)?.then(|| row.to_vec())) };
        for o in others {
            crate::activity::check_interrupts()?;
            let mut r = row.to_vec();
            r.extend(o.iter().cloned());
            if accepts(&r)? {
                return Ok(Some(r));
            }
        }
        Ok(None)
    };
    let mut result = WriteResult { count: 0, rows: Vec::new() };
    for (key, seen) in candidates {
        // Without other tables the scan applied the WHERE already.
        if others.is_some() && joined(&seen)?.is_none() {
            continue;
        }
        let Some(newest) = txn.borrow_mut().lock_row(table, &key)? else { continue };
        let input = if others.is_none() && Row::ptr_eq(&newest, &seen) {
            newest.to_vec()
        } else {
            // A newer version than the snapshot showed (or a join to make): the WHERE is checked again.
            match joined(&newest)? {
                Some(r) => r,
                None => continue,
            }
        };
        let written = if delete {
            txn.borrow_mut().delete(table, &key)?;
            input
        } else {
            let mut new = input[..width].to_vec();
            for (c, e) in &plan.assignments {
                new[*c] = e.eval(&input, env)?;
            }
            let row = finish_row(def, new)?;
            txn.borrow_mut().update(table, &key, row.clone())?;
            let mut out = row.to_vec();
            out.extend(input[width..].iter().cloned());
            out
        };
        result.count += 1;
        if let Some(r) = &plan.returning {
            result.rows.push(r.exprs.iter().map(|e| e.eval(&written, env)).collect::<Result<_>>()?);
        }
    }
    Ok(result)
}

/// Whether an INSERT reads tables: a subquery, or ON CONFLICT (the existing row). Plain values read none; a
/// row with an increment of this transaction pending is materialized by the transaction itself if the
/// insert runs into its key.
pub fn insert_reads(plan: &InsertPlan) -> bool {
    plan.on_conflict.is_some()
        || !matches!(&plan.source, Plan::Values(rows) if rows.iter().flatten().all(|e| !e.has_subquery()))
}

/// One assignment of an increment-only UPDATE: `column = column + value` (or `value + column`, or
/// `column - value`), under zero or more casts (outermost first).
#[derive(Clone, Debug)]
pub struct Addend {
    column: usize,
    op: BinOp,
    column_left: bool,
    value: Expr,
    casts: Vec<DataType>,
}

impl Addend {
    fn of(column: usize, mut e: &Expr) -> Option<Addend> {
        let mut casts = Vec::new();
        while let Expr::Cast(inner, ty) = e {
            casts.push(ty.clone());
            e = inner;
        }
        let Expr::Binary(op @ (BinOp::Add | BinOp::Sub), a, b) = e else { return None };
        let (column_left, value) = match (a.as_ref(), b.as_ref()) {
            (Expr::Column(c), v) if *c == column => (true, v),
            (v, Expr::Column(c)) if *c == column && *op == BinOp::Add => (false, v),
            _ => return None,
        };
        value.is_row_independent().then(|| Addend { column, op: *op, column_left, value: value.clone(), casts })
    }

    fn apply(&self, row: &mut [Value], value: &Value) -> Result<()> {
        let old = std::mem::replace(&mut row[self.column], Value::Null);
        let mut v =
            if self.column_left { binary(self.op, old, value.clone())? } else { binary(self.op, value.clone(), old)? };
        for ty in self.casts.iter().rev() {
            v = types::cast(v, ty)?;
        }
        row[self.column] = v;
        Ok(())
    }
}

/// Whether an UPDATE only adds to numeric columns of the one row its WHERE names by primary key, and
/// nothing else: then the new row is the same function of whichever version it is applied to, and
/// increments of the row by different transactions commute. Returns the assignments if so.
pub fn increment_only(plan: &WritePlan) -> Option<Vec<Addend>> {
    let def = &plan.def;
    let pk = def.primary_key.as_ref()?;
    if plan.returning.is_some()
        || plan.from.is_some()
        || plan.assignments.is_empty()
        || !matches!(&plan.access, Access::Keys(k) if k.len() == 1)
    {
        return None;
    }
    // The WHERE is the key and only the key, so a newer version of the row needs no second look.
    let parts = conjuncts(plan.filter.as_ref()?);
    let on_key = |p: &&Expr| match p {
        Expr::Binary(BinOp::Eq, a, b) => match (a.as_ref(), b.as_ref()) {
            (Expr::Column(c), e) | (e, Expr::Column(c)) => pk.columns.contains(c) && e.is_row_independent(),
            _ => false,
        },
        _ => false,
    };
    if parts.len() != pk.columns.len() || !parts.iter().all(on_key) {
        return None;
    }
    let mut addends: Vec<Addend> = Vec::new();
    for (c, e) in &plan.assignments {
        let numeric =
            matches!(def.columns[*c].ty, DataType::Int2 | DataType::Int4 | DataType::Int8 | DataType::Numeric(_));
        let indexed = pk.columns.contains(c) || def.indexes.iter().any(|i| i.columns.contains(c));
        if !numeric || indexed || addends.iter().any(|a| a.column == *c) {
            return None;
        }
        addends.push(Addend::of(*c, e)?);
    }
    Some(addends)
}

/// Runs an increment-only UPDATE (see [`increment_only`]): the values are computed now, and the
/// transaction applies them to the newest version of the row when it commits.
pub fn increment(txn: &TxnCell, plan: &WritePlan, addends: Vec<Addend>, env: &Env) -> Result<WriteResult> {
    let def = plan.def.clone();
    let candidates = execute::table_rows(env.state, def.id, &def.name, &plan.access, plan.filter.as_ref(), env)?;
    let values = addends.iter().map(|a| a.value.eval(&[], env)).collect::<Result<Vec<_>>>()?;
    let table = def.id;
    let change: Change = Arc::new(move |row: &Row| {
        let mut new = row.to_vec();
        for (a, v) in addends.iter().zip(&values) {
            a.apply(&mut new, v)?;
        }
        finish_row(&def, new)
    });
    let mut result = WriteResult { count: 0, rows: Vec::new() };
    for (key, _) in candidates {
        if txn.borrow_mut().increment(table, &key, change.clone())? {
            result.count += 1;
        }
    }
    Ok(result)
}
