//! The planner: binds sqlparser's AST to the catalog and turns queries into [`Plan`]s.
//!
//! Binding resolves every name against a [`Scope`], the columns a plan node produces (with the table
//! alias each came from). A name not found in the current scope is looked up in the scopes of enclosing
//! queries, giving a correlated reference ([`Expr::Outer`]). Aggregation re-binds the select list over the
//! aggregate's output: a GROUP BY expression (matched by its text) or an aggregate call becomes a column
//! of that output, and any other column reference is an error, as in PostgreSQL.
//!
//! Types flow bottom-up, and untyped inputs take the type of what they meet, which is how PostgreSQL
//! types its `unknown` literals and parameters:
//! - `$n` gets the type of the other operand of an operator (`abalance + $1`, `aid = $2`), of the column
//!   it is assigned or inserted to, or of its cast; it stays `text` otherwise;
//! - a quoted literal compared with or added to a typed operand is cast to that type at plan time
//!   (`c.oid = '16467'`).
//!
//! Access paths: for a query over one table, the WHERE clause's conjuncts are searched for equalities on
//! the whole primary key (point lookups, also from `IN` lists), bounds on its first column (range scans),
//! or equalities on a secondary index's columns (index lookups). The chosen path only narrows the rows
//! read; the whole WHERE stays as the table node's filter.

use std::collections::HashMap;
use std::sync::Arc;

use sqlparser::ast;

use crate::error::{Error, Result, SqlState};
use crate::sql::catalog;
use crate::sql::expr::{BinOp, Expr};
use crate::sql::functions;
use crate::sql::plan::{
    Access, AggFunc, Aggregate, Frame, FrameBound, JoinKind, Plan, SetOpKind, SortKey, WindowFunc, WindowKind,
};
use crate::sql::types;
use crate::storage::catalog::TableDef;
use crate::storage::state::DbState;
use crate::storage::value::{DataType, Value};

/// A column a plan node produces.
#[derive(Clone, Debug)]
pub struct Column {
    /// The table (or alias) it belongs to, for qualified references.
    pub table: Option<String>,
    pub name: String,
    pub ty: DataType,
    /// Reachable only by its qualified name and left out of `*`: a column a JOIN ... USING merged into one
    /// of the join's own.
    pub hidden: bool,
}

/// The columns visible to expressions at one point of a query.
#[derive(Clone, Debug, Default)]
pub struct Scope {
    pub columns: Vec<Column>,
}

impl Scope {
    /// A scope of a table's columns under an alias.
    pub fn of_table(def: &TableDef, alias: &str) -> Scope {
        Scope {
            columns: def
                .columns
                .iter()
                .map(|c| Column {
                    hidden: false,
                    table: Some(alias.to_string()),
                    name: c.name.clone(),
                    ty: c.ty.clone(),
                })
                .collect(),
        }
    }

    fn find(&self, table: Option<&str>, name: &str) -> Result<Option<usize>> {
        let mut found = None;
        for (i, c) in self.columns.iter().enumerate() {
            if c.name == name && (table.is_none() && !c.hidden || table.is_some() && c.table.as_deref() == table) {
                if found.is_some() {
                    return Err(Error::new(SqlState("42702"), format!("column reference \"{name}\" is ambiguous")));
                }
                found = Some(i);
            }
        }
        Ok(found)
    }
}

/// A planned query: its plan and the names and types of its output columns.
#[derive(Clone, Debug)]
pub struct Query {
    pub plan: Plan,
    pub columns: Vec<(String, DataType)>,
}

/// What an aggregating select binds its output expressions against.
struct AggCtx {
    input: Scope,
    group_text: Vec<String>,
    group_types: Vec<DataType>,
    aggs: Vec<Aggregate>,
    agg_types: Vec<DataType>,
    /// The window functions' result columns (hidden names and types), computed after the aggregates: an
    /// identifier naming one binds to a placeholder column, renumbered once the aggregates are known (see
    /// [`window_placeholder`]).
    windows: Vec<(String, DataType)>,
}

/// Binds and plans statements against one database state.
/// The scope of a subquery in FROM: its output columns under `table`, renamed by the alias's column list.
fn derived_scope(columns: &[(String, DataType)], table: Option<String>, alias: Option<&ast::TableAlias>) -> Scope {
    let mut scope = Scope {
        columns: columns
            .iter()
            .map(|(n, t)| Column { hidden: false, table: table.clone(), name: n.clone(), ty: t.clone() })
            .collect(),
    };
    rename_columns(&mut scope, alias);
    scope
}

/// Renames the first columns of `scope` after an alias's column list (`AS q(a, b)`).
fn rename_columns(scope: &mut Scope, alias: Option<&ast::TableAlias>) {
    for (c, n) in scope.columns.iter_mut().zip(alias.iter().flat_map(|a| &a.columns)) {
        c.name = ident(&n.name);
    }
}

/// A common table expression: its name, column names (if given) and query. Each reference plans the query
/// as a subquery in FROM, as PostgreSQL inlines a non-recursive CTE.
///
/// Under WITH RECURSIVE, a CTE whose query is `anchor UNION [ALL] step` with `step` reading the CTE itself
/// is planned as a [`Plan::RecursiveUnion`]: the anchor first (it cannot see the CTE), then the step with
/// the CTE's name bound to the working table, typed by the anchor's columns.
#[derive(Clone)]
struct Cte {
    name: String,
    columns: Vec<String>,
    query: ast::Query,
    /// Declared under WITH RECURSIVE.
    recursive: bool,
    /// Inside a recursive step: the name reads the working table with this id and these columns.
    work: Option<(usize, Vec<(String, DataType)>)>,
}

/// Ids for working tables, unique within the process so that nested recursive unions never share one.
static NEXT_WORK_TABLE: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(0);

/// Whether a recursive step's column type matches its anchor's, as PostgreSQL requires (lengths and
/// precisions aside).
fn same_type_family(a: &DataType, b: &DataType) -> bool {
    let text = |t: &DataType| matches!(t, DataType::Text | DataType::Varchar(_) | DataType::Char(_));
    let numeric = |t: &DataType| matches!(t, DataType::Numeric { .. });
    (text(a) && text(b)) || (numeric(a) && numeric(b)) || a == b
}

pub struct Planner<'a> {
    pub state: &'a DbState,
    /// Parameter types, inferred or given (None: not yet known).
    pub params: Vec<Option<DataType>>,
    outer: Vec<Scope>,
    /// The common table expressions in scope (`WITH name AS (...)`), innermost last.
    ctes: Vec<Cte>,
    /// Literals to plan as parameters, when planning a statement shape (see [`Slots`]).
    pub slots: Option<Slots>,
    /// How often each working table has been referenced while its step is planned.
    work_refs: HashMap<usize, usize>,
}

/// The literals of a statement, planned as parameters: the literal that starts at `spans[i]` (line,
/// column) becomes parameter `i` (whose type the caller put in `params[i]`), and `used[i]` records that it
/// was planned as a value. A literal the planner reads some other way (an ORDER BY position, a typed
/// string) is left as it is and not marked.
#[derive(Default)]
pub struct Slots {
    pub spans: Vec<(u64, u64)>,
    pub used: Vec<bool>,
}

/// A number or string literal's value and type, as the planner makes them.
pub fn literal_value(v: &ast::Value) -> Result<(Value, DataType)> {
    Ok(match v {
        ast::Value::Number(n, _) => {
            if let Ok(i) = n.parse::<i64>() {
                let ty = if i32::try_from(i).is_ok() { DataType::Int4 } else { DataType::Int8 };
                (Value::Int(i), ty)
            } else {
                let d = types::parse_decimal(n)
                    .ok_or_else(|| Error::new(SqlState::SYNTAX_ERROR, format!("invalid number {n}")))?;
                (Value::numeric(d), DataType::Numeric(None))
            }
        }
        ast::Value::SingleQuotedString(s) | ast::Value::EscapedStringLiteral(s) => (Value::text(s), DataType::Text),
        other => return Err(Error::internal(format!("not a number or string literal: {other}"))),
    })
}

/// The most parameters a statement may have, as many as Bind can carry.
const MAX_PARAMS: usize = u16::MAX as usize;

/// A lower-case identifier (unquoted names fold to lower case; sqlparser keeps them as typed).
pub fn ident(i: &ast::Ident) -> String {
    if i.quote_style.is_some() {
        i.value.clone()
    } else {
        i.value.to_lowercase()
    }
}

/// The parts of an object name, folded.
pub fn name_parts(n: &ast::ObjectName) -> Vec<String> {
    n.0.iter()
        .map(|p| match p {
            ast::ObjectNamePart::Identifier(i) => ident(i),
            other => other.to_string(),
        })
        .collect()
}

/// A table name without its schema, checking that the schema (if any) is `public`.
pub fn table_name(n: &ast::ObjectName) -> Result<String> {
    let parts = name_parts(n);
    match parts.as_slice() {
        [t] => Ok(t.clone()),
        [s, t] if s == "public" => Ok(t.clone()),
        _ => Err(Error::new(SqlState::UNDEFINED_TABLE, format!("relation \"{n}\" does not exist"))),
    }
}

fn unsupported(what: impl std::fmt::Display) -> Error {
    Error::new(SqlState::FEATURE_NOT_SUPPORTED, format!("{what} is not supported"))
}

fn is_int(t: &DataType) -> bool {
    matches!(t, DataType::Int2 | DataType::Int4 | DataType::Int8 | DataType::Oid)
}

fn is_texty(t: &DataType) -> bool {
    matches!(t, DataType::Text | DataType::Varchar(_) | DataType::Char(_))
}

/// The AND-ed parts of a predicate.
pub fn conjuncts(e: &Expr) -> Vec<&Expr> {
    match e {
        Expr::Binary(BinOp::And, a, b) => {
            let mut v = conjuncts(a);
            v.extend(conjuncts(b));
            v
        }
        e => vec![e],
    }
}

/// Chooses how to read a table given its WHERE clause (bound over the table's own columns).
pub fn choose_access(def: &TableDef, filter: Option<&Expr>) -> Access {
    let Some(filter) = filter else { return Access::Scan };
    let parts = conjuncts(filter);
    let eq = |col: usize| -> Option<&Expr> {
        parts.iter().find_map(|p| match p {
            Expr::Binary(BinOp::Eq, a, b) => match (a.as_ref(), b.as_ref()) {
                (Expr::Column(c), e) | (e, Expr::Column(c)) if *c == col && e.is_row_independent() => Some(e),
                _ => None,
            },
            _ => None,
        })
    };
    if let Some(pk) = &def.primary_key {
        let values: Option<Vec<Expr>> = pk.columns.iter().map(|&c| eq(c).cloned()).collect();
        if let Some(values) = values {
            return Access::Keys(vec![values]);
        }
        if pk.columns.len() == 1 {
            let col = pk.columns[0];
            for p in &parts {
                if let Expr::InList(e, list, false) = p {
                    if matches!(e.as_ref(), Expr::Column(c) if *c == col) && list.iter().all(Expr::is_row_independent) {
                        return Access::Keys(list.iter().map(|x| vec![x.clone()]).collect());
                    }
                }
            }
        }
        let col = pk.columns[0];
        let (mut lo, mut hi) = (None, None);
        for p in &parts {
            if let Expr::Binary(op, a, b) = p {
                let (op, e) = match (a.as_ref(), b.as_ref()) {
                    (Expr::Column(c), e) if *c == col && e.is_row_independent() => (*op, e),
                    (e, Expr::Column(c)) if *c == col && e.is_row_independent() => match op {
                        BinOp::Lt => (BinOp::Gt, e),
                        BinOp::Le => (BinOp::Ge, e),
                        BinOp::Gt => (BinOp::Lt, e),
                        BinOp::Ge => (BinOp::Le, e),
                        o => (*o, e),
                    },
                    _ => continue,
                };
                match op {
                    BinOp::Gt | BinOp::Ge if lo.is_none() => lo = Some((e.clone(), op == BinOp::Ge)),
                    BinOp::Lt | BinOp::Le if hi.is_none() => hi = Some((e.clone(), op == BinOp::Le)),
                    _ => {}
                }
            }
        }
        if lo.is_some() || hi.is_some() {
            return Access::Range { lo, hi };
        }
    }
    for ix in &def.indexes {
        let mut values = Vec::new();
        for &c in &ix.columns {
            match eq(c) {
                Some(e) => values.push(e.clone()),
                None => break,
            }
        }
        if !values.is_empty() {
            return Access::Index { index: ix.id, name: ix.name.clone(), values };
        }
    }
    Access::Scan
}

impl<'a> Planner<'a> {
    /// A planner with the parameter types the client declared (0 or absent means "infer").
    pub fn new(state: &'a DbState, declared: &[u32]) -> Self {
        let params = declared.iter().map(|&oid| type_from_oid(oid)).collect();
        Planner { state, params, outer: Vec::new(), ctes: Vec::new(), slots: None, work_refs: HashMap::new() }
    }

    /// The final parameter types (unresolved ones are text).
    pub fn param_types(&self) -> Vec<DataType> {
        self.params.iter().map(|t| t.clone().unwrap_or(DataType::Text)).collect()
    }

    fn note_param(&mut self, i: usize, ty: &DataType) {
        if self.params.len() <= i {
            self.params.resize(i + 1, None);
        }
        if self.params[i].is_none() {
            self.params[i] = Some(ty.clone());
        }
    }

