//! The executor: runs a [`Plan`] over a database state and returns its rows.
//!
//! Execution is materializing: each node computes all of its rows before its parent looks at them. That
//! keeps every operator a few lines long, and the workloads this server is built for (OLTP statements
//! that touch a handful of rows found by key) never build large intermediate results. Access paths only
//! narrow the rows a table node reads; the node's filter always re-checks the whole WHERE clause, so a
//! lookup can never change a query's answer, only its cost.
//!
//! The same access-path code finds the candidate rows of UPDATE and DELETE (with their keys), so writes
//! use primary-key and index lookups exactly as reads do.
//!
//! Because everything is materialized, one statement could otherwise ask for more memory than the machine
//! has (`generate_series(1, 1e10)`, a cross join of large inputs, `repeat` of a long string), and a failed
//! allocation aborts the whole server, not just the session. So each statement has a work limit (by
//! default a quarter of the machine's memory; [`SessionCtx::charge`]), counted in bytes: the rows table
//! reads keep, the rows of `generate_series` and the pairs a join considers (both paid for before they
//! are made, so that a statement too large fails at once), and the text that the functions which
//! multiply text build. Rows a table read passes over cost a little too, so that no statement runs
//! without end. The other operators make at most a few times what their input has paid for. Past the
//! limit the statement fails with 54000 and the session goes on.

use std::cell::Cell;
use std::collections::{HashMap, HashSet};
use std::sync::Arc;

use crate::engine::Engine;
use crate::error::{Error, Result, SqlState};
use crate::sql::catalog;
use crate::sql::expr::{compare, truth, Expr};
use crate::sql::plan::{Access, AggFunc, Aggregate, JoinKind, Plan, SetOpKind, SortKey};
use crate::sql::types;
use crate::storage::state::{DbState, TableData};
use crate::storage::value::{Decimal, Key, Row, Value};

/// What a session contributes to evaluation: the clock, settings and identity.
pub struct SessionCtx {
    pub engine: Arc<Engine>,
    /// The transaction's start time (µs since 2000-01-01), for now() and CURRENT_TIMESTAMP.
    pub now: i64,
    pub pid: i32,
    pub user: String,
    pub database: String,
    pub settings: Vec<(String, String)>,
    /// The last value nextval returned in this session, per sequence (for currval).
    pub currvals: std::cell::RefCell<HashMap<u32, i64>>,
    /// The server's replication state, for the monitoring views (None outside a server).
    pub replication: Option<Arc<crate::replication::walsender::ReplicationContext>>,
    /// The server's backends, for pg_stat_activity, pg_cancel_backend and pg_terminate_backend (None
    /// outside a server).
    pub activity: Option<Arc<crate::activity::Registry>>,
    /// Warnings raised by functions the running statement called, for the wire layer to send.
    pub warnings: std::cell::RefCell<Vec<String>>,
    /// The work the running statement has done, in bytes (see [`SessionCtx::charge`]).
    pub work: Cell<u64>,
    /// The most work a statement may do: [`default_work_limit`] unless changed.
    pub work_limit: u64,
    /// The working tables of the recursive unions running now, by plan id (see [`Plan::RecursiveUnion`]).
    pub work_tables: std::cell::RefCell<HashMap<usize, std::rc::Rc<Vec<Vec<Value>>>>>,
    /// The state of the session's random(): a splitmix64 counter, seeded from the kernel when the session
    /// starts and by setseed().
    pub random: Cell<u64>,
}

/// A seed for a session's random(): from getrandom(2), or the clock if that fails.
pub fn random_seed() -> u64 {
    let mut b = [0u8; 8];
    // SAFETY: getrandom writes at most the 8 bytes of the buffer it is given.
    let n = unsafe { libc::getrandom(b.as_mut_ptr().cast(), b.len(), 0) };
    if n == 8 {
        u64::from_le_bytes(b)
    } else {
        std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.as_nanos() as u64)
    }
}

/// How much work a statement may do by default, in bytes: a quarter of the machine's memory (8 GB where
/// that cannot be read), so that a runaway statement fails well before the server runs out.
pub fn default_work_limit() -> u64 {
    static LIMIT: std::sync::OnceLock<u64> = std::sync::OnceLock::new();
    *LIMIT.get_or_init(|| {
        // SAFETY: sysconf only reads a system setting.
        let (pages, page) = unsafe { (libc::sysconf(libc::_SC_PHYS_PAGES), libc::sysconf(libc::_SC_PAGESIZE)) };
        match (u64::try_from(pages), u64::try_from(page)) {
            (Ok(pages), Ok(page)) if pages > 0 && page > 0 => pages.saturating_mul(page) / 4,
            _ => 8 << 30,
        }
    })
}

