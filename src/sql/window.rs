//! Window functions: `f(...) OVER (PARTITION BY ... ORDER BY ... frame)`.
//!
//! The executor materializes, like the rest of it. For each window function, the input rows are sorted by
//! (partition, order) keys; each partition is then walked once, with its peer groups (runs of rows equal in
//! the ORDER BY) found up front, and the function's value is appended to each row:
//!
//! - ranking (row_number, rank, dense_rank, percent_rank, cume_dist, ntile) reads positions and peer groups;
//! - lag and lead read the row `offset` before or after in the partition;
//! - first_value, last_value, nth_value and aggregates read the row's frame. PostgreSQL's default frame is
//!   RANGE BETWEEN UNBOUNDED PRECEDING AND CURRENT ROW: with an ORDER BY, the rows up to the current one
//!   and its peers; without, the whole partition.
//!
//! An aggregate whose frame starts at the partition's first row is computed incrementally, each row
//! stepping the running state up to its frame's end (a running total is linear); other frames (ROWS n
//! PRECEDING) aggregate their rows afresh for each row. Rows come out in the last function's sort order,
//! as PostgreSQL's would without an ORDER BY of the query.

use std::cmp::Ordering;

use crate::error::{Error, Result, SqlState};
use crate::sql::execute::{finish, order_by_keys, row_bytes, step, AggState, Env};
use crate::sql::expr::truth;
use crate::sql::plan::{Aggregate, FrameBound, WindowFunc, WindowKind};
use crate::storage::value::Value;

/// Runs the window functions over `rows`, appending one value per function to each.
pub fn run(rows: Vec<Vec<Value>>, funcs: &[WindowFunc], env: &Env) -> Result<Vec<Vec<Value>>> {
    let mut rows = rows;
    let mut order: Vec<usize> = (0..rows.len()).collect();
    for f in funcs {
        order = sorted(&rows, f, env)?;
        let values = compute(&rows, &order, f, env)?;
        env.session.charge(rows.len().saturating_mul(row_bytes(1)))?;
        for (i, v) in values.into_iter().enumerate() {
            rows[i].push(v);
        }
    }
    let mut slots: Vec<Option<Vec<Value>>> = rows.into_iter().map(Some).collect();
    Ok(order.into_iter().filter_map(|i| slots[i].take()).collect())
}

/// The row indices sorted by the function's partition keys, then its order keys.
fn sorted(rows: &[Vec<Value>], f: &WindowFunc, env: &Env) -> Result<Vec<usize>> {
    let keys = keys(rows, f, env)?;
    let mut order: Vec<usize> = (0..rows.len()).collect();
    let mut err = None;
    order.sort_by(|&a, &b| compare_rows(&keys[a], &keys[b], f, &mut err));
    match err {
        Some(e) => Err(e),
        None => Ok(order),
    }
}

/// Each row's partition values followed by its order values.
fn keys(rows: &[Vec<Value>], f: &WindowFunc, env: &Env) -> Result<Vec<Vec<Value>>> {
    rows.iter()
        .map(|r| f.partition.iter().chain(f.order.iter().map(|k| &k.expr)).map(|e| e.eval(r, env)).collect())
        .collect()
}

fn compare_rows(a: &[Value], b: &[Value], f: &WindowFunc, err: &mut Option<Error>) -> Ordering {
    let p = f.partition.len();
    let part = a[..p].iter().zip(&b[..p]).map(|(x, y)| x.cmp(y)).find(|o| o.is_ne()).unwrap_or(Ordering::Equal);
    part.then_with(|| order_by_keys(&f.order, &a[p..], &b[p..], err))
}