    /// Gives an untyped operand (parameter or quoted literal) the type `ty`.
    pub fn coerce_to(&mut self, e: Expr, ety: &DataType, ty: &DataType) -> Result<Expr> {
        match e {
            Expr::Param(i) if self.params.get(i).is_none_or(|t| t.is_none()) => {
                self.note_param(i, ty);
                Ok(Expr::Param(i))
            }
            Expr::Const(Value::Text(s)) if *ety == DataType::Text && !is_texty(ty) => {
                Ok(Expr::Const(types::parse_value(&s, ty)?))
            }
            e => Ok(e),
        }
    }

    fn is_untyped(&self, e: &Expr, ty: &DataType) -> bool {
        match e {
            Expr::Param(i) => self.params.get(*i).is_none_or(|t| t.is_none()),
            Expr::Const(Value::Text(_)) => *ty == DataType::Text,
            _ => false,
        }
    }

    /// Plans a query.
    pub fn query(&mut self, q: &ast::Query) -> Result<Query> {
        let Some(with) = &q.with else { return self.query_body(q) };
        let depth = self.ctes.len();
        for cte in &with.cte_tables {
            if !matches!(
                *cte.query.body,
                ast::SetExpr::Select(_)
                    | ast::SetExpr::SetOperation { .. }
                    | ast::SetExpr::Values(_)
                    | ast::SetExpr::Query(_)
            ) {
                self.ctes.truncate(depth);
                return Err(unsupported("data-modifying statement in WITH"));
            }
            let name = ident(&cte.alias.name);
            if self.ctes[depth..].iter().any(|c| c.name == name) {
                self.ctes.truncate(depth);
                return Err(Error::new(
                    SqlState("42712"),
                    format!("WITH query name \"{name}\" specified more than once"),
                ));
            }
            let columns = cte.alias.columns.iter().map(|c| ident(&c.name)).collect();
            self.ctes.push(Cte { name, columns, query: (*cte.query).clone(), recursive: with.recursive, work: None });
        }
        let r = self.query_body(q);
        self.ctes.truncate(depth);
        r
    }

    /// A query's body, ORDER BY, LIMIT and OFFSET (its WITH is in scope).
    fn query_body(&mut self, q: &ast::Query) -> Result<Query> {
        let (mut plan, columns, order_scope) = self.set_expr(&q.body)?;
        if let Some(ob) = &q.order_by {
            let ast::OrderByKind::Expressions(items) = &ob.kind else { return Err(unsupported("ORDER BY ALL")) };
            if let Some((input, exprs, scope)) = order_scope {
                // A plain select: sort keys may use any input column, so sort below the projection.
                let mut keys = Vec::new();
                let mut bound = Vec::new();
                for item in items {
                    let key = match self.output_ref(&item.expr, &columns)? {
                        Some(i) => exprs[i].clone(),
                        None => self.expr(&item.expr, &scope)?.0,
                    };
                    bound.push(format!("{key:?}"));
                    keys.push(sort_key(key, &item.options));
                }
                if let ast::SetExpr::Select(s) = &*q.body {
                    if let Some(ast::Distinct::On(on)) = &s.distinct {
                        let on_keys: Vec<String> =
                            exprs[exprs.len() - on.len()..].iter().map(|e| format!("{e:?}")).collect();
                        distinct_on_matches_order(&on_keys, &bound)?;
                    }
                }
                plan = Plan::Project { input: Box::new(Plan::Sort { input: Box::new(input), keys }), exprs };
                if let ast::SetExpr::Select(s) = &*q.body {
                    if let Some(ast::Distinct::On(on)) = &s.distinct {
                        plan = Plan::DistinctOn { input: Box::new(plan), keys: on.len() };
                    }
                }
            } else {
                // A grouped or DISTINCT select: sort keys are output columns, by name, by position, or
                // written as a select-list expression is (`ORDER BY b.y`, `ORDER BY count(*)`).
                let written: Vec<String> = match &*q.body {
                    ast::SetExpr::Select(s) => s
                        .projection
                        .iter()
                        .map(|p| match p {
                            ast::SelectItem::UnnamedExpr(e) | ast::SelectItem::ExprWithAlias { expr: e, .. } => {
                                e.to_string()
                            }
                            _ => String::new(),
                        })
                        .collect(),
                    _ => Vec::new(),
                };
                let mut keys = Vec::new();
                for item in items {
                    let by_text = || {
                        let text = item.expr.to_string();
                        written.iter().position(|w| *w == text).filter(|&i| i < columns.len())
                    };
                    let i = self.output_ref(&item.expr, &columns)?.or_else(by_text).ok_or_else(|| {
                        Error::new(
                            SqlState::UNDEFINED_COLUMN,
                            format!("ORDER BY expression \"{}\" must be an output column here", item.expr),
                        )
                    })?;
                    keys.push(sort_key(Expr::Column(i), &item.options));
                }
                plan = Plan::Sort { input: Box::new(plan), keys };
            }
        }
        if q.limit_clause.is_some() || q.fetch.is_some() {
            let (limit, offset) = match &q.limit_clause {
                Some(ast::LimitClause::LimitOffset { limit, offset, .. }) => {
                    (limit.clone(), offset.as_ref().map(|o| o.value.clone()))
                }
                Some(ast::LimitClause::OffsetCommaLimit { offset, limit }) => {
                    (Some(limit.clone()), Some(offset.clone()))
                }
                None => (None, None),
            };
            if let Some(fetch) = &q.fetch {
                if fetch.with_ties {
                    return Err(unsupported("FETCH ... WITH TIES"));
                }
                if fetch.percent {
                    return Err(unsupported("FETCH ... PERCENT"));
                }
                if limit.is_some() {
                    return Err(Error::new(SqlState::SYNTAX_ERROR, "multiple LIMIT clauses not allowed"));
                }
            }
            let empty = Scope::default();
            let limit = match (limit.as_ref(), &q.fetch) {
                (Some(e), _) | (None, Some(ast::Fetch { quantity: Some(e), .. })) => Some(self.expr(e, &empty)?.0),
                // FETCH FIRST ROW ONLY, without a count, is one row.
                (None, Some(_)) => Some(Expr::Const(Value::Int(1))),
                (None, None) => None,
            };
            let offset = match &offset {
                Some(e) => Some(self.expr(e, &empty)?.0),
                None => None,
            };
            plan = Plan::Limit { input: Box::new(plan), limit, offset };
        }
        Ok(Query { plan, columns })
    }

    /// An ORDER BY item that names an output column (by position or name).
    fn output_ref(&mut self, e: &ast::Expr, columns: &[(String, DataType)]) -> Result<Option<usize>> {
        match e {
            ast::Expr::Value(v) => {
                if let ast::Value::Number(n, _) = &v.value {
                    let i: usize =
                        n.parse().map_err(|_| Error::new(SqlState::SYNTAX_ERROR, "bad ORDER BY position"))?;
                    if i == 0 || i > columns.len() {
                        return Err(Error::new(
                            SqlState("42P10"),
                            format!("ORDER BY position {i} is not in select list"),
                        ));
                    }
                    return Ok(Some(i - 1));
                }
                Ok(None)
            }
            ast::Expr::Identifier(i) => {
                let name = ident(i);
                Ok(columns.iter().position(|(n, _)| *n == name))
            }
            _ => Ok(None),
        }
    }

    /// Plans a set expression. For a plain SELECT it also returns the plan below the projection, the
    /// projection and the input scope, so ORDER BY can sort by columns not in the select list.
    #[allow(clippy::type_complexity)]
    fn set_expr(
        &mut self,
        body: &ast::SetExpr,
    ) -> Result<(Plan, Vec<(String, DataType)>, Option<(Plan, Vec<Expr>, Scope)>)> {
        match body {
            ast::SetExpr::Select(s) => self.select(s),
            ast::SetExpr::Query(q) => {
                let q = self.query(q)?;
                Ok((q.plan, q.columns, None))
            }
            ast::SetExpr::Values(v) => {
                let (plan, columns) = self.values(v, None)?;
                Ok((plan, columns, None))
            }
            ast::SetExpr::SetOperation { left, op, set_quantifier, right } => {
                let (l, lc, _) = self.set_expr(left)?;
                let (r, rc, _) = self.set_expr(right)?;
                if lc.len() != rc.len() {
                    return Err(Error::new(
                        SqlState::SYNTAX_ERROR,
                        "each UNION query must have the same number of columns",
                    ));
                }
                let op = match op {
                    ast::SetOperator::Union => SetOpKind::Union,
                    ast::SetOperator::Intersect => SetOpKind::Intersect,
                    ast::SetOperator::Except => SetOpKind::Except,
                    o => return Err(unsupported(o)),
                };
                let all = matches!(set_quantifier, ast::SetQuantifier::All);
                let columns = lc
                    .into_iter()
                    .zip(rc)
                    .map(|((n, t), (_, rt))| (n, if t == DataType::Text { rt } else { t }))
                    .collect();
                Ok((Plan::SetOp { left: Box::new(l), right: Box::new(r), op, all }, columns, None))
            }
            ast::SetExpr::Insert(_) | ast::SetExpr::Update(_) | ast::SetExpr::Delete(_) => {
                Err(unsupported("WITH before INSERT, UPDATE or DELETE"))
            }
            other => Err(unsupported(other)),
        }
    }

    /// Plans VALUES rows; with target types, untyped values take them.
    pub fn values(&mut self, v: &ast::Values, targets: Option<&[DataType]>) -> Result<(Plan, Vec<(String, DataType)>)> {
        let empty = Scope::default();
        let mut rows = Vec::new();
        let mut types: Vec<DataType> = Vec::new();
        for row in &v.rows {
            let mut out = Vec::new();
            for (i, e) in row.iter().enumerate() {
                if matches!(e, ast::Expr::Identifier(id) if id.quote_style.is_none() && id.value.eq_ignore_ascii_case("default"))
                {
                    out.push(Expr::Call(Arc::from("__default"), vec![Expr::Const(Value::Int(i as i64))]));
                    if types.len() <= i {
                        types.push(targets.and_then(|t| t.get(i).cloned()).unwrap_or(DataType::Text));
                    }
                    continue;
                }
                let (mut x, mut ty) = self.expr(e, &empty)?;
                if let Some(t) = targets.and_then(|t| t.get(i)) {
                    if self.is_untyped(&x, &ty) {
                        x = self.coerce_to(x, &ty, t)?;
                        ty = t.clone();
                    }
                }
                if types.len() <= i {
                    types.push(ty);
                } else if types[i] == DataType::Text {
                    types[i] = ty;
                }
                out.push(x);
            }
            if !rows.is_empty() && out.len() != types.len() {
                return Err(Error::new(SqlState::SYNTAX_ERROR, "VALUES lists must all be the same length"));
            }
            rows.push(out);
        }
        let columns = types.into_iter().enumerate().map(|(i, t)| (format!("column{}", i + 1), t)).collect();
        Ok((Plan::Values(rows), columns))
    }