/// What a row that is read or compared but not kept costs.
const PASS_COST: usize = std::mem::size_of::<Value>();

/// The bytes a materialized row of `width` values takes.
pub(crate) fn row_bytes(width: usize) -> usize {
    std::mem::size_of::<Vec<Value>>() + width * std::mem::size_of::<Value>()
}

impl SessionCtx {
    /// A setting's value, if set.
    pub fn setting(&self, name: &str) -> Option<&str> {
        self.settings.iter().find(|(k, _)| k.eq_ignore_ascii_case(name)).map(|(_, v)| v.as_str())
    }

    /// A parameter's value as SHOW and current_setting() give it: the session's, else the server's (for
    /// the settings ALTER SYSTEM changes), else PostgreSQL's default; None for a name nobody knows.
    pub fn current_setting(&self, name: &str) -> Option<String> {
        if let Some(v) = self.setting(name) {
            return Some(v.to_string());
        }
        if crate::settings::ServerSettings::is_known(name) {
            return Some(match &self.replication {
                Some(r) => r.settings.get(name),
                None => crate::settings::ServerSettings::defaults().get(name),
            });
        }
        crate::sql::params::find(name).map(|p| p.default.to_string())
    }

    /// Counts `bytes` of work for the running statement, before they are allocated; 54000 once the
    /// statement passes its limit.
    pub fn charge(&self, bytes: usize) -> Result<()> {
        let before = self.work.get();
        let work = before.saturating_add(bytes as u64);
        self.work.set(work);
        // Now and then (every 256 KiB of work), see whether the statement was cancelled or timed out.
        if work >> 18 != before >> 18 {
            crate::activity::check_interrupts()?;
        }
        if work > self.work_limit {
            return Err(Error::new(
                SqlState::PROGRAM_LIMIT_EXCEEDED,
                format!("statement exceeds the work limit of {} MB", self.work_limit >> 20),
            )
            .with_detail("It would materialize more rows or text than one statement may."));
        }
        Ok(())
    }
}

/// The running transaction, shared between the statement's writes and the sequence functions its
/// expressions call (nextval writes through the transaction too). Borrows never overlap: an expression is
/// evaluated before or after a write, never during one.
pub type TxnCell<'t> = std::cell::RefCell<&'t mut crate::txn::Transaction>;

/// The environment an expression or plan runs in.
pub struct Env<'a> {
    pub state: &'a DbState,
    pub params: &'a [Value],
    /// Rows of enclosing queries, innermost last.
    pub outer: Vec<Vec<Value>>,
    pub session: &'a SessionCtx,
    /// The transaction, for functions that write (nextval, setval); None where nothing may write.
    pub txn: Option<&'a TxnCell<'a>>,
}

/// Runs a subquery for the current row of the enclosing query.
pub fn run_subquery(plan: &Plan, row: &[Value], env: &Env) -> Result<Vec<Vec<Value>>> {
    let mut outer = env.outer.clone();
    outer.push(row.to_vec());
    let inner = Env { state: env.state, params: env.params, outer, session: env.session, txn: env.txn };
    run(plan, &inner)
}

fn table<'s>(state: &'s DbState, id: u32, name: &str) -> Result<&'s TableData> {
    state
        .table_by_id(id)
        .ok_or_else(|| Error::new(SqlState::UNDEFINED_TABLE, format!("relation \"{name}\" does not exist")))
}