/// The function's value for every row (indexed like `rows`).
fn compute(rows: &[Vec<Value>], order: &[usize], f: &WindowFunc, env: &Env) -> Result<Vec<Value>> {
    let keys = keys(rows, f, env)?;
    let p = f.partition.len();
    let offset = |e: &crate::sql::expr::Expr, what: &str| -> Result<usize> {
        match e.eval(&[], env)? {
            Value::Int(n) if n >= 0 => Ok(n as usize),
            Value::Null => Err(Error::new(SqlState("22013"), format!("frame {what} offset must not be null"))),
            _ => Err(Error::new(SqlState("22013"), format!("frame {what} offset must not be negative"))),
        }
    };
    let start = match &f.frame.start {
        FrameBound::Preceding(e) | FrameBound::Following(e) => Some(offset(e, "starting")?),
        _ => None,
    };
    let end = match &f.frame.end {
        FrameBound::Preceding(e) | FrameBound::Following(e) => Some(offset(e, "ending")?),
        _ => None,
    };
    let mut out = vec![Value::Null; rows.len()];
    let mut i = 0;
    while i < order.len() {
        crate::activity::check_interrupts()?;
        // One partition: order[i..j].
        let mut j = i + 1;
        while j < order.len() && keys[order[j]][..p] == keys[order[i]][..p] {
            j += 1;
        }
        let part = &order[i..j];
        // Peer groups: for each position, where its group starts and ends (exclusive).
        let mut group_start = vec![0; part.len()];
        let mut group_end = vec![part.len(); part.len()];
        let mut groups = vec![0usize; part.len()];
        for k in 1..part.len() {
            let peer = keys[part[k]][p..] == keys[part[k - 1]][p..];
            group_start[k] = if peer { group_start[k - 1] } else { k };
            groups[k] = groups[k - 1] + usize::from(!peer);
        }
        for k in (0..part.len().saturating_sub(1)).rev() {
            if group_start[k + 1] == group_start[k] {
                group_end[k] = group_end[k + 1];
            } else {
                group_end[k] = k + 1;
            }
        }
        // The frame of position k: [lo, hi) within the partition.
        let n = part.len();
        let frame = |k: usize| -> (usize, usize) {
            let lo = match (&f.frame.start, start) {
                (FrameBound::UnboundedPreceding, _) => 0,
                (FrameBound::Preceding(_), Some(o)) => k.saturating_sub(o),
                (FrameBound::Following(_), Some(o)) => (k + o).min(n),
                (FrameBound::CurrentRow, _) if !f.frame.rows => group_start[k],
                (FrameBound::CurrentRow, _) => k,
                _ => n,
            };
            let hi = match (&f.frame.end, end) {
                (FrameBound::UnboundedFollowing, _) => n,
                (FrameBound::Following(_), Some(o)) => (k + o + 1).min(n),
                (FrameBound::Preceding(_), Some(o)) => (k + 1).saturating_sub(o),
                (FrameBound::CurrentRow, _) if !f.frame.rows => group_end[k],
                (FrameBound::CurrentRow, _) => k + 1,
                _ => 0,
            };
            (lo, hi.max(lo))
        };
        let arg = |k: usize, a: usize| -> Result<Value> {
            match f.args.get(a) {
                Some(e) => e.eval(&rows[part[k]], env),
                None => Ok(Value::Null),
            }
        };
        let int = |v: Value, what: &str| -> Result<Option<i64>> {
            match v {
                Value::Null => Ok(None),
                Value::Int(n) => Ok(Some(n)),
                v => Err(Error::new(SqlState::DATATYPE_MISMATCH, format!("{what} must be an integer, not {v:?}"))),
            }
        };
        let mut running: Option<(AggState, usize)> = None;
        for k in 0..n {
            let v = match &f.kind {
                WindowKind::RowNumber => Value::Int(k as i64 + 1),
                WindowKind::Rank => Value::Int(group_start[k] as i64 + 1),
                WindowKind::DenseRank => Value::Int(groups[k] as i64 + 1),
                WindowKind::PercentRank if n > 1 => Value::Float(group_start[k] as f64 / (n - 1) as f64),
                WindowKind::PercentRank => Value::Float(0.0),
                WindowKind::CumeDist => Value::Float(group_end[k] as f64 / n as f64),
                WindowKind::Ntile => match int(arg(k, 0)?, "argument of ntile")? {
                    None => Value::Null,
                    Some(b) if b <= 0 => {
                        return Err(Error::new(SqlState("22014"), "argument of ntile must be greater than zero"))
                    }
                    Some(b) => Value::Int(ntile(k, n, b as usize) as i64),
                },
                WindowKind::Lag | WindowKind::Lead => {
                    let by = match f.args.get(1) {
                        Some(_) => int(arg(k, 1)?, "offset")?,
                        None => Some(1),
                    };
                    match by {
                        None => Value::Null,
                        Some(by) => {
                            let by = if matches!(f.kind, WindowKind::Lag) { -by } else { by };
                            match k.checked_add_signed(by as isize).filter(|&t| t < n) {
                                Some(t) => arg(t, 0)?,
                                None => arg(k, 2)?,
                            }
                        }
                    }
                }
                WindowKind::FirstValue => {
                    let (lo, hi) = frame(k);
                    if lo < hi {
                        arg(lo, 0)?
                    } else {
                        Value::Null
                    }
                }
                WindowKind::LastValue => {
                    let (lo, hi) = frame(k);
                    if lo < hi {
                        arg(hi - 1, 0)?
                    } else {
                        Value::Null
                    }
                }
                WindowKind::NthValue => {
                    let (lo, hi) = frame(k);
                    match int(arg(k, 1)?, "argument of nth_value")? {
                        None => Value::Null,
                        Some(m) if m <= 0 => {
                            return Err(Error::new(
                                SqlState("22016"),
                                "argument of nth_value must be greater than zero",
                            ))
                        }
                        Some(m) if lo + (m as usize) <= hi => arg(lo + m as usize - 1, 0)?,
                        Some(_) => Value::Null,
                    }
                }
                WindowKind::Aggregate(a) => {
                    let (lo, hi) = frame(k);
                    if matches!(f.frame.start, FrameBound::UnboundedPreceding) {
                        // Frames that all start at the first row only grow: keep stepping one state.
                        let (state, upto) = running.get_or_insert_with(|| (AggState::new(a), 0));
                        while *upto < hi {
                            add(state, a, &rows[part[*upto]], env)?;
                            *upto += 1;
                        }
                        finish(state.clone(), a)?
                    } else {
                        let mut state = AggState::new(a);
                        for &r in &part[lo..hi] {
                            add(&mut state, a, &rows[r], env)?;
                        }
                        finish(state, a)?
                    }
                }
            };
            out[part[k]] = v;
        }
        i = j;
    }
    Ok(out)
}