    #[allow(clippy::type_complexity)]
    fn select(&mut self, s: &ast::Select) -> Result<(Plan, Vec<(String, DataType)>, Option<(Plan, Vec<Expr>, Scope)>)> {
        if s.into.is_some() {
            return Err(unsupported("SELECT INTO"));
        }
        let srf = srf_item(s)?;
        let s = srf.as_ref().map_or(s, |(_, rewritten)| rewritten);
        // Output names come from the select list as written, before window calls are taken out of it.
        let names: Vec<Option<String>> = s
            .projection
            .iter()
            .map(|p| match p {
                ast::SelectItem::UnnamedExpr(e) => Some(column_name(e)),
                _ => None,
            })
            .collect();
        let windowed = take_window_calls(s);
        let s = windowed.as_ref().map_or(s, |(rewritten, _)| rewritten);
        let windows = windowed.as_ref().map_or(&[][..], |(_, calls)| calls.as_slice());
        let (mut plan, mut scope) = self.from(&s.from)?;
        if let Some(w) = &s.selection {
            let (pred, _) = self.expr(w, &scope)?;
            plan = match plan {
                Plan::Table { table, name, filter: None, .. } => {
                    let def = self.state.table_by_id(table).map(|t| t.def.clone());
                    let access = def.map_or(Access::Scan, |d| choose_access(&d, Some(&pred)));
                    Plan::Table { table, name, access, filter: Some(pred) }
                }
                p => Plan::Filter { input: Box::new(p), predicate: pred },
            };
        }
        if let Some((args, _)) = &srf {
            // Each row the WHERE kept, once per value of the series; the arguments may use its columns.
            self.outer.push(scope.clone());
            let args = self.series_args(args);
            self.outer.pop();
            let series = Plan::Series { args: args? };
            plan = Plan::Join {
                left: Box::new(plan),
                right: Box::new(series),
                kind: JoinKind::Inner,
                on: None,
                lateral: true,
                right_width: 1,
                left_width: scope.columns.len(),
            };
            scope.columns.push(Column { hidden: false, table: None, name: SRF_COLUMN.into(), ty: DataType::Int4 });
        }
        let group_exprs: Vec<ast::Expr> = match &s.group_by {
            ast::GroupByExpr::Expressions(e, _) => e.clone(),
            ast::GroupByExpr::All(_) => return Err(unsupported("GROUP BY ALL")),
        };
        let has_aggs = s.projection.iter().any(|p| match p {
            ast::SelectItem::UnnamedExpr(e) | ast::SelectItem::ExprWithAlias { expr: e, .. } => has_aggregate(e),
            _ => false,
        }) || s.having.as_ref().is_some_and(has_aggregate);
        let mut columns = Vec::new();
        let mut exprs = Vec::new();
        if has_aggs || !group_exprs.is_empty() {
            let mut group = Vec::new();
            let mut ctx = AggCtx {
                input: scope.clone(),
                group_text: vec![],
                group_types: vec![],
                aggs: vec![],
                agg_types: vec![],
                windows: vec![],
            };
            for g in &group_exprs {
                // GROUP BY may name an output column by position or alias.
                let g = self.group_target(g, &s.projection)?;
                let (e, t) = self.expr(&g, &scope)?;
                group.push(e);
                ctx.group_text.push(g.to_string());
                ctx.group_types.push(t);
            }
            // Window functions run over the groups: their arguments bind like the select list's, which may
            // then use their results.
            let mut funcs = Vec::new();
            for (name, f) in windows {
                let (func, ty) = self.window_func(f, &s.named_window, &mut |p, e| p.agg_expr(e, &mut ctx))?;
                funcs.push(func);
                ctx.windows.push((name.clone(), ty));
            }
            for (idx, item) in s.projection.iter().enumerate() {
                let (e, alias) = match item {
                    ast::SelectItem::UnnamedExpr(e) => (e, None),
                    ast::SelectItem::ExprWithAlias { expr, alias } => (expr, Some(ident(alias))),
                    _ => return Err(Error::new(SqlState("42803"), "SELECT * is not allowed with GROUP BY")),
                };
                let (x, t) = self.agg_expr(e, &mut ctx)?;
                columns.push((alias.unwrap_or_else(|| names[idx].clone().unwrap_or_else(|| column_name(e))), t));
                exprs.push(x);
            }
            let having = match &s.having {
                Some(h) => Some(self.agg_expr(h, &mut ctx)?.0),
                None => None,
            };
            let width = ctx.group_text.len() + ctx.aggs.len();
            plan = Plan::Aggregate { input: Box::new(plan), group, aggs: ctx.aggs };
            if let Some(h) = having {
                plan = Plan::Filter { input: Box::new(plan), predicate: h };
            }
            if !funcs.is_empty() {
                for f in &mut funcs {
                    for e in f.args.iter_mut().chain(&mut f.partition).chain(f.order.iter_mut().map(|k| &mut k.expr)) {
                        renumber_windows(e, width);
                    }
                }
                plan = Plan::Window { input: Box::new(plan), funcs };
                for e in &mut exprs {
                    renumber_windows(e, width);
                }
            }
            let projected = Plan::Project { input: Box::new(plan), exprs };
            let plan = self.distinct(s, projected, &columns)?;
            return Ok((plan, columns, None));
        }
        if !windows.is_empty() {
            let mut funcs = Vec::new();
            let mut added = Vec::new();
            for (name, f) in windows {
                let input = scope.clone();
                let (func, ty) = self.window_func(f, &s.named_window, &mut |p, e| p.expr(e, &input))?;
                funcs.push(func);
                added.push(Column { hidden: false, table: None, name: name.clone(), ty });
            }
            plan = Plan::Window { input: Box::new(plan), funcs };
            scope.columns.extend(added);
        }
        for (idx, item) in s.projection.iter().enumerate() {
            match item {
                ast::SelectItem::UnnamedExpr(e) => {
                    let (x, t) = self.expr(e, &scope)?;
                    columns.push((names[idx].clone().unwrap_or_else(|| column_name(e)), t));
                    exprs.push(x);
                }
                ast::SelectItem::ExprWithAlias { expr, alias } => {
                    let (x, t) = self.expr(expr, &scope)?;
                    columns.push((ident(alias), t));
                    exprs.push(x);
                }
                ast::SelectItem::Wildcard(_) => {
                    if scope.columns.is_empty() {
                        return Err(Error::new(
                            SqlState::SYNTAX_ERROR,
                            "SELECT * with no tables specified is not valid",
                        ));
                    }
                    for (i, c) in scope.columns.iter().enumerate().filter(|(_, c)| !c.hidden) {
                        columns.push((c.name.clone(), c.ty.clone()));
                        exprs.push(Expr::Column(i));
                    }
                }
                ast::SelectItem::QualifiedWildcard(kind, _) => {
                    let q = match kind {
                        ast::SelectItemQualifiedWildcardKind::ObjectName(n) => name_parts(n).pop().unwrap_or_default(),
                        ast::SelectItemQualifiedWildcardKind::Expr(e) => e.to_string(),
                    };
                    let mut any = false;
                    for (i, c) in scope.columns.iter().enumerate() {
                        if c.table.as_deref() == Some(q.as_str()) {
                            columns.push((c.name.clone(), c.ty.clone()));
                            exprs.push(Expr::Column(i));
                            any = true;
                        }
                    }
                    if !any {
                        return Err(Error::new(
                            SqlState::UNDEFINED_TABLE,
                            format!("missing FROM-clause entry for table \"{q}\""),
                        ));
                    }
                }
                other => return Err(unsupported(other)),
            }
        }
        if let Some(ast::Distinct::On(on)) = &s.distinct {
            // The keys ride along after the output columns: ORDER BY sorts below the projection as for a
            // plain select, then the first row of each key is kept (see `query_body`).
            let mut exprs = exprs;
            for e in on {
                let key = match self.output_ref(e, &columns)? {
                    Some(i) => exprs[i].clone(),
                    None => self.expr(e, &scope)?.0,
                };
                exprs.push(key);
            }
            let keys = on.len();
            let input = plan.clone();
            let projected = Plan::Project { input: Box::new(plan), exprs: exprs.clone() };
            return Ok((Plan::DistinctOn { input: Box::new(projected), keys }, columns, Some((input, exprs, scope))));
        }
        if s.distinct.is_some() {
            let projected = Plan::Project { input: Box::new(plan), exprs };
            let plan = self.distinct(s, projected, &columns)?;
            return Ok((plan, columns, None));
        }
        let input = plan.clone();
        Ok((Plan::Project { input: Box::new(plan), exprs: exprs.clone() }, columns, Some((input, exprs, scope))))
    }

    /// Binds a window function call; `bind` binds its arguments, partition and order expressions (against
    /// the rows of FROM, or of the groups in a grouped query).
    fn window_func(
        &mut self,
        f: &ast::Function,
        named: &[ast::NamedWindowDefinition],
        bind: &mut Binder<'_, 'a>,
    ) -> Result<(WindowFunc, DataType)> {
        let name = function_name(f);
        let spec = match &f.over {
            Some(ast::WindowType::WindowSpec(spec)) => spec.clone(),
            Some(ast::WindowType::NamedWindow(w)) => named_window(named, &ident(w))?,
            None => return Err(Error::internal("not a window call")),
        };
        // `OVER (w ORDER BY ...)` copies w's partitioning and adds to it, as PostgreSQL allows.
        let spec = match &spec.window_name {
            Some(base) => {
                let base = named_window(named, &ident(base))?;
                if !spec.partition_by.is_empty() {
                    return Err(Error::new(SqlState("42P20"), "cannot override PARTITION BY clause of window"));
                }
                ast::WindowSpec {
                    window_name: None,
                    partition_by: base.partition_by,
                    order_by: if spec.order_by.is_empty() { base.order_by } else { spec.order_by },
                    window_frame: spec.window_frame.or(base.window_frame),
                }
            }
            None => spec,
        };
        let mut partition = Vec::new();
        for e in &spec.partition_by {
            partition.push(bind(self, e)?.0);
        }
        let mut order = Vec::new();
        for o in &spec.order_by {
            order.push(sort_key(bind(self, &o.expr)?.0, &o.options));
        }
        let frame = match &spec.window_frame {
            None => Frame { rows: false, start: FrameBound::UnboundedPreceding, end: FrameBound::CurrentRow },
            Some(fr) => {
                let rows = match fr.units {
                    ast::WindowFrameUnits::Rows => true,
                    ast::WindowFrameUnits::Range => false,
                    ast::WindowFrameUnits::Groups => return Err(unsupported("GROUPS window frames")),
                };
                let mut bound = |b: &ast::WindowFrameBound| -> Result<FrameBound> {
                    Ok(match b {
                        ast::WindowFrameBound::CurrentRow => FrameBound::CurrentRow,
                        ast::WindowFrameBound::Preceding(None) => FrameBound::UnboundedPreceding,
                        ast::WindowFrameBound::Following(None) => FrameBound::UnboundedFollowing,
                        ast::WindowFrameBound::Preceding(Some(_)) | ast::WindowFrameBound::Following(Some(_))
                            if !rows =>
                        {
                            return Err(unsupported("RANGE window frames with an offset"))
                        }
                        ast::WindowFrameBound::Preceding(Some(e)) => FrameBound::Preceding(self.frame_offset(e)?),
                        ast::WindowFrameBound::Following(Some(e)) => FrameBound::Following(self.frame_offset(e)?),
                    })
                };
                let start = bound(&fr.start_bound)?;
                let end = match &fr.end_bound {
                    Some(b) => bound(b)?,
                    None => FrameBound::CurrentRow,
                };
                if matches!(start, FrameBound::UnboundedFollowing) {
                    return Err(Error::new(SqlState("42P20"), "frame start cannot be UNBOUNDED FOLLOWING"));
                }
                if matches!(end, FrameBound::UnboundedPreceding) {
                    return Err(Error::new(SqlState("42P20"), "frame end cannot be UNBOUNDED PRECEDING"));
                }
                Frame { rows, start, end }
            }
        };
        let raw = function_args(f)?;
        let mut args = Vec::new();
        let mut types = Vec::new();
        if agg_func(f).is_none() {
            for a in &raw {
                let Some(a) = a else { return Err(unsupported(format!("{name}(*)"))) };
                let (x, t) = bind(self, a)?;
                args.push(x);
                types.push(t);
            }
        }
        let count = args.len();
        let arity = |range: std::ops::RangeInclusive<usize>| -> Result<()> {
            if range.contains(&count) {
                Ok(())
            } else {
                Err(Error::new(
                    SqlState::UNDEFINED_FUNCTION,
                    format!("function {name} with {count} argument(s) does not exist"),
                ))
            }
        };
        let first = types.first().cloned().unwrap_or(DataType::Text);
        let (kind, ty) = match name.as_str() {
            "row_number" => (WindowKind::RowNumber, DataType::Int8),
            "rank" => (WindowKind::Rank, DataType::Int8),
            "dense_rank" => (WindowKind::DenseRank, DataType::Int8),
            "percent_rank" => (WindowKind::PercentRank, DataType::Float8),
            "cume_dist" => (WindowKind::CumeDist, DataType::Float8),
            "ntile" => (WindowKind::Ntile, DataType::Int4),
            "lag" => (WindowKind::Lag, first),
            "lead" => (WindowKind::Lead, first),
            "first_value" => (WindowKind::FirstValue, first),
            "last_value" => (WindowKind::LastValue, first),
            "nth_value" => (WindowKind::NthValue, first),
            _ => match agg_func(f) {
                Some((_, true)) => {
                    return Err(Error::new(
                        SqlState::FEATURE_NOT_SUPPORTED,
                        "DISTINCT is not implemented for window functions",
                    ))
                }
                Some((_, false)) => {
                    let (agg, ty) = self.aggregate_call(f, bind)?;
                    return Ok((WindowFunc { kind: WindowKind::Aggregate(agg), args, partition, order, frame }, ty));
                }
                None if functions::return_type(&name, &types).is_some() => {
                    return Err(Error::new(
                        SqlState("42809"),
                        format!("OVER specified, but {name} is not a window function nor an aggregate function"),
                    ))
                }
                None => return Err(no_function(&name)),
            },
        };
        // Untyped arguments (parameters, quoted literals) take the types PostgreSQL's signatures give them.
        let int_arg = match kind {
            WindowKind::Ntile => Some(0),
            WindowKind::Lag | WindowKind::Lead | WindowKind::NthValue => Some(1),
            _ => None,
        };
        for (i, (a, t)) in args.iter_mut().zip(&types).enumerate() {
            let want = if Some(i) == int_arg {
                DataType::Int4
            } else if i == 2 {
                ty.clone()
            } else {
                continue;
            };
            *a = self.coerce_to(std::mem::replace(a, Expr::Const(Value::Null)), t, &want)?;
        }
        match kind {
            WindowKind::RowNumber | WindowKind::Rank | WindowKind::DenseRank => arity(0..=0)?,
            WindowKind::PercentRank | WindowKind::CumeDist => arity(0..=0)?,
            WindowKind::Ntile | WindowKind::FirstValue | WindowKind::LastValue => arity(1..=1)?,
            WindowKind::Lag | WindowKind::Lead => arity(1..=3)?,
            WindowKind::NthValue => arity(2..=2)?,
            WindowKind::Aggregate(_) => {}
        }
        Ok((WindowFunc { kind, args, partition, order, frame }, ty))
    }

    /// Binds an aggregate call (in a grouped select or over a window): its argument, string_agg's delimiter
    /// and FILTER, each through `bind`; returns it with its result type.
    fn aggregate_call(&mut self, f: &ast::Function, bind: &mut Binder<'_, 'a>) -> Result<(Aggregate, DataType)> {
        let (func, distinct) = agg_func(f).ok_or_else(|| Error::internal("aggregate"))?;
        let args = function_args(f)?;
        let (arg, ty) = match args.first() {
            Some(Some(a)) => {
                let (x, t) = bind(self, a)?;
                (Some(x), t)
            }
            _ => (None, DataType::Int8),
        };
        let delimiter = match args.get(1) {
            Some(Some(d)) if func == AggFunc::StringAgg => Some(bind(self, d)?.0),
            _ => None,
        };
        let filter = match &f.filter {
            Some(w) => Some(bind(self, w)?.0),
            None => None,
        };
        let (arg, out_ty) = agg_output(func, arg, ty);
        Ok((Aggregate { func, arg, distinct, delimiter, filter }, out_ty))
    }