/// The rows of a table that an access path reaches and the filter accepts, with their keys.
pub fn table_rows(
    state: &DbState,
    id: u32,
    name: &str,
    access: &Access,
    filter: Option<&Expr>,
    env: &Env,
) -> Result<Vec<(Key, Row)>> {
    let t = table(state, id, name)?;
    let mut out = Vec::new();
    let mut accept = |k: &Key, r: &Row| -> Result<()> {
        env.session.charge(PASS_COST)?;
        if let Some(f) = filter {
            if truth(&f.eval(r, env)?)? != Some(true) {
                return Ok(());
            }
        }
        env.session.charge(row_bytes(r.len()))?;
        out.push((k.clone(), r.clone()));
        Ok(())
    };
    match access {
        Access::Scan => {
            for (k, r) in t.rows.iter() {
                accept(k, r)?;
            }
        }
        Access::Keys(keys) => {
            let mut seen = Vec::new();
            for key in keys {
                let values = key.iter().map(|e| e.eval(&[], env)).collect::<Result<Vec<_>>>()?;
                if values.iter().any(Value::is_null) {
                    continue;
                }
                let key = coerce_key(t, &values, true)?;
                if seen.contains(&key) {
                    continue;
                }
                if let Some(r) = t.rows.get(&key) {
                    accept(&key, r)?;
                }
                seen.push(key);
            }
        }
        Access::Range { lo, hi } => {
            let bound = |b: &Option<(Expr, bool)>| -> Result<Option<Value>> {
                match b {
                    Some((e, _)) => {
                        let v = e.eval(&[], env)?;
                        Ok(Some(coerce_key(t, &[v], true)?[0].clone()))
                    }
                    None => Ok(None),
                }
            };
            let (lo, hi) = (bound(lo)?, bound(hi)?);
            if lo.as_ref().is_some_and(Value::is_null) || hi.as_ref().is_some_and(Value::is_null) {
                return Ok(out);
            }
            let start: Key = lo.into_iter().collect::<Vec<_>>().into();
            for (k, r) in t.rows.range_from(&start) {
                if let Some(h) = &hi {
                    if k.first().is_some_and(|f| f > h) {
                        break;
                    }
                }
                accept(k, r)?;
            }
        }
        Access::Index { index, values, .. } => {
            let def = t.def.indexes.iter().find(|i| i.id == *index);
            let (Some(def), Some(map)) = (def, t.indexes.get(index)) else {
                return Err(Error::internal(format!("index {index} of {name} is missing")));
            };
            let mut prefix = Vec::with_capacity(values.len());
            for (e, &col) in values.iter().zip(&def.columns) {
                let v = e.eval(&[], env)?;
                if v.is_null() {
                    return Ok(out);
                }
                prefix.push(types::cast(v, &t.def.columns[col].ty)?);
            }
            let n = prefix.len();
            let start: Key = prefix.clone().into();
            for (entry, _) in map.range(start..) {
                if entry[..n] != prefix[..] {
                    break;
                }
                let key: Key = entry[def.columns.len()..].to_vec().into();
                if let Some(r) = t.rows.get(&key) {
                    accept(&key, r)?;
                }
            }
        }
    }
    Ok(out)
}

/// Casts lookup values to the primary-key column types, so `'5'` finds the row keyed 5.
fn coerce_key(t: &TableData, values: &[Value], pk: bool) -> Result<Key> {
    let cols: Vec<usize> = match (&t.def.primary_key, pk) {
        (Some(p), true) => p.columns.clone(),
        _ => (0..values.len()).collect(),
    };
    let mut out = Vec::with_capacity(values.len());
    for (v, c) in values.iter().zip(cols) {
        out.push(match t.def.columns.get(c) {
            Some(col) => types::cast(v.clone(), &col.ty)?,
            None => v.clone(),
        });
    }
    Ok(out.into())
}