/// Steps an aggregate with one row of its frame (FILTER and NULLs as in a grouped aggregate).
fn add(state: &mut AggState, a: &Aggregate, row: &[Value], env: &Env) -> Result<()> {
    if let Some(f) = &a.filter {
        if truth(&f.eval(row, env)?)? != Some(true) {
            return Ok(());
        }
    }
    let v = match &a.arg {
        Some(e) => e.eval(row, env)?,
        None => Value::Bool(true),
    };
    if v.is_null() {
        return Ok(());
    }
    step(state, a, v, row, env)
}

/// The bucket (from 1) of position `k` of `n` rows split into `buckets` as evenly as can be, the first
/// buckets taking one row more, as PostgreSQL's ntile does.
fn ntile(k: usize, n: usize, buckets: usize) -> usize {
    let (size, extra) = (n / buckets, n % buckets);
    let big = (size + 1) * extra;
    if k < big {
        k / (size + 1) + 1
    } else {
        extra + (k - big) / size.max(1) + 1
    }
}

#[cfg(test)]
mod tests {
    use super::ntile;

    #[test]
    fn ntile_splits_as_evenly_as_it_can() {
        let buckets = |n, b| (0..n).map(|k| ntile(k, n, b)).collect::<Vec<_>>();
        assert_eq!(buckets(10, 3), [1, 1, 1, 1, 2, 2, 2, 3, 3, 3]);
        assert_eq!(buckets(2, 4), [1, 2]);
        assert_eq!(buckets(4, 2), [1, 1, 2, 2]);
    }
}