    /// A ROWS frame's offset: a constant expression (a parameter is a bigint).
    fn frame_offset(&mut self, e: &ast::Expr) -> Result<Expr> {
        let (x, t) = self.expr(e, &Scope::default())?;
        self.coerce_to(x, &t, &DataType::Int8)
    }

    fn group_target(&mut self, g: &ast::Expr, projection: &[ast::SelectItem]) -> Result<ast::Expr> {
        if let ast::Expr::Value(v) = g {
            if let ast::Value::Number(n, _) = &v.value {
                let i: usize = n.parse().unwrap_or(0);
                return match projection.get(i.wrapping_sub(1)) {
                    Some(ast::SelectItem::UnnamedExpr(e)) | Some(ast::SelectItem::ExprWithAlias { expr: e, .. }) => {
                        Ok(e.clone())
                    }
                    _ => Err(Error::new(SqlState("42P10"), format!("GROUP BY position {i} is not in select list"))),
                };
            }
        }
        if let ast::Expr::Identifier(id) = g {
            for p in projection {
                if let ast::SelectItem::ExprWithAlias { expr, alias } = p {
                    if ident(alias) == ident(id) {
                        return Ok(expr.clone());
                    }
                }
            }
        }
        Ok(g.clone())
    }

    fn distinct(&mut self, s: &ast::Select, plan: Plan, _columns: &[(String, DataType)]) -> Result<Plan> {
        match &s.distinct {
            None | Some(ast::Distinct::All) => Ok(plan),
            Some(ast::Distinct::Distinct) => Ok(Plan::Distinct { input: Box::new(plan) }),
            Some(ast::Distinct::On(_)) => Err(unsupported("DISTINCT ON")),
        }
    }

    /// Binds an expression over an aggregate's output.
    fn agg_expr(&mut self, e: &ast::Expr, ctx: &mut AggCtx) -> Result<(Expr, DataType)> {
        let text = e.to_string();
        if let Some(i) = ctx.group_text.iter().position(|g| *g == text) {
            return Ok((Expr::Column(i), ctx.group_types[i].clone()));
        }
        match e {
            ast::Expr::Function(f) if agg_func(f).is_some() => {
                refuse_agg_modifiers(f)?;
                let input = ctx.input.clone();
                let (agg, out_ty) = self.aggregate_call(f, &mut |p, e| p.expr(e, &input))?;
                ctx.aggs.push(agg);
                ctx.agg_types.push(out_ty.clone());
                Ok((Expr::Column(ctx.group_text.len() + ctx.aggs.len() - 1), out_ty))
            }
            ast::Expr::Identifier(i) if ctx.windows.iter().any(|(n, _)| *n == i.value) => {
                let k = ctx.windows.iter().position(|(n, _)| *n == i.value).expect("checked");
                Ok((Expr::Column(window_placeholder(k)), ctx.windows[k].1.clone()))
            }
            ast::Expr::Identifier(_) | ast::Expr::CompoundIdentifier(_) => {
                // A column that is neither grouped nor aggregated.
                let input = ctx.input.clone();
                let (_, _) = self.expr(e, &input)?;
                Err(Error::new(
                    SqlState("42803"),
                    format!("column \"{e}\" must appear in the GROUP BY clause or be used in an aggregate function"),
                ))
            }
            ast::Expr::BinaryOp { left, op, right } => {
                let (l, lt) = self.agg_expr(left, ctx)?;
                let (r, rt) = self.agg_expr(right, ctx)?;
                self.binary(l, lt, op, r, rt)
            }
            ast::Expr::Nested(inner) => self.agg_expr(inner, ctx),
            ast::Expr::Cast { expr, data_type, .. } => {
                let (x, _) = self.agg_expr(expr, ctx)?;
                let ty = types::data_type(data_type)?;
                Ok((Expr::Cast(Box::new(x), ty.clone()), ty))
            }
            ast::Expr::UnaryOp { op: ast::UnaryOperator::Minus, expr } => {
                let (x, t) = self.agg_expr(expr, ctx)?;
                Ok((Expr::Neg(Box::new(x)), t))
            }
            ast::Expr::UnaryOp { op: ast::UnaryOperator::Not, expr } => {
                let (x, _) = self.agg_expr(expr, ctx)?;
                Ok((Expr::Not(Box::new(x)), DataType::Bool))
            }
            ast::Expr::Function(f) => {
                let name = function_name(f);
                let mut args = Vec::new();
                let mut tys = Vec::new();
                for a in function_args(f)?.into_iter().flatten() {
                    let (x, t) = self.agg_expr(&a, ctx)?;
                    args.push(x);
                    tys.push(t);
                }
                let ty = functions::return_type(&name, &tys).ok_or_else(|| no_function(&name))?;
                Ok((Expr::Call(Arc::from(name.as_str()), args), ty))
            }
            ast::Expr::Case { operand, conditions, else_result, .. } => {
                let operand = match operand {
                    Some(o) => Some(Box::new(self.agg_expr(o, ctx)?.0)),
                    None => None,
                };
                let mut whens = Vec::new();
                let mut ty = DataType::Text;
                for w in conditions {
                    let c = self.agg_expr(&w.condition, ctx)?.0;
                    let (r, rt) = self.agg_expr(&w.result, ctx)?;
                    if ty == DataType::Text {
                        ty = rt;
                    }
                    whens.push((c, r));
                }
                let otherwise = match else_result {
                    Some(e) => Some(Box::new(self.agg_expr(e, ctx)?.0)),
                    None => None,
                };
                Ok((Expr::Case { operand, whens, otherwise }, ty))
            }
            // Anything else must not touch the input's columns: bind it with an empty scope.
            other => self.expr(other, &Scope::default()),
        }
    }

    /// Plans a FROM list: its plan and the scope of its rows.
    pub fn from(&mut self, from: &[ast::TableWithJoins]) -> Result<(Plan, Scope)> {
        if from.is_empty() {
            return Ok((Plan::Values(vec![vec![]]), Scope::default()));
        }
        let mut acc: Option<(Plan, Scope)> = None;
        for twj in from {
            let (mut plan, mut scope) = self.factor(&twj.relation, acc.as_ref().map(|a| &a.1))?;
            if let Some((lp, ls)) = acc.take() {
                let width = scope.columns.len();
                let mut s = ls;
                s.columns.extend(scope.columns);
                plan = Plan::Join {
                    left: Box::new(lp),
                    right: Box::new(plan),
                    kind: JoinKind::Inner,
                    on: None,
                    lateral: false,
                    right_width: width,
                    left_width: s.columns.len() - width,
                };
                scope = s;
            }
            for j in &twj.joins {
                let lateral = matches!(&j.relation, ast::TableFactor::Derived { lateral: true, .. });
                let (rp, rs) = self.factor(&j.relation, Some(&scope))?;
                let width = rs.columns.len();
                let mut joined = scope.clone();
                joined.columns.extend(rs.columns.iter().cloned());
                let (kind, constraint) = match &j.join_operator {
                    ast::JoinOperator::Join(c) | ast::JoinOperator::Inner(c) => (JoinKind::Inner, Some(c)),
                    ast::JoinOperator::Left(c) | ast::JoinOperator::LeftOuter(c) => (JoinKind::Left, Some(c)),
                    ast::JoinOperator::Right(c) | ast::JoinOperator::RightOuter(c) => (JoinKind::Right, Some(c)),
                    ast::JoinOperator::FullOuter(c) => (JoinKind::Full, Some(c)),
                    ast::JoinOperator::CrossJoin(_) => (JoinKind::Inner, None),
                    other => return Err(unsupported(format!("join {other:?}").chars().take(40).collect::<String>())),
                };
                if lateral && matches!(kind, JoinKind::Right | JoinKind::Full) {
                    return Err(Error::new(
                        SqlState("42P10"),
                        "invalid reference to FROM-clause entry in a LATERAL subquery",
                    )
                    .with_detail("The combining JOIN type must be INNER or LEFT for a LATERAL reference."));
                }
                // USING (and NATURAL, USING every common name): the pairs of equal columns, merged below.
                let using: Vec<String> = match constraint {
                    Some(ast::JoinConstraint::Using(cols)) => {
                        cols.iter().map(|c| name_parts(c).pop().unwrap_or_default()).collect()
                    }
                    Some(ast::JoinConstraint::Natural) => {
                        let mut common = Vec::new();
                        for c in scope.columns.iter().filter(|c| !c.hidden) {
                            if !common.contains(&c.name) && rs.find(None, &c.name)?.is_some() {
                                common.push(c.name.clone());
                            }
                        }
                        common
                    }
                    _ => Vec::new(),
                };
                let mut pairs = Vec::new();
                for n in &using {
                    let l = scope.find(None, n)?.ok_or_else(|| {
                        Error::new(
                            SqlState::UNDEFINED_COLUMN,
                            format!("column \"{n}\" specified in USING clause does not exist in left table"),
                        )
                    })?;
                    let r = rs.find(None, n)?.ok_or_else(|| {
                        Error::new(
                            SqlState::UNDEFINED_COLUMN,
                            format!("column \"{n}\" specified in USING clause does not exist in right table"),
                        )
                    })?;
                    pairs.push((n.clone(), l, scope.columns.len() + r));
                }
                let on = match constraint {
                    Some(ast::JoinConstraint::On(e)) => Some(self.expr(e, &joined)?.0),
                    Some(ast::JoinConstraint::Using(_) | ast::JoinConstraint::Natural) => {
                        pairs.iter().fold(None, |pred, (_, l, r)| {
                            let eq = Expr::Binary(BinOp::Eq, Box::new(Expr::Column(*l)), Box::new(Expr::Column(*r)));
                            Some(match pred {
                                None => eq,
                                Some(p) => Expr::Binary(BinOp::And, Box::new(p), Box::new(eq)),
                            })
                        })
                    }
                    Some(ast::JoinConstraint::None) | None => None,
                    Some(_) => return Err(unsupported("JOIN ... USING ... AS alias")),
                };
                // Lateral subqueries were planned with the left scope as their outer scope.
                let plan_left = std::mem::replace(&mut plan, Plan::Values(vec![]));
                plan = Plan::Join {
                    left: Box::new(plan_left),
                    right: Box::new(rp),
                    kind,
                    on,
                    lateral,
                    right_width: width,
                    left_width: scope.columns.len(),
                };
                scope = joined;
                if !pairs.is_empty() {
                    // As in PostgreSQL: one column per USING name comes first (the left's value, the right's
                    // for RIGHT JOIN, whichever is not NULL for FULL JOIN); the pair it merges stays reachable
                    // by qualified name only.
                    let mut exprs = Vec::new();
                    let mut merged = Vec::new();
                    for (n, l, r) in &pairs {
                        let ty = scope.columns[if kind == JoinKind::Right { *r } else { *l }].ty.clone();
                        let (l, r) = (Expr::Column(*l), Expr::Column(*r));
                        exprs.push(match kind {
                            JoinKind::Inner | JoinKind::Left => l,
                            JoinKind::Right => r,
                            JoinKind::Full => Expr::Call(Arc::from("coalesce"), vec![l, r]),
                        });
                        merged.push(Column { hidden: false, table: None, name: n.clone(), ty });
                    }
                    for (_, l, r) in &pairs {
                        scope.columns[*l].hidden = true;
                        scope.columns[*r].hidden = true;
                    }
                    exprs.extend((0..scope.columns.len()).map(Expr::Column));
                    merged.append(&mut scope.columns);
                    scope.columns = merged;
                    plan = Plan::Project { input: Box::new(plan), exprs };
                }
            }
            acc = Some((plan, scope));
        }
        acc.ok_or_else(|| Error::internal("empty FROM"))
    }

    /// generate_series's arguments (start, stop[, step]) as bigint expressions.
    fn series_args(&mut self, args: &[ast::FunctionArg]) -> Result<Vec<Expr>> {
        let empty = Scope::default();
        let mut bound = Vec::new();
        for a in args {
            let ast::FunctionArg::Unnamed(ast::FunctionArgExpr::Expr(e)) = a else {
                return Err(unsupported("named argument"));
            };
            let (x, t) = self.expr(e, &empty)?;
            bound.push(self.coerce_to(x, &t, &DataType::Int8)?);
        }
        if !(2..=3).contains(&bound.len()) {
            return Err(Error::new(
                SqlState::UNDEFINED_FUNCTION,
                format!("function generate_series with {} arguments does not exist", bound.len()),
            )
            .with_hint("generate_series takes start, stop and an optional step."));
        }
        Ok(bound)
    }