/// Runs a plan.
pub fn run(plan: &Plan, env: &Env) -> Result<Vec<Vec<Value>>> {
    Ok(match plan {
        Plan::Values(rows) => {
            let mut out = Vec::with_capacity(rows.len());
            for r in rows {
                out.push(r.iter().map(|e| e.eval(&[], env)).collect::<Result<Vec<_>>>()?);
            }
            out
        }
        Plan::Table { table, name, access, filter } => {
            table_rows(env.state, *table, name, access, filter.as_ref(), env)?
                .into_iter()
                .map(|(_, r)| r.to_vec())
                .collect()
        }
        Plan::System { name } => catalog::rows(name, env)?,
        Plan::Series { args } => {
            let vals = args.iter().map(|e| e.eval(&[], env)).collect::<Result<Vec<_>>>()?;
            series(&vals, env.session)?
        }
        Plan::Unnest { arg } => match arg.eval(&[], env)? {
            Value::Null => Vec::new(),
            v => {
                let text = crate::sql::expr::text_of(&v);
                let items = crate::sql::expr::array_items(&text).ok_or_else(|| {
                    Error::new(SqlState::INVALID_TEXT_REPRESENTATION, format!("malformed array literal: \"{text}\""))
                        .with_detail("Array value must start with \"{\" and end with \"}\".")
                })?;
                items.into_iter().map(|i| vec![i.map_or(Value::Null, |t| Value::text(&t))]).collect()
            }
        },
        Plan::Filter { input, predicate } => {
            let mut out = Vec::new();
            for r in run(input, env)? {
                if truth(&predicate.eval(&r, env)?)? == Some(true) {
                    out.push(r);
                }
            }
            out
        }
        Plan::Project { input, exprs } => {
            let rows = run(input, env)?;
            let mut out = Vec::with_capacity(rows.len());
            for r in rows {
                out.push(exprs.iter().map(|e| e.eval(&r, env)).collect::<Result<Vec<_>>>()?);
            }
            out
        }
        Plan::Join { left, right, kind, on, lateral, right_width, left_width } => {
            let lrows = run(left, env)?;
            let fixed_right = if *lateral { None } else { Some(run(right, env)?) };
            if let Some(r) = &fixed_right {
                // Every pair is considered: paid for at once, so that a join too large fails before it starts.
                env.session.charge(lrows.len().saturating_mul(r.len()).saturating_mul(PASS_COST))?;
            }
            let mut out = Vec::new();
            // RIGHT and FULL joins: which right rows some left row matched.
            let mut right_matched = vec![false; fixed_right.as_ref().map_or(0, |r| r.len())];
            for l in lrows {
                // The pairs were paid for up front: look for a cancel or timeout once per outer row.
                crate::activity::check_interrupts()?;
                let lateral_rows;
                let rrows = match &fixed_right {
                    Some(r) => r,
                    None => {
                        lateral_rows = run_subquery(right, &l, env)?;
                        &lateral_rows
                    }
                };
                let mut matched = false;
                for (ri, r) in rrows.iter().enumerate() {
                    let mut row = l.clone();
                    row.extend(r.iter().cloned());
                    let ok = match on {
                        Some(p) => truth(&p.eval(&row, env)?)? == Some(true),
                        None => true,
                    };
                    if ok {
                        env.session.charge(row_bytes(row.len()))?;
                        matched = true;
                        if let Some(m) = right_matched.get_mut(ri) {
                            *m = true;
                        }
                        out.push(row);
                    }
                }
                if !matched && matches!(kind, JoinKind::Left | JoinKind::Full) {
                    let mut row = l;
                    row.extend(std::iter::repeat_n(Value::Null, *right_width));
                    out.push(row);
                }
            }
            if matches!(kind, JoinKind::Right | JoinKind::Full) {
                for (r, _) in fixed_right.iter().flatten().zip(&right_matched).filter(|(_, m)| !**m) {
                    let mut row = vec![Value::Null; *left_width];
                    row.extend(r.iter().cloned());
                    out.push(row);
                }
            }
            out
        }
        Plan::Aggregate { input, group, aggs } => aggregate(run(input, env)?, group, aggs, env)?,
        Plan::Window { input, funcs } => crate::sql::window::run(run(input, env)?, funcs, env)?,
        Plan::Sort { input, keys } => sort(run(input, env)?, keys, env)?,
        Plan::Limit { input, limit, offset } => {
            let count = |e: &Option<Expr>, clause: &str, code: SqlState| -> Result<Option<usize>> {
                match e {
                    None => Ok(None),
                    Some(e) => match e.eval(&[], env)? {
                        Value::Null => Ok(None),
                        Value::Int(n) if n >= 0 => Ok(Some(n as usize)),
                        v => match types::cast(v, &crate::storage::value::DataType::Int8)? {
                            Value::Int(n) if n >= 0 => Ok(Some(n as usize)),
                            _ => Err(Error::new(code, format!("{clause} must not be negative"))),
                        },
                    },
                }
            };
            let limit = count(limit, "LIMIT", SqlState::INVALID_ROW_COUNT_IN_LIMIT_CLAUSE)?;
            let offset = count(offset, "OFFSET", SqlState::INVALID_ROW_COUNT_IN_RESULT_OFFSET_CLAUSE)?.unwrap_or(0);
            run(input, env)?.into_iter().skip(offset).take(limit.unwrap_or(usize::MAX)).collect()
        }
        Plan::Distinct { input } => dedup(run(input, env)?),
        Plan::DistinctOn { input, keys } => {
            let mut seen = HashSet::new();
            let mut out = Vec::new();
            for mut r in run(input, env)? {
                let key = r.split_off(r.len().saturating_sub(*keys));
                if seen.insert(key) {
                    out.push(r);
                }
            }
            out
        }
        Plan::RecursiveUnion { anchor, step, all, id } => {
            let mut seen = HashSet::new();
            let mut fresh = |rows: Vec<Vec<Value>>| -> Vec<Vec<Value>> {
                if *all {
                    rows
                } else {
                    rows.into_iter().filter(|r| seen.insert(r.clone())).collect()
                }
            };
            let mut out = fresh(run(anchor, env)?);
            let mut work = out.clone();
            while !work.is_empty() {
                crate::activity::check_interrupts()?;
                env.session.work_tables.borrow_mut().insert(*id, std::rc::Rc::new(work));
                let next = run(step, env);
                env.session.work_tables.borrow_mut().remove(id);
                let next = fresh(next?);
                env.session.charge(next.iter().map(|r| row_bytes(r.len())).sum())?;
                out.extend(next.iter().cloned());
                work = next;
            }
            out
        }
        Plan::WorkTable { id } => env.session.work_tables.borrow().get(id).map(|w| w.to_vec()).unwrap_or_default(),
        Plan::SetOp { left, right, op, all } => {
            let (l, r) = (run(left, env)?, run(right, env)?);
            match (op, all) {
                (SetOpKind::Union, true) => l.into_iter().chain(r).collect(),
                (SetOpKind::Union, false) => dedup(l.into_iter().chain(r).collect()),
                (SetOpKind::Intersect | SetOpKind::Except, _) => {
                    let keep = *op == SetOpKind::Intersect;
                    let r: HashSet<Vec<Value>> = r.into_iter().collect();
                    dedup(l.into_iter().filter(|x| r.contains(x) == keep).collect())
                }
            }
        }
    })
}