    /// unnest(array) in FROM: a text column, one row per element. Its argument may name columns of the
    /// query around it (psql's `\d+` unnests a joined table's reloptions).
    fn unnest(&mut self, args: &[&ast::Expr], alias: Option<&ast::TableAlias>) -> Result<(Plan, Scope)> {
        let [e] = args else {
            return Err(Error::new(
                SqlState::UNDEFINED_FUNCTION,
                format!("function unnest with {} arguments does not exist", args.len()),
            )
            .with_hint("unnest takes one array."));
        };
        let (x, t) = self.expr(e, &Scope::default())?;
        let arg = self.coerce_to(x, &t, &DataType::Text)?;
        let alias_name = alias.map(|a| ident(&a.name)).unwrap_or_else(|| "unnest".into());
        let col = alias.and_then(|a| a.columns.first()).map(|c| ident(&c.name)).unwrap_or_else(|| alias_name.clone());
        let scope =
            Scope { columns: vec![Column { hidden: false, table: Some(alias_name), name: col, ty: DataType::Text }] };
        Ok((Plan::Unnest { arg }, scope))
    }

    /// A reference to the CTE at `k`: its query planned as a subquery, seeing only the CTEs before it.
    fn cte_reference(&mut self, k: usize, alias: Option<&ast::TableAlias>) -> Result<(Plan, Scope)> {
        if let Some((id, columns)) = self.ctes[k].work.clone() {
            let refs = self.work_refs.entry(id).or_default();
            *refs += 1;
            if *refs > 1 {
                return Err(Error::new(
                    SqlState("42P19"),
                    format!("recursive reference to query \"{}\" must not appear more than once", self.ctes[k].name),
                ));
            }
            let table = alias.map(|a| ident(&a.name)).unwrap_or_else(|| self.ctes[k].name.clone());
            return Ok((Plan::WorkTable { id }, derived_scope(&columns, Some(table), alias)));
        }
        let later = self.ctes.split_off(k);
        let cte = later[0].clone();
        let q = if cte.recursive { self.recursive_cte(&cte) } else { self.query(&cte.query) };
        self.ctes.extend(later);
        let q = q?;
        if cte.columns.len() > q.columns.len() {
            return Err(Error::new(
                SqlState("42P10"),
                format!(
                    "WITH query \"{}\" has {} columns available but {} columns specified",
                    cte.name,
                    q.columns.len(),
                    cte.columns.len()
                ),
            ));
        }
        let table = alias.map(|a| ident(&a.name)).unwrap_or_else(|| cte.name.clone());
        let mut scope = derived_scope(&q.columns, Some(table), None);
        for (c, n) in scope.columns.iter_mut().zip(cte.columns) {
            c.name = n;
        }
        rename_columns(&mut scope, alias);
        Ok((q.plan, scope))
    }

    /// Plans a CTE declared under WITH RECURSIVE (the CTE itself and those after it are out of scope).
    fn recursive_cte(&mut self, cte: &Cte) -> Result<Query> {
        let ast::SetExpr::SetOperation { left, op: ast::SetOperator::Union, set_quantifier, right } = &*cte.query.body
        else {
            return self.query(&cte.query);
        };
        if cte.query.with.is_some() {
            return self.query(&cte.query);
        }
        if cte.query.order_by.is_some() || cte.query.limit_clause.is_some() || cte.query.fetch.is_some() {
            return Err(unsupported("ORDER BY, LIMIT or OFFSET in a recursive query"));
        }
        let (anchor, mut columns, _) = self.set_expr(left)?;
        for (c, n) in columns.iter_mut().zip(&cte.columns) {
            c.0 = n.clone();
        }
        let id = NEXT_WORK_TABLE.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        self.ctes.push(Cte { work: Some((id, columns.clone())), recursive: false, ..cte.clone() });
        let step = self.set_expr(right);
        self.ctes.pop();
        let refs = self.work_refs.remove(&id).unwrap_or(0);
        let (step, step_columns, _) = step?;
        if step_columns.len() != columns.len() {
            return Err(Error::new(SqlState::SYNTAX_ERROR, "each UNION query must have the same number of columns"));
        }
        let all = matches!(set_quantifier, ast::SetQuantifier::All);
        if refs == 0 {
            // Not recursive after all: a plain union.
            let plan = Plan::SetOp { left: Box::new(anchor), right: Box::new(step), op: SetOpKind::Union, all };
            return Ok(Query { plan, columns });
        }
        for (i, ((_, a), (_, b))) in columns.iter().zip(&step_columns).enumerate() {
            if !same_type_family(a, b) {
                return Err(Error::new(
                    SqlState("42804"),
                    format!(
                        "recursive query \"{}\" column {} has type {} in non-recursive term but type {} overall",
                        cte.name,
                        i + 1,
                        a.sql_name(),
                        b.sql_name()
                    ),
                )
                .with_hint("Cast the output of the non-recursive term to the correct type."));
            }
        }
        let plan = Plan::RecursiveUnion { anchor: Box::new(anchor), step: Box::new(step), all, id };
        Ok(Query { plan, columns })
    }

    fn factor(&mut self, f: &ast::TableFactor, left: Option<&Scope>) -> Result<(Plan, Scope)> {
        match f {
            ast::TableFactor::UNNEST { alias, array_exprs, with_offset: false, with_ordinality: false, .. } => {
                self.unnest(&array_exprs.iter().collect::<Vec<_>>(), alias.as_ref())
            }
            ast::TableFactor::Table { name, alias, args, .. } => {
                let parts = name_parts(name);
                if let Some(args) = args {
                    let fname = parts.last().cloned().unwrap_or_default();
                    if fname == "unnest" {
                        let exprs = args
                            .args
                            .iter()
                            .map(|a| match a {
                                ast::FunctionArg::Unnamed(ast::FunctionArgExpr::Expr(e)) => Ok(e),
                                _ => Err(unsupported("named argument")),
                            })
                            .collect::<Result<Vec<_>>>()?;
                        return self.unnest(&exprs, alias.as_ref());
                    }
                    if fname != "generate_series" {
                        return Err(no_function(&fname));
                    }
                    let bound = self.series_args(&args.args)?;
                    let alias_name = alias.as_ref().map(|a| ident(&a.name)).unwrap_or_else(|| "generate_series".into());
                    let col = alias
                        .as_ref()
                        .and_then(|a| a.columns.first())
                        .map(|c| ident(&c.name))
                        .unwrap_or_else(|| alias_name.clone());
                    let scope = Scope {
                        columns: vec![Column { hidden: false, table: Some(alias_name), name: col, ty: DataType::Int4 }],
                    };
                    return Ok((Plan::Series { args: bound }, scope));
                }
                if let [t] = parts.as_slice() {
                    if let Some(k) = self.ctes.iter().rposition(|c| &c.name == t) {
                        return self.cte_reference(k, alias.as_ref());
                    }
                }
                let (schema, tname) = match parts.as_slice() {
                    [t] => (None, t.clone()),
                    [s, t] => (Some(s.as_str()), t.clone()),
                    _ => {
                        return Err(Error::new(
                            SqlState::UNDEFINED_TABLE,
                            format!("relation \"{name}\" does not exist"),
                        ))
                    }
                };
                let alias_name = alias.as_ref().map(|a| ident(&a.name)).unwrap_or_else(|| tname.clone());
                let user = match schema {
                    None | Some("public") => self.state.table(&tname),
                    _ => None,
                };
                let (plan, mut scope) = if let Some(t) = user {
                    let scope = Scope::of_table(&t.def, &alias_name);
                    (Plan::Table { table: t.def.id, name: tname.clone(), access: Access::Scan, filter: None }, scope)
                } else if let Some(view) = catalog::system_view(schema, &tname) {
                    let cols = catalog::columns(&view).unwrap_or_default();
                    let scope = Scope {
                        columns: cols
                            .into_iter()
                            .map(|(n, t)| Column {
                                hidden: false,
                                table: Some(alias_name.clone()),
                                name: n.to_string(),
                                ty: t,
                            })
                            .collect(),
                    };
                    (Plan::System { name: view }, scope)
                } else {
                    return Err(Error::new(
                        SqlState::UNDEFINED_TABLE,
                        format!("relation \"{}\" does not exist", parts.join(".")),
                    ));
                };
                if let Some(a) = alias {
                    for (c, n) in scope.columns.iter_mut().zip(&a.columns) {
                        c.name = ident(&n.name);
                    }
                }
                Ok((plan, scope))
            }
            ast::TableFactor::Derived { lateral, subquery, alias, .. } => {
                if *lateral {
                    self.outer.push(left.cloned().unwrap_or_default());
                }
                let q = self.query(subquery);
                if *lateral {
                    self.outer.pop();
                }
                let q = q?;
                let alias_name = alias.as_ref().map(|a| ident(&a.name));
                Ok((q.plan, derived_scope(&q.columns, alias_name, alias.as_ref())))
            }
            ast::TableFactor::NestedJoin { table_with_joins, .. } => self.from(std::slice::from_ref(table_with_joins)),
            other => Err(unsupported(other)),
        }
    }

    fn column(&self, table: Option<&str>, name: &str, scope: &Scope) -> Result<(Expr, DataType)> {
        if let Some(i) = scope.find(table, name)? {
            return Ok((Expr::Column(i), scope.columns[i].ty.clone()));
        }
        for (depth, s) in self.outer.iter().rev().enumerate() {
            if let Some(i) = s.find(table, name)? {
                return Ok((Expr::Outer(depth + 1, i), s.columns[i].ty.clone()));
            }
        }
        if let Some(t) = table {
            let known = scope.columns.iter().any(|c| c.table.as_deref() == Some(t))
                || self.outer.iter().any(|s| s.columns.iter().any(|c| c.table.as_deref() == Some(t)));
            if !known {
                return Err(Error::new(
                    SqlState::UNDEFINED_TABLE,
                    format!("missing FROM-clause entry for table \"{t}\""),
                ));
            }
            return Err(Error::new(SqlState::UNDEFINED_COLUMN, format!("column {t}.{name} does not exist")));
        }
        Err(no_column(name))
    }

    fn subquery(&mut self, q: &ast::Query, scope: &Scope) -> Result<Query> {
        self.outer.push(scope.clone());
        let r = self.query(q);
        self.outer.pop();
        r
    }

    fn binary(
        &mut self,
        l: Expr,
        lt: DataType,
        op: &ast::BinaryOperator,
        r: Expr,
        rt: DataType,
    ) -> Result<(Expr, DataType)> {
        use ast::BinaryOperator as B;
        let (mut l, mut r, mut lt, mut rt) = (l, r, lt, rt);
        // A time plus or minus an untyped literal: the literal is an interval (`now() - '1 day'`).
        let temporal = |t: &DataType| matches!(t, DataType::Timestamp | DataType::TimestampTz | DataType::Date);
        if matches!(op, B::Plus | B::Minus) && temporal(&lt) && self.is_untyped(&r, &rt) {
            r = self.coerce_to(r, &rt, &DataType::Interval)?;
            rt = DataType::Interval;
        } else if matches!(op, B::Plus) && temporal(&rt) && self.is_untyped(&l, &lt) {
            l = self.coerce_to(l, &lt, &DataType::Interval)?;
            lt = DataType::Interval;
        }
        // `||` of an untyped literal is text concatenation, whatever the other side is ('v' || 1 is 'v1').
        if self.is_untyped(&l, &lt) && !self.is_untyped(&r, &rt) && !matches!(op, B::StringConcat) {
            l = self.coerce_to(l, &lt, &rt)?;
            lt = rt.clone();
        } else if self.is_untyped(&r, &rt) && !self.is_untyped(&l, &lt) && !matches!(op, B::StringConcat) {
            r = self.coerce_to(r, &rt, &lt)?;
            rt = lt.clone();
        }
        // bytea || bytea is bytea, and an untyped literal beside a bytea is read as one.
        if matches!(op, B::StringConcat) && (lt == DataType::Bytea || rt == DataType::Bytea) {
            if self.is_untyped(&l, &lt) {
                l = self.coerce_to(l, &lt, &DataType::Bytea)?;
                lt = DataType::Bytea;
            } else if self.is_untyped(&r, &rt) {
                r = self.coerce_to(r, &rt, &DataType::Bytea)?;
                rt = DataType::Bytea;
            }
        }
        let arith = |lt: &DataType, rt: &DataType| -> DataType {
            match (lt, rt) {
                (DataType::Float4 | DataType::Float8, _) | (_, DataType::Float4 | DataType::Float8) => DataType::Float8,
                (DataType::Numeric(_), _) | (_, DataType::Numeric(_)) => DataType::Numeric(None),
                (DataType::Int8, _) | (_, DataType::Int8) => DataType::Int8,
                (DataType::Date, DataType::Date) => DataType::Int4,
                (DataType::Date, _) => DataType::Date,
                (DataType::Int2, DataType::Int2) => DataType::Int2,
                (a, _) if is_int(a) => DataType::Int4,
                (a, _) => a.clone(),
            }
        };
        // Interval arithmetic: time ± interval, time - time, interval ± interval, interval × number.
        let (iv, ts) = (DataType::Interval, DataType::Timestamp);
        let number =
            |t: &DataType| is_int(t) || matches!(t, DataType::Float4 | DataType::Float8 | DataType::Numeric(_));
        let times = |a: &DataType| matches!(a, DataType::Timestamp | DataType::TimestampTz);
        let timed = match (op, &lt, &rt) {
            (B::Plus | B::Minus, a, DataType::Interval) if times(a) => Some(a.clone()),
            (B::Plus, DataType::Interval, b) if times(b) => Some(b.clone()),
            (B::Plus | B::Minus, DataType::Date, DataType::Interval)
            | (B::Plus, DataType::Interval, DataType::Date) => Some(ts.clone()),
            (B::Minus, a, b) if times(a) && times(b) => Some(iv.clone()),
            (B::Plus | B::Minus, DataType::Interval, DataType::Interval) => Some(iv.clone()),
            (B::Multiply | B::Divide, DataType::Interval, b) if number(b) => Some(iv.clone()),
            (B::Multiply, a, DataType::Interval) if number(a) => Some(iv.clone()),
            _ => None,
        };
        let arith = |lt: &DataType, rt: &DataType| timed.clone().unwrap_or_else(|| arith(lt, rt));
        let (op, ty) = match op {
            B::Plus => (BinOp::Add, arith(&lt, &rt)),
            B::Minus => (BinOp::Sub, arith(&lt, &rt)),
            B::Multiply => (BinOp::Mul, arith(&lt, &rt)),
            B::Divide => (BinOp::Div, arith(&lt, &rt)),
            B::Modulo => (BinOp::Mod, arith(&lt, &rt)),
            B::StringConcat if lt == DataType::Bytea && rt == DataType::Bytea => (BinOp::Concat, DataType::Bytea),
            B::StringConcat => (BinOp::Concat, DataType::Text),
            B::Eq => (BinOp::Eq, DataType::Bool),
            B::NotEq => (BinOp::Ne, DataType::Bool),
            B::Lt => (BinOp::Lt, DataType::Bool),
            B::LtEq => (BinOp::Le, DataType::Bool),
            B::Gt => (BinOp::Gt, DataType::Bool),
            B::GtEq => (BinOp::Ge, DataType::Bool),
            B::And => (BinOp::And, DataType::Bool),
            B::Or => (BinOp::Or, DataType::Bool),
            B::PGRegexMatch => return Ok((Expr::Regex(Box::new(l), Box::new(r), false, false), DataType::Bool)),
            B::PGRegexIMatch => return Ok((Expr::Regex(Box::new(l), Box::new(r), false, true), DataType::Bool)),
            B::PGRegexNotMatch => return Ok((Expr::Regex(Box::new(l), Box::new(r), true, false), DataType::Bool)),
            B::PGRegexNotIMatch => return Ok((Expr::Regex(Box::new(l), Box::new(r), true, true), DataType::Bool)),
            B::PGLikeMatch => return Ok((Expr::Like(Box::new(l), Box::new(r), false, false), DataType::Bool)),
            B::PGILikeMatch => return Ok((Expr::Like(Box::new(l), Box::new(r), false, true), DataType::Bool)),
            B::PGNotLikeMatch => return Ok((Expr::Like(Box::new(l), Box::new(r), true, false), DataType::Bool)),
            B::PGNotILikeMatch => return Ok((Expr::Like(Box::new(l), Box::new(r), true, true), DataType::Bool)),
            // `^` is power, in double precision (PostgreSQL's numeric ^ numeric is numeric).
            B::PGExp => return Ok((Expr::Call(Arc::from("power"), vec![l, r]), DataType::Float8)),
            B::PGCustomBinaryOperator(parts) => {
                let op = parts.last().map(String::as_str).unwrap_or("");
                let bop = match op {
                    "~" => return Ok((Expr::Regex(Box::new(l), Box::new(r), false, false), DataType::Bool)),
                    "~*" => return Ok((Expr::Regex(Box::new(l), Box::new(r), false, true), DataType::Bool)),
                    "!~" => return Ok((Expr::Regex(Box::new(l), Box::new(r), true, false), DataType::Bool)),
                    "=" => B::Eq,
                    "<>" => B::NotEq,
                    "<" => B::Lt,
                    ">" => B::Gt,
                    _ => {
                        return Err(Error::new(SqlState::UNDEFINED_FUNCTION, format!("operator does not exist: {op}")))
                    }
                };
                return self.binary(l, lt, &bop, r, rt);
            }
            other => return Err(Error::new(SqlState::UNDEFINED_FUNCTION, format!("operator does not exist: {other}"))),
        };
        let e = Expr::Binary(op, Box::new(l), Box::new(r));
        // Integers are computed in 64 bits; an integer or smallint result out of its type's range is 22003,
        // as PostgreSQL's int4 and int2 operators give it, not a wider number.
        if matches!(op, BinOp::Add | BinOp::Sub | BinOp::Mul | BinOp::Div | BinOp::Mod)
            && matches!(ty, DataType::Int2 | DataType::Int4)
        {
            return Ok((Expr::Cast(Box::new(e), ty.clone()), ty));
        }
        Ok((e, ty))
    }