fn dedup(rows: Vec<Vec<Value>>) -> Vec<Vec<Value>> {
    let mut seen = HashSet::new();
    rows.into_iter().filter(|r| seen.insert(r.clone())).collect()
}

fn series(vals: &[Value], session: &SessionCtx) -> Result<Vec<Vec<Value>>> {
    let int = |v: &Value| -> Result<Option<i64>> {
        match v {
            Value::Null => Ok(None),
            Value::Int(i) => Ok(Some(*i)),
            v => match types::cast(v.clone(), &crate::storage::value::DataType::Int8)? {
                Value::Int(i) => Ok(Some(i)),
                _ => Ok(None),
            },
        }
    };
    let (Some(start), Some(stop)) = (int(&vals[0])?, int(&vals[1])?) else { return Ok(vec![]) };
    let step = match vals.get(2) {
        Some(v) => match int(v)? {
            Some(s) => s,
            None => return Ok(vec![]),
        },
        None => 1,
    };
    if step == 0 {
        return Err(Error::new(SqlState::INVALID_PARAMETER_VALUE, "step size cannot equal zero"));
    }
    let count = if (step > 0 && stop >= start) || (step < 0 && stop <= start) {
        (stop as i128 - start as i128) / step as i128 + 1
    } else {
        0
    };
    session.charge(usize::try_from(count).unwrap_or(usize::MAX).saturating_mul(row_bytes(1)))?;
    let mut out = Vec::new();
    let mut i = start;
    while (step > 0 && i <= stop) || (step < 0 && i >= stop) {
        out.push(vec![Value::Int(i)]);
        match i.checked_add(step) {
            Some(n) => i = n,
            None => break,
        }
    }
    Ok(out)
}

/// Sorts rows by keys, with PostgreSQL's NULL placement (last ascending, first descending, unless told).
pub fn sort(rows: Vec<Vec<Value>>, keys: &[SortKey], env: &Env) -> Result<Vec<Vec<Value>>> {
    let mut keyed = Vec::with_capacity(rows.len());
    for r in rows {
        let k = keys.iter().map(|k| k.expr.eval(&r, env)).collect::<Result<Vec<_>>>()?;
        keyed.push((k, r));
    }
    let mut err = None;
    keyed.sort_by(|(a, _), (b, _)| order_by_keys(keys, a, b, &mut err));
    if let Some(e) = err {
        return Err(e);
    }
    Ok(keyed.into_iter().map(|(_, r)| r).collect())
}

/// Orders two rows' sort-key values by `keys` (direction, NULLS FIRST/LAST); a comparison error is kept
/// in `err` and the pair taken as equal.
pub(crate) fn order_by_keys(keys: &[SortKey], a: &[Value], b: &[Value], err: &mut Option<Error>) -> std::cmp::Ordering {
    use std::cmp::Ordering;
    for (i, k) in keys.iter().enumerate() {
        let (x, y) = (&a[i], &b[i]);
        let o = match (x.is_null(), y.is_null()) {
            (true, true) => Ordering::Equal,
            (true, false) if k.nulls_first => Ordering::Less,
            (true, false) => Ordering::Greater,
            (false, true) if k.nulls_first => Ordering::Greater,
            (false, true) => Ordering::Less,
            (false, false) => {
                let o = compare(x, y).unwrap_or_else(|e| {
                    *err = Some(e);
                    Ordering::Equal
                });
                if k.desc {
                    o.reverse()
                } else {
                    o
                }
            }
        };
        if o != Ordering::Equal {
            return o;
        }
    }
    Ordering::Equal
}

#[derive(Clone)]
pub(crate) enum AggState {
    Count(i64),
    Sum(Option<Value>),
    Avg(Option<Value>, i64),
    MinMax(Option<Value>),
    Bool(Option<bool>),
    Concat(Option<String>),
    Variance(Box<Moments>),
}

/// What variance and standard deviation accumulate: the count, and for floats PostgreSQL's running sum and
/// sum of squared deviations (Youngs-Cramer, so results match its bits), for integers and numerics the
/// exact sum and sum of squares.
#[derive(Clone, Debug, Default)]
pub(crate) struct Moments {
    n: i64,
    float: bool,
    sx: f64,
    sxx: f64,
    sum: Option<Value>,
    squares: Option<Value>,
}

impl AggState {
    /// The state of an aggregate that has seen no row.
    pub(crate) fn new(a: &Aggregate) -> AggState {
        match a.func {
            AggFunc::Count => AggState::Count(0),
            AggFunc::Sum => AggState::Sum(None),
            AggFunc::Avg => AggState::Avg(None, 0),
            AggFunc::Min | AggFunc::Max => AggState::MinMax(None),
            AggFunc::BoolAnd | AggFunc::BoolOr => AggState::Bool(None),
            AggFunc::StringAgg => AggState::Concat(None),
            AggFunc::Variance { .. } => AggState::Variance(Box::default()),
        }
    }
}

/// One group: its key, its aggregate states, and the values each DISTINCT aggregate has seen.
type Group = (Vec<Value>, Vec<AggState>, Vec<HashSet<Value>>);

fn aggregate(rows: Vec<Vec<Value>>, group: &[Expr], aggs: &[Aggregate], env: &Env) -> Result<Vec<Vec<Value>>> {
    let init: Vec<AggState> = aggs.iter().map(AggState::new).collect();
    let mut index: HashMap<Vec<Value>, usize> = HashMap::new();
    let mut groups: Vec<Group> = Vec::new();
    if group.is_empty() {
        groups.push((vec![], init.clone(), vec![Default::default(); aggs.len()]));
        index.insert(vec![], 0);
    }
    for r in &rows {
        let g = group.iter().map(|e| e.eval(r, env)).collect::<Result<Vec<_>>>()?;
        let gi = match index.get(&g) {
            Some(i) => *i,
            None => {
                groups.push((g.clone(), init.clone(), vec![Default::default(); aggs.len()]));
                index.insert(g, groups.len() - 1);
                groups.len() - 1
            }
        };
        let (_, states, seen) = &mut groups[gi];
        for (i, a) in aggs.iter().enumerate() {
            if let Some(f) = &a.filter {
                if truth(&f.eval(r, env)?)? != Some(true) {
                    continue;
                }
            }
            let v = match &a.arg {
                Some(e) => e.eval(r, env)?,
                None => Value::Bool(true),
            };
            if v.is_null() {
                continue;
            }
            if a.distinct && !seen[i].insert(v.clone()) {
                continue;
            }
            step(&mut states[i], a, v, r, env)?;
        }
    }
    let mut out = Vec::with_capacity(groups.len());
    for (g, states, _) in groups {
        let mut row = g;
        for (s, a) in states.into_iter().zip(aggs) {
            row.push(finish(s, a)?);
        }
        out.push(row);
    }
    Ok(out)
}