    /// Binds an expression over a scope.
    pub fn expr(&mut self, e: &ast::Expr, scope: &Scope) -> Result<(Expr, DataType)> {
        use ast::Expr as E;
        Ok(match e {
            E::Identifier(i) => {
                let name = ident(i);
                match self.column(None, &name, scope) {
                    Ok(r) => r,
                    // current_user, current_date, ... parse as identifiers.
                    Err(err) => match functions::return_type(&name, &[]) {
                        Some(t)
                            if i.quote_style.is_none()
                                && matches!(
                                    name.as_str(),
                                    "current_user"
                                        | "current_date"
                                        | "current_timestamp"
                                        | "session_user"
                                        | "user"
                                        | "current_schema"
                                        | "current_catalog"
                                ) =>
                        {
                            (Expr::Call(Arc::from(name.as_str()), vec![]), t)
                        }
                        _ => return Err(err),
                    },
                }
            }
            E::CompoundIdentifier(parts) => {
                let parts: Vec<String> = parts.iter().map(ident).collect();
                match parts.as_slice() {
                    [t, c] => self.column(Some(t), c, scope)?,
                    [_, t, c] => self.column(Some(t), c, scope)?,
                    _ => return Err(no_column(&parts.join("."))),
                }
            }
            E::Value(v) => match self.slot(v) {
                Some(i) => (Expr::Param(i), self.params.get(i).cloned().flatten().unwrap_or(DataType::Text)),
                None => self.literal(&v.value)?,
            },
            E::TypedString(ts) => {
                let ty = types::data_type(&ts.data_type)?;
                let s = match &ts.value.value {
                    ast::Value::SingleQuotedString(s) => s.clone(),
                    other => other.to_string(),
                };
                (Expr::Const(types::parse_value(&s, &ty)?), ty)
            }
            // INTERVAL '1 day', INTERVAL '3' HOUR: a constant.
            E::Interval(iv) => {
                let text = match iv.value.as_ref() {
                    ast::Expr::Value(v) => match &v.value {
                        ast::Value::SingleQuotedString(s) => s.clone(),
                        other => other.to_string(),
                    },
                    other => {
                        return Err(Error::new(
                            SqlState::FEATURE_NOT_SUPPORTED,
                            format!("INTERVAL {other} is not supported: write INTERVAL 'text' or a cast"),
                        ))
                    }
                };
                let text = match (&iv.leading_field, &iv.last_field) {
                    (Some(unit), None) if !text.trim().contains(|c: char| c.is_ascii_alphabetic() || c == ':') => {
                        format!("{text} {unit}")
                    }
                    _ => text,
                };
                (Expr::Const(types::parse_value(&text, &DataType::Interval)?), DataType::Interval)
            }
            E::Nested(inner) => self.expr(inner, scope)?,
            E::BinaryOp { left, op, right } => {
                let (l, lt) = self.expr(left, scope)?;
                let (r, rt) = self.expr(right, scope)?;
                self.binary(l, lt, op, r, rt)?
            }
            E::UnaryOp { op, expr } => {
                let (x, t) = self.expr(expr, scope)?;
                match op {
                    ast::UnaryOperator::Not => (Expr::Not(Box::new(x)), DataType::Bool),
                    ast::UnaryOperator::Minus => match x {
                        Expr::Const(Value::Int(i)) => (Expr::Const(Value::Int(-i)), t),
                        x => (Expr::Neg(Box::new(x)), t),
                    },
                    ast::UnaryOperator::Plus => (x, t),
                    other => {
                        return Err(Error::new(
                            SqlState::UNDEFINED_FUNCTION,
                            format!("operator does not exist: {other}"),
                        ))
                    }
                }
            }
            E::IsNull(x) => (Expr::IsNull(Box::new(self.expr(x, scope)?.0), false), DataType::Bool),
            E::IsNotNull(x) => (Expr::IsNull(Box::new(self.expr(x, scope)?.0), true), DataType::Bool),
            E::IsTrue(x) | E::IsNotTrue(x) | E::IsFalse(x) | E::IsNotFalse(x) => {
                let (v, _) = self.expr(x, scope)?;
                let target = matches!(e, E::IsTrue(_) | E::IsNotTrue(_));
                let negated = matches!(e, E::IsNotTrue(_) | E::IsNotFalse(_));
                let is = Expr::IsDistinct(Box::new(v), Box::new(Expr::Const(Value::Bool(target))), true);
                (if negated { Expr::Not(Box::new(is)) } else { is }, DataType::Bool)
            }
            E::IsDistinctFrom(a, b) | E::IsNotDistinctFrom(a, b) => {
                let (x, xt) = self.expr(a, scope)?;
                let (y, yt) = self.expr(b, scope)?;
                let y = self.coerce_to(y, &yt, &xt)?;
                (Expr::IsDistinct(Box::new(x), Box::new(y), matches!(e, E::IsNotDistinctFrom(..))), DataType::Bool)
            }
            E::In { expr, target: ast::InTarget::List(list), negated, .. } => {
                let (x, xt) = self.expr(expr, scope)?;
                let mut items = Vec::new();
                for i in list {
                    let (y, yt) = self.expr(i, scope)?;
                    items.push(self.coerce_to(y, &yt, &xt)?);
                }
                (Expr::InList(Box::new(x), items, *negated), DataType::Bool)
            }
            E::In { expr, target: ast::InTarget::Subquery(subquery), negated, .. } => {
                let (x, _) = self.expr(expr, scope)?;
                let q = self.subquery(subquery, scope)?;
                (Expr::InSubquery(Box::new(x), Box::new(q.plan), *negated), DataType::Bool)
            }
            E::Exists { subquery, negated } => {
                let q = self.subquery(subquery, scope)?;
                (Expr::Exists(Box::new(q.plan), *negated), DataType::Bool)
            }
            E::Subquery(q) => {
                let q = self.subquery(q, scope)?;
                let ty = q.columns.first().map(|c| c.1.clone()).unwrap_or(DataType::Text);
                (Expr::Subquery(Box::new(q.plan)), ty)
            }
            E::Between { expr, negated, low, high } => {
                let (x, xt) = self.expr(expr, scope)?;
                let (lo, lot) = self.expr(low, scope)?;
                let (hi, hit) = self.expr(high, scope)?;
                let lo = self.coerce_to(lo, &lot, &xt)?;
                let hi = self.coerce_to(hi, &hit, &xt)?;
                let b = Expr::Binary(
                    BinOp::And,
                    Box::new(Expr::Binary(BinOp::Ge, Box::new(x.clone()), Box::new(lo))),
                    Box::new(Expr::Binary(BinOp::Le, Box::new(x), Box::new(hi))),
                );
                (if *negated { Expr::Not(Box::new(b)) } else { b }, DataType::Bool)
            }
            E::Like { negated, expr, pattern, escape_char, .. }
            | E::ILike { negated, expr, pattern, escape_char, .. } => {
                let (x, _) = self.expr(expr, scope)?;
                let (mut p, _) = self.expr(pattern, scope)?;
                // `ESCAPE c`: the pattern is rewritten to the backslash form, as PostgreSQL's like_escape does.
                if let Some(c) = escape_char {
                    p = Expr::Call(Arc::from("like_escape"), vec![p, self.expr(c, scope)?.0]);
                }
                (Expr::Like(Box::new(x), Box::new(p), *negated, matches!(e, E::ILike { .. })), DataType::Bool)
            }
            E::SimilarTo { negated, expr, pattern, escape_char } => {
                let (x, _) = self.expr(expr, scope)?;
                let mut args = vec![self.expr(pattern, scope)?.0];
                if let Some(c) = escape_char {
                    args.push(self.expr(c, scope)?.0);
                }
                let regex = Expr::Call(Arc::from("similar_to_escape"), args);
                (Expr::Regex(Box::new(x), Box::new(regex), *negated, false), DataType::Bool)
            }
            E::Cast { expr, data_type, .. } => {
                let ty = types::data_type(data_type)?;
                let (x, xt) = self.expr(expr, scope)?;
                if let Expr::Param(i) = x {
                    if self.params.get(i).is_none_or(|t| t.is_none()) {
                        self.note_param(i, &ty);
                    }
                }
                // regclass casts of names look the table up.
                if matches!(data_type, ast::DataType::Regclass)
                    || data_type.to_string().to_lowercase().ends_with("regclass")
                {
                    if let Expr::Const(Value::Text(name)) = &x {
                        let n = name.rsplit('.').next().unwrap_or("");
                        let seq = self.state.sequence(n).map(|s| s.id);
                        let oid = self.state.table(n).map(|t| t.def.id).or(seq).or_else(|| catalog::catalog_oid(n));
                        let oid = oid.ok_or_else(|| {
                            Error::new(SqlState::UNDEFINED_TABLE, format!("relation \"{name}\" does not exist"))
                        })?;
                        return Ok((Expr::Const(Value::Int(oid as i64)), DataType::Oid));
                    }
                }
                let _ = xt;
                (Expr::Cast(Box::new(x), ty.clone()), ty)
            }
            E::Collate { expr, .. } => self.expr(expr, scope)?,
            E::Case { operand, conditions, else_result, .. } => {
                let mut op_ty = None;
                let operand = match operand {
                    Some(o) => {
                        let (x, t) = self.expr(o, scope)?;
                        op_ty = Some(t);
                        Some(Box::new(x))
                    }
                    None => None,
                };
                let mut whens = Vec::new();
                let mut ty: Option<DataType> = None;
                for w in conditions {
                    let (c, ct) = self.expr(&w.condition, scope)?;
                    let c = match &op_ty {
                        Some(t) => self.coerce_to(c, &ct, t)?,
                        None => c,
                    };
                    let (r, rt) = self.expr(&w.result, scope)?;
                    if ty.is_none() || ty == Some(DataType::Text) && !matches!(r, Expr::Const(Value::Null)) {
                        ty = Some(rt);
                    }
                    whens.push((c, r));
                }
                let otherwise = match else_result {
                    Some(x) => Some(Box::new(self.expr(x, scope)?.0)),
                    None => None,
                };
                (Expr::Case { operand, whens, otherwise }, ty.unwrap_or(DataType::Text))
            }
            E::Function(f) => self.function(f, scope)?,
            E::Extract { field, expr, .. } => {
                let (x, _) = self.expr(expr, scope)?;
                (
                    Expr::Call(
                        Arc::from("extract"),
                        vec![Expr::Const(Value::text(&field.to_string().to_lowercase())), x],
                    ),
                    DataType::Numeric(None),
                )
            }
            E::Substring { expr, substring_from, substring_for, .. } => {
                let mut args = vec![self.expr(expr, scope)?.0];
                let from = match substring_from {
                    Some(f) => Some(self.expr(f, scope)?),
                    None => None,
                };
                // `substring(s FROM pattern)` with a text pattern is the POSIX regular expression form.
                if let (Some((pattern, DataType::Text)), None) = (&from, substring_for) {
                    args.push(pattern.clone());
                    return Ok((Expr::Call(Arc::from("substring_regex"), args), DataType::Text));
                }
                args.push(from.map_or(Expr::Const(Value::Int(1)), |f| f.0));
                if let Some(f) = substring_for {
                    args.push(self.expr(f, scope)?.0);
                }
                (Expr::Call(Arc::from("substr"), args), DataType::Text)
            }
            E::Trim { expr, trim_where, trim_what, .. } => {
                let name = match trim_where {
                    Some(ast::TrimWhereField::Leading) => "ltrim",
                    Some(ast::TrimWhereField::Trailing) => "rtrim",
                    _ => "btrim",
                };
                let mut args = vec![self.expr(expr, scope)?.0];
                if let Some(w) = trim_what {
                    args.push(self.expr(w, scope)?.0);
                }
                (Expr::Call(Arc::from(name), args), DataType::Text)
            }
            E::Overlay { expr, overlay_what, overlay_from, overlay_for } => {
                let mut args = vec![self.expr(expr, scope)?.0, self.expr(overlay_what, scope)?.0];
                args.push(self.expr(overlay_from, scope)?.0);
                if let Some(f) = overlay_for {
                    args.push(self.expr(f, scope)?.0);
                }
                (Expr::Call(Arc::from("overlay"), args), DataType::Text)
            }
            E::Position { expr, r#in } => {
                let needle = self.expr(expr, scope)?.0;
                let hay = self.expr(r#in, scope)?.0;
                (Expr::Call(Arc::from("strpos"), vec![hay, needle]), DataType::Int4)
            }
            E::Ceil { expr, .. } | E::Floor { expr, .. } => {
                let (x, t) = self.expr(expr, scope)?;
                let name = if matches!(e, E::Ceil { .. }) { "ceil" } else { "floor" };
                let ty = functions::return_type(name, &[t]).unwrap_or(DataType::Float8);
                (Expr::Call(Arc::from(name), vec![x]), ty)
            }
            E::AtTimeZone { timestamp, time_zone } => {
                // timestamptz AT TIME ZONE z is the local time there; timestamp AT TIME ZONE z the instant
                // that local time is in z.
                let (x, t) = self.expr(timestamp, scope)?;
                let (x, t) = match t {
                    DataType::Timestamp => (x, t),
                    DataType::Date => (Expr::Cast(Box::new(x), DataType::Timestamp), DataType::Timestamp),
                    _ => (self.coerce_to(x, &t, &DataType::TimestampTz)?, DataType::TimestampTz),
                };
                let (z, zt) = self.expr(time_zone, scope)?;
                let z = self.coerce_to(z, &zt, &DataType::Text)?;
                let ty = if t == DataType::Timestamp { DataType::TimestampTz } else { DataType::Timestamp };
                (Expr::Call(Arc::from("timezone"), vec![z, x]), ty)
            }
            // Array constructs appear only in catalog queries over views that are always empty in tandem;
            // they fail if they are ever evaluated.
            E::Array(_) | E::AnyOp { .. } | E::AllOp { .. } | E::CompoundFieldAccess { .. } => {
                (Expr::Call(Arc::from("__unsupported"), vec![Expr::Const(Value::text(&e.to_string()))]), DataType::Text)
            }
            other => return Err(unsupported(format!("expression {other}"))),
        })
    }

    /// The parameter a literal stands for, when planning a statement shape.
    fn slot(&mut self, v: &ast::ValueWithSpan) -> Option<usize> {
        let slots = self.slots.as_mut()?;
        if !matches!(v.value, ast::Value::Number(..) | ast::Value::SingleQuotedString(_)) {
            return None;
        }
        let start = (v.span.start.line, v.span.start.column);
        let i = slots.spans.iter().position(|&s| s == start)?;
        slots.used[i] = true;
        Some(i)
    }

    fn literal(&mut self, v: &ast::Value) -> Result<(Expr, DataType)> {
        Ok(match v {
            ast::Value::Number(..) | ast::Value::SingleQuotedString(_) | ast::Value::EscapedStringLiteral(_) => {
                let (v, ty) = literal_value(v)?;
                (Expr::Const(v), ty)
            }
            ast::Value::DollarQuotedString(s) => (Expr::Const(Value::text(&s.value)), DataType::Text),
            ast::Value::HexStringLiteral(s) => (Expr::Const(Value::text(s)), DataType::Text),
            ast::Value::Boolean(b) => (Expr::Const(Value::Bool(*b)), DataType::Bool),
            ast::Value::Null => (Expr::Const(Value::Null), DataType::Text),
            ast::Value::Placeholder(p) => {
                let n: usize = p
                    .trim_start_matches('$')
                    .parse()
                    .map_err(|_| Error::new(SqlState::SYNTAX_ERROR, format!("syntax error at or near \"{p}\"")))?;
                // Bind counts parameters in 16 bits; a larger number cannot be bound, and would size the
                // parameter list to match.
                if n == 0 || n > MAX_PARAMS {
                    return Err(Error::new(SqlState("42P02"), format!("there is no parameter {p}")));
                }
                if self.params.len() < n {
                    self.params.resize(n, None);
                }
                let ty = self.params[n - 1].clone().unwrap_or(DataType::Text);
                (Expr::Param(n - 1), ty)
            }
            other => return Err(unsupported(format!("literal {other}"))),
        })
    }

    fn function(&mut self, f: &ast::Function, scope: &Scope) -> Result<(Expr, DataType)> {
        let name = function_name(f);
        if let ast::FunctionArguments::Subquery(q) = &f.args {
            if name == "array" {
                let q = self.subquery(q, scope)?;
                if q.columns.len() != 1 {
                    return Err(Error::new(SqlState::SYNTAX_ERROR, "subquery must return only one column"));
                }
                return Ok((Expr::ArraySubquery(Box::new(q.plan)), DataType::Text));
            }
            return Ok((
                Expr::Call(Arc::from("__unsupported"), vec![Expr::Const(Value::text(&f.to_string()))]),
                DataType::Text,
            ));
        }
        if agg_func(f).is_some() {
            return Err(Error::new(SqlState("42803"), format!("aggregate function {name} is not allowed here")));
        }
        if f.over.is_some() {
            return Err(unsupported("window functions"));
        }
        let mut args = Vec::new();
        let mut tys = Vec::new();
        for a in function_args(f)? {
            let Some(a) = a else { return Err(unsupported(format!("{name}(*)"))) };
            let (x, t) = self.expr(&a, scope)?;
            args.push(x);
            tys.push(t);
        }
        if let ("pg_typeof", [t]) = (name.as_str(), tys.as_slice()) {
            // The argument's type as regtype prints it: the name without length or precision.
            let full = t.sql_name();
            let base = full.split('(').next().unwrap_or(&full).to_string();
            return Ok((Expr::Const(Value::text(&base)), DataType::Text));
        }
        match name.as_str() {
            "nextval" | "currval" | "setval" => {
                if let Some(Expr::Const(Value::Text(_))) = args.first() {
                    // Sequence names stay text; the session resolves them.
                } else if let Some(first) = args.first().cloned() {
                    let t = tys[0].clone();
                    args[0] = self.coerce_to(first, &t, &DataType::Text)?;
                }
                if name == "setval" && args.len() > 1 {
                    let t = tys[1].clone();
                    args[1] = self.coerce_to(args[1].clone(), &t, &DataType::Int8)?;
                }
            }
            "coalesce" | "greatest" | "least" | "nullif" => {
                if let Some(target) = tys.iter().find(|t| **t != DataType::Text).cloned() {
                    for i in 0..args.len() {
                        let t = tys[i].clone();
                        args[i] = self.coerce_to(args[i].clone(), &t, &target)?;
                    }
                }
            }
            _ => {}
        }
        let ty = functions::return_type(&name, &tys).ok_or_else(|| no_function(&name))?;
        Ok((Expr::Call(Arc::from(name.as_str()), args), ty))
    }
}

fn sort_key(expr: Expr, o: &ast::OrderByOptions) -> SortKey {
    let desc = matches!(o.sort, Some(ast::OrderBySort::Desc));
    SortKey { expr, desc, nulls_first: o.nulls_first.unwrap_or(desc) }
}

fn no_column(name: &str) -> Error {
    Error::new(SqlState::UNDEFINED_COLUMN, format!("column \"{name}\" does not exist"))
}

fn no_function(name: &str) -> Error {
    if name == "generate_series" {
        return Error::new(
            SqlState::FEATURE_NOT_SUPPORTED,
            "set-returning function generate_series is supported in FROM or as a whole select-list item only",
        );
    }
    Error::new(SqlState::UNDEFINED_FUNCTION, format!("function {name} does not exist"))
        .with_hint("No function matches the given name and argument types. You might need to add explicit type casts.")
}

/// A function's name, lower-case, without a `pg_catalog.` prefix.
pub fn function_name(f: &ast::Function) -> String {
    name_parts(&f.name).pop().unwrap_or_default()
}

/// A function's arguments; None stands for `*`.
fn function_args(f: &ast::Function) -> Result<Vec<Option<ast::Expr>>> {
    match &f.args {
        ast::FunctionArguments::None => Ok(vec![]),
        ast::FunctionArguments::List(l) => l
            .args
            .iter()
            .map(|a| match a {
                ast::FunctionArg::Unnamed(ast::FunctionArgExpr::Expr(e)) => Ok(Some(e.clone())),
                ast::FunctionArg::Unnamed(ast::FunctionArgExpr::Wildcard) => Ok(None),
                other => Err(unsupported(format!("argument {other}"))),
            })
            .collect(),
        ast::FunctionArguments::Subquery(_) => Err(unsupported("subquery argument")),
    }
}

/// An aggregate's argument as it is accumulated, and the aggregate's result type, for an argument of type `ty`.
fn agg_output(func: AggFunc, arg: Option<Expr>, ty: DataType) -> (Option<Expr>, DataType) {
    match func {
        AggFunc::Count => (arg, DataType::Int8),
        AggFunc::Sum if is_int(&ty) => (arg.map(|a| Expr::Cast(Box::new(a), DataType::Int8)), DataType::Int8),
        // sum of a non-integer type and avg: double for floats, interval for intervals, numeric otherwise.
        AggFunc::Sum | AggFunc::Avg => (
            arg,
            if matches!(ty, DataType::Float4 | DataType::Float8) {
                DataType::Float8
            } else if ty == DataType::Interval {
                DataType::Interval
            } else {
                DataType::Numeric(None)
            },
        ),
        AggFunc::BoolAnd | AggFunc::BoolOr => (arg, DataType::Bool),
        AggFunc::StringAgg => (arg, DataType::Text),
        // Double precision for floats, numeric for integers and numerics (others are read as numeric).
        AggFunc::Variance { .. } if matches!(ty, DataType::Float4 | DataType::Float8) => {
            (arg.map(|a| Expr::Cast(Box::new(a), DataType::Float8)), DataType::Float8)
        }
        AggFunc::Variance { .. } if is_int(&ty) => (arg, DataType::Numeric(None)),
        AggFunc::Variance { .. } => {
            (arg.map(|a| Expr::Cast(Box::new(a), DataType::Numeric(None))), DataType::Numeric(None))
        }
        _ => (arg, ty),
    }
}

fn agg_func(f: &ast::Function) -> Option<(AggFunc, bool)> {
    let func = match function_name(f).as_str() {
        "count" => AggFunc::Count,
        "sum" => AggFunc::Sum,
        "avg" => AggFunc::Avg,
        "min" => AggFunc::Min,
        "max" => AggFunc::Max,
        "bool_and" | "every" => AggFunc::BoolAnd,
        "bool_or" => AggFunc::BoolOr,
        "string_agg" => AggFunc::StringAgg,
        "variance" | "var_samp" => AggFunc::Variance { sample: true, root: false },
        "var_pop" => AggFunc::Variance { sample: false, root: false },
        "stddev" | "stddev_samp" => AggFunc::Variance { sample: true, root: true },
        "stddev_pop" => AggFunc::Variance { sample: false, root: true },
        _ => return None,
    };
    let distinct = matches!(&f.args, ast::FunctionArguments::List(l) if matches!(l.duplicate_treatment, Some(ast::DuplicateTreatment::Distinct)));
    Some((func, distinct))
}

/// Refuses the parts of an aggregate call the executor does not implement, rather than ignore them.
fn refuse_agg_modifiers(f: &ast::Function) -> Result<()> {
    if f.over.is_some() {
        return Err(unsupported(format!("window function {}", function_name(f))));
    }
    if !f.within_group.is_empty() {
        return Err(unsupported("WITHIN GROUP"));
    }
    if f.null_treatment.is_some() || !matches!(f.parameters, ast::FunctionArguments::None) {
        return Err(unsupported(format!("aggregate call {f}")));
    }
    if let ast::FunctionArguments::List(l) = &f.args {
        if let Some(c) = l.clauses.first() {
            let what = match c {
                ast::FunctionArgumentClause::OrderBy(_) => "ORDER BY inside an aggregate call".to_string(),
                other => format!("aggregate argument clause {other}"),
            };
            return Err(unsupported(what));
        }
    }
    Ok(())
}

/// The column a set-returning select-list item becomes (a name no unquoted identifier can spell).
const SRF_COLUMN: &str = "?generate_series?";

/// Binds an expression of a window call against the rows the window functions read.
type Binder<'b, 'a> = dyn FnMut(&mut Planner<'a>, &ast::Expr) -> Result<(Expr, DataType)> + 'b;

/// The hidden column a window function call in the select list is replaced by (numbered).
const WINDOW_COLUMN: &str = "?window?";

/// Takes the window function calls out of a select list (not out of its subqueries, which plan their
/// own), replacing each with an identifier naming a hidden column; None when there are none.
fn take_window_calls(s: &ast::Select) -> Option<(ast::Select, Vec<(String, ast::Function)>)> {
    use std::ops::ControlFlow;
    struct Calls {
        depth: usize,
        calls: Vec<(String, ast::Function)>,
    }
    impl ast::VisitorMut for Calls {
        type Break = ();
        fn pre_visit_query(&mut self, _: &mut ast::Query) -> ControlFlow<()> {
            self.depth += 1;
            ControlFlow::Continue(())
        }
        fn post_visit_query(&mut self, _: &mut ast::Query) -> ControlFlow<()> {
            self.depth -= 1;
            ControlFlow::Continue(())
        }
        fn post_visit_expr(&mut self, e: &mut ast::Expr) -> ControlFlow<()> {
            if let ast::Expr::Function(f) = e {
                if self.depth == 0 && f.over.is_some() {
                    let name = format!("{WINDOW_COLUMN}{}", self.calls.len());
                    self.calls.push((name.clone(), f.clone()));
                    *e = ast::Expr::Identifier(ast::Ident::new(name));
                }
            }
            ControlFlow::Continue(())
        }
    }
    let mut calls = Calls { depth: 0, calls: Vec::new() };
    let mut projection = s.projection.clone();
    let _ = ast::VisitMut::visit(&mut projection, &mut calls);
    if calls.calls.is_empty() {
        return None;
    }
    Some((ast::Select { projection, ..s.clone() }, calls.calls))
}

/// A named window of the WINDOW clause.
fn named_window(named: &[ast::NamedWindowDefinition], name: &str) -> Result<ast::WindowSpec> {
    match named.iter().find(|d| ident(&d.0) == name).map(|d| &d.1) {
        Some(ast::NamedWindowExpr::WindowSpec(spec)) => Ok(spec.clone()),
        Some(ast::NamedWindowExpr::NamedWindow(other)) => named_window(named, &ident(other)),
        None => Err(Error::new(SqlState::UNDEFINED_OBJECT, format!("window \"{name}\" does not exist"))),
    }
}

/// The column a window function's result is bound to before the aggregates are counted: counted down from
/// the top, far above any real column, and renumbered by [`renumber_windows`].
fn window_placeholder(k: usize) -> usize {
    usize::MAX - k
}

/// Renumbers window placeholders to the columns after the `width` columns of the grouped rows.
fn renumber_windows(e: &mut Expr, width: usize) {
    const FAR: usize = usize::MAX - (1 << 20);
    match e {
        Expr::Column(i) if *i > FAR => *i = width + (usize::MAX - *i),
        Expr::Binary(_, a, b) | Expr::IsDistinct(a, b, _) | Expr::Like(a, b, _, _) | Expr::Regex(a, b, _, _) => {
            renumber_windows(a, width);
            renumber_windows(b, width);
        }
        Expr::Not(a) | Expr::Neg(a) | Expr::IsNull(a, _) | Expr::Cast(a, _) | Expr::InSubquery(a, _, _) => {
            renumber_windows(a, width)
        }
        Expr::InList(a, list, _) => {
            renumber_windows(a, width);
            list.iter_mut().for_each(|x| renumber_windows(x, width));
        }
        Expr::Case { operand, whens, otherwise } => {
            operand.iter_mut().chain(otherwise.iter_mut()).for_each(|x| renumber_windows(x, width));
            for (w, t) in whens {
                renumber_windows(w, width);
                renumber_windows(t, width);
            }
        }
        Expr::Call(_, args) => args.iter_mut().for_each(|x| renumber_windows(x, width)),
        _ => {}
    }
}

/// A set-returning function as a whole select-list item (`SELECT generate_series(1, 3)`, `SELECT k,
/// generate_series(1, k) FROM t`): its arguments, and the select with that item reading the series column
/// instead, under PostgreSQL's name for it (the function's name, or the item's alias). It is planned as a
/// lateral join of each row the WHERE keeps with the series, which is what PostgreSQL computes. One such
/// item per select list, and none beside aggregates or GROUP BY.
fn srf_item(s: &ast::Select) -> Result<Option<(Vec<ast::FunctionArg>, ast::Select)>> {
    let is_srf = |e: &ast::Expr| matches!(e, ast::Expr::Function(f) if function_name(f) == "generate_series");
    let any = s.projection.iter().any(|p| match p {
        ast::SelectItem::UnnamedExpr(e) | ast::SelectItem::ExprWithAlias { expr: e, .. } => is_srf(e),
        _ => false,
    });
    if !any {
        return Ok(None);
    }
    let mut found = None;
    let mut projection = s.projection.clone();
    for item in projection.iter_mut() {
        let (expr, alias) = match item {
            ast::SelectItem::UnnamedExpr(e) => (e, None),
            ast::SelectItem::ExprWithAlias { expr, alias } => (expr, Some(alias.clone())),
            _ => continue,
        };
        let ast::Expr::Function(f) = &*expr else { continue };
        if function_name(f) != "generate_series" {
            continue;
        }
        let ast::FunctionArguments::List(list) = &f.args else { continue };
        if found.is_some() {
            return Err(unsupported("more than one set-returning function in a select list"));
        }
        found = Some(list.args.clone());
        let alias = alias.unwrap_or_else(|| ast::Ident::new("generate_series"));
        *item = ast::SelectItem::ExprWithAlias { expr: ast::Expr::Identifier(ast::Ident::new(SRF_COLUMN)), alias };
    }
    let Some(args) = found else { return Ok(None) };
    let grouped = !matches!(&s.group_by, ast::GroupByExpr::Expressions(e, _) if e.is_empty());
    let aggregated = s.projection.iter().any(|p| match p {
        ast::SelectItem::UnnamedExpr(e) | ast::SelectItem::ExprWithAlias { expr: e, .. } => has_aggregate(e),
        _ => false,
    }) || s.having.is_some();
    if grouped || aggregated {
        return Err(unsupported("a set-returning function in a select list with aggregates or GROUP BY"));
    }
    Ok(Some((args, ast::Select { projection, ..s.clone() })))
}

/// Whether an expression contains an aggregate call (outside subqueries).
fn has_aggregate(e: &ast::Expr) -> bool {
    use ast::Expr as E;
    match e {
        E::Function(f) => {
            agg_func(f).is_some() || function_args(f).map(|a| a.iter().flatten().any(has_aggregate)).unwrap_or(false)
        }
        E::BinaryOp { left, right, .. } => has_aggregate(left) || has_aggregate(right),
        E::UnaryOp { expr, .. }
        | E::Nested(expr)
        | E::Cast { expr, .. }
        | E::IsNull(expr)
        | E::IsNotNull(expr)
        | E::Collate { expr, .. } => has_aggregate(expr),
        E::Case { operand, conditions, else_result, .. } => {
            operand.as_deref().is_some_and(has_aggregate)
                || conditions.iter().any(|w| has_aggregate(&w.condition) || has_aggregate(&w.result))
                || else_result.as_deref().is_some_and(has_aggregate)
        }
        E::Between { expr, low, high, .. } => has_aggregate(expr) || has_aggregate(low) || has_aggregate(high),
        E::In { expr, target: ast::InTarget::List(list), .. } => has_aggregate(expr) || list.iter().any(has_aggregate),
        _ => false,
    }
}

/// The name PostgreSQL gives an unaliased output column.
fn column_name(e: &ast::Expr) -> String {
    match e {
        ast::Expr::Identifier(i) => ident(i),
        ast::Expr::CompoundIdentifier(p) => p.last().map(ident).unwrap_or_default(),
        ast::Expr::Function(f) => function_name(f),
        ast::Expr::Cast { expr, data_type, .. } => match expr.as_ref() {
            ast::Expr::Identifier(_) | ast::Expr::CompoundIdentifier(_) | ast::Expr::Function(_) => column_name(expr),
            _ => types::data_type(data_type).map(|t| pg_type_name(&t)).unwrap_or_else(|_| "?column?".into()),
        },
        ast::Expr::Nested(x) => column_name(x),
        ast::Expr::Case { .. } => "case".into(),
        ast::Expr::Exists { .. } => "exists".into(),
        ast::Expr::Subquery(q) => match q.body.as_ref() {
            ast::SetExpr::Select(s) => match s.projection.first() {
                Some(ast::SelectItem::UnnamedExpr(e)) => column_name(e),
                Some(ast::SelectItem::ExprWithAlias { alias, .. }) => ident(alias),
                _ => "?column?".into(),
            },
            _ => "?column?".into(),
        },
        ast::Expr::Extract { .. } => "extract".into(),
        ast::Expr::AtTimeZone { .. } => "timezone".into(),
        ast::Expr::TypedString(ts) => {
            types::data_type(&ts.data_type).map(|t| pg_type_name(&t)).unwrap_or_else(|_| "?column?".into())
        }
        ast::Expr::Substring { .. } => "substring".into(),
        ast::Expr::Trim { .. } => "btrim".into(),
        ast::Expr::Position { .. } => "position".into(),
        ast::Expr::Ceil { .. } => "ceil".into(),
        ast::Expr::Floor { .. } => "floor".into(),
        _ => "?column?".into(),
    }
}

/// The short type name PostgreSQL uses for cast output columns (`int4`, `text`, ...).
fn pg_type_name(t: &DataType) -> String {
    match t {
        DataType::Bool => "bool",
        DataType::Int2 => "int2",
        DataType::Int4 => "int4",
        DataType::Int8 => "int8",
        DataType::Float4 => "float4",
        DataType::Float8 => "float8",
        DataType::Numeric(_) => "numeric",
        DataType::Text => "text",
        DataType::Varchar(_) => "varchar",
        DataType::Char(_) => "bpchar",
        DataType::Bytea => "bytea",
        DataType::Date => "date",
        DataType::Timestamp => "timestamp",
        DataType::TimestampTz => "timestamptz",
        DataType::Interval => "interval",
        DataType::Oid => "oid",
    }
    .into()
}

/// A storage type from a wire type oid (0 or unknown: None).
pub fn type_from_oid(oid: u32) -> Option<DataType> {
    Some(match oid {
        16 => DataType::Bool,
        17 => DataType::Bytea,
        20 => DataType::Int8,
        21 => DataType::Int2,
        23 => DataType::Int4,
        25 | 1043 | 1042 | 19 => DataType::Text,
        26 => DataType::Oid,
        700 => DataType::Float4,
        701 => DataType::Float8,
        1082 => DataType::Date,
        1114 => DataType::Timestamp,
        1184 => DataType::TimestampTz,
        1700 => DataType::Numeric(None),
        _ => return None,
    })
}

/// PostgreSQL's rule for DISTINCT ON with ORDER BY: the ORDER BY must start with DISTINCT ON expressions
/// (in any order) before any other sort key, and once another key comes, every DISTINCT ON expression must
/// have come already; otherwise "the first row of each key" would not be the first in the requested order.
/// Expressions are compared as bound (so `ORDER BY 1` matches `DISTINCT ON (a)` when column 1 is `a`).
fn distinct_on_matches_order(on: &[String], order: &[String]) -> Result<()> {
    let mismatch =
        || Error::new(SqlState("42P10"), "SELECT DISTINCT ON expressions must match initial ORDER BY expressions");
    let mut skipped = false;
    for key in order {
        if on.contains(key) {
            if skipped {
                return Err(mismatch());
            }
        } else {
            skipped = true;
        }
    }
    if skipped && on.iter().any(|k| !order.contains(k)) {
        return Err(mismatch());
    }
    Ok(())
}