pub(crate) fn step(s: &mut AggState, a: &Aggregate, v: Value, row: &[Value], env: &Env) -> Result<()> {
    use crate::sql::expr::{binary, BinOp};
    match s {
        AggState::Count(n) => *n += 1,
        AggState::Sum(acc) => {
            let v = match v {
                Value::Int(i) => Value::numeric(Decimal { mantissa: i as i128, scale: 0 }),
                v => v,
            };
            *acc = Some(match acc.take() {
                None => v,
                Some(x) => binary(BinOp::Add, x, v)?,
            });
        }
        AggState::Avg(acc, n) => {
            let v = match v {
                Value::Int(i) => Value::numeric(Decimal { mantissa: i as i128, scale: 0 }),
                v => v,
            };
            *n += 1;
            *acc = Some(match acc.take() {
                None => v,
                Some(x) => binary(BinOp::Add, x, v)?,
            });
        }
        AggState::MinMax(acc) => {
            let replace = match acc {
                None => true,
                Some(x) => {
                    let o = compare(&v, x)?;
                    if a.func == AggFunc::Min {
                        o == std::cmp::Ordering::Less
                    } else {
                        o == std::cmp::Ordering::Greater
                    }
                }
            };
            if replace {
                *acc = Some(v);
            }
        }
        AggState::Bool(acc) => {
            let b = truth(&v)?.unwrap_or(false);
            *acc = Some(match (acc.take(), a.func) {
                (None, _) => b,
                (Some(x), AggFunc::BoolAnd) => x && b,
                (Some(x), _) => x || b,
            });
        }
        AggState::Variance(m) => {
            let previous = m.n as f64;
            m.n += 1;
            match v {
                Value::Float(x) => {
                    m.float = true;
                    m.sx += x;
                    if previous > 0.0 {
                        let d = x * m.n as f64 - m.sx;
                        m.sxx += d * d / (m.n as f64 * previous);
                    }
                }
                v => {
                    let v = match v {
                        Value::Int(i) => Value::numeric(Decimal { mantissa: i as i128, scale: 0 }),
                        v => v,
                    };
                    let square = binary(BinOp::Mul, v.clone(), v.clone())?;
                    m.sum = Some(match m.sum.take() {
                        None => v,
                        Some(x) => binary(BinOp::Add, x, v)?,
                    });
                    m.squares = Some(match m.squares.take() {
                        None => square,
                        Some(x) => binary(BinOp::Add, x, square)?,
                    });
                }
            }
        }
        AggState::Concat(acc) => {
            let delim = match &a.delimiter {
                Some(d) => crate::sql::expr::text_of(&d.eval(row, env)?),
                None => String::new(),
            };
            let text = crate::sql::expr::text_of(&v);
            match acc {
                None => *acc = Some(text),
                Some(s) => {
                    s.push_str(&delim);
                    s.push_str(&text);
                }
            }
        }
    }
    Ok(())
}

pub(crate) fn finish(s: AggState, a: &Aggregate) -> Result<Value> {
    Ok(match s {
        AggState::Count(n) => Value::Int(n),
        AggState::Sum(acc) => match acc {
            // sum(int) is bigint in PostgreSQL when it fits.
            Some(Value::Numeric(d)) if d.get().scale == 0 && a.func == AggFunc::Sum && int_sum(&a.arg) => {
                i64::try_from(d.get().mantissa).map(Value::Int).unwrap_or(Value::Numeric(d))
            }
            Some(v) => v,
            None => Value::Null,
        },
        AggState::Avg(acc, n) => match acc {
            None => Value::Null,
            Some(Value::Float(f)) => Value::Float(f / n as f64),
            Some(Value::Numeric(d)) => {
                let d = d.get();
                let scaled = d.rescale_up(d.scale.max(16) + 1).unwrap_or(d);
                let q = Decimal { mantissa: scaled.mantissa / n as i128, scale: scaled.scale };
                Value::numeric(types::round_decimal(q, d.scale.max(16)))
            }
            Some(Value::Interval(i)) => {
                crate::sql::expr::binary(crate::sql::expr::BinOp::Div, Value::Interval(i), Value::Int(n))?
            }
            Some(v) => v,
        },
        AggState::MinMax(v) => v.unwrap_or(Value::Null),
        AggState::Bool(b) => b.map(Value::Bool).unwrap_or(Value::Null),
        AggState::Concat(s) => s.map(|s| Value::text(&s)).unwrap_or(Value::Null),
        AggState::Variance(m) => match a.func {
            AggFunc::Variance { sample, root } => variance(&m, sample, root)?,
            _ => return Err(Error::internal("a variance state for another aggregate")),
        },
    })
}

/// The variance (or, with `root`, the standard deviation) of what `m` accumulated: NULL for no rows, and
/// for one row when it is the sample's. Numerics follow PostgreSQL's numeric_stddev_internal: the exact
/// `(n·Σx² − (Σx)²) / (n·(n−1))` (or `/ n²`) at the scale its division would choose, and the square root
/// at that same scale.
fn variance(m: &Moments, sample: bool, root: bool) -> Result<Value> {
    let n = m.n;
    if n == 0 || (sample && n == 1) {
        return Ok(Value::Null);
    }
    if m.float {
        let var = m.sxx / if sample { (n - 1) as f64 } else { n as f64 };
        return Ok(Value::Float(if root { var.sqrt() } else { var }));
    }
    let overflow = || Error::new(SqlState::NUMERIC_VALUE_OUT_OF_RANGE, "value overflows numeric format");
    let decimal = |v: &Option<Value>| match v {
        Some(Value::Numeric(d)) => Ok(d.get()),
        _ => Err(Error::internal("variance of a non-numeric")),
    };
    let (sum, squares) = (decimal(&m.sum)?, decimal(&m.squares)?);
    let scale = sum.scale * 2;
    let squares = squares.rescale_up(scale).ok_or_else(overflow)?;
    let sum_squared = sum.mantissa.checked_mul(sum.mantissa).ok_or_else(overflow)?;
    let numerator = (n as i128).checked_mul(squares.mantissa).and_then(|x| x.checked_sub(sum_squared));
    let numerator = numerator.ok_or_else(overflow)?;
    if numerator <= 0 {
        // Rounding can leave a tiny negative numerator; PostgreSQL answers a plain zero.
        return Ok(Value::numeric(Decimal { mantissa: 0, scale: 0 }));
    }
    let n = n as i128;
    let denominator = if sample { n * (n - 1) } else { n * n };
    let num = Decimal { mantissa: numerator, scale };
    let rscale = division_scale(num, denominator);
    // num / denominator, rounded half away from zero at rscale.
    let shift = (rscale + 1).checked_sub(scale);
    let widened = match shift {
        Some(k) => 10i128.checked_pow(k).and_then(|f| numerator.checked_mul(f)).ok_or_else(overflow)?,
        None => numerator / 10i128.pow(scale - rscale - 1),
    };
    let q = widened / denominator;
    let var = Decimal { mantissa: (q + 5) / 10, scale: rscale };
    if !root {
        return Ok(Value::numeric(var));
    }
    Ok(Value::numeric(Decimal { mantissa: decimal_sqrt(var.mantissa, rscale).ok_or_else(overflow)?, scale: rscale }))
}

/// PostgreSQL's select_div_scale for `num / den` (den a positive integer): at least 16 significant digits,
/// and no fewer decimals than the dividend has. Weights and first digits are in base 10000, as its
/// numerics are stored.
fn division_scale(num: Decimal, den: i128) -> u32 {
    let lead = |d: Decimal| -> (i64, i128) {
        let e = d.mantissa.unsigned_abs().ilog10() as i64 - d.scale as i64;
        let weight = e.div_euclid(4);
        let k = -(d.scale as i64) - 4 * weight;
        let first = if k >= 0 { d.mantissa * 10i128.pow(k as u32) } else { d.mantissa / 10i128.pow((-k) as u32) };
        (weight, first % 10000)
    };
    let (w1, f1) = lead(num);
    let (w2, f2) = lead(Decimal { mantissa: den, scale: 0 });
    let qweight = w1 - w2 - i64::from(f1 <= f2);
    (16 - qweight * 4).max(num.scale as i64).clamp(0, 1000) as u32
}

/// The square root of `m·10^-scale`, at `scale` decimals, rounded half up: digit by digit on the decimal
/// digits, so nothing wider than the root itself is needed. None if the root does not fit.
fn decimal_sqrt(m: i128, scale: u32) -> Option<i128> {
    // The digits of m·10^(scale + 2), an integer whose square root is the root at scale + 1 decimals.
    let mut digits: Vec<u8> = m.to_string().bytes().map(|b| b - b'0').collect();
    digits.extend(std::iter::repeat_n(0, scale as usize + 2));
    if digits.len() % 2 == 1 {
        digits.insert(0, 0);
    }
    let (mut root, mut rem): (i128, i128) = (0, 0);
    for pair in digits.chunks(2) {
        rem = rem.checked_mul(100)?.checked_add((pair[0] * 10 + pair[1]) as i128)?;
        let base = root.checked_mul(20)?;
        let mut x = 0;
        while (base + x + 1).checked_mul(x + 1)? <= rem {
            x += 1;
        }
        rem -= (base + x) * x;
        root = root.checked_mul(10)?.checked_add(x)?;
    }
    Some((root + 5) / 10)
}

/// Whether a sum's argument is an integer expression (the planner marks it with a cast to bigint).
fn int_sum(arg: &Option<Expr>) -> bool {
    matches!(arg, Some(Expr::Cast(_, crate::storage::value::DataType::Int8)))
}
