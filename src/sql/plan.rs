//! Query plans: trees of operators that produce rows.
//!
//! A plan is what the planner makes of a query and what the executor runs. Leaves read a table through an
//! access path (primary-key point lookups or ranges, secondary-index lookups, full scans), a system view,
//! a set-returning function, or literal rows; inner nodes filter, project, join, aggregate, sort, limit
//! and combine. Every node produces whole rows (`Vec<Value>`); EXPLAIN prints the tree.

use std::fmt::Write;

use crate::sql::expr::Expr;
use crate::storage::catalog::Oid;

/// How a table is read.
#[derive(Clone, Debug)]
pub enum Access {
    /// Every row, in key order.
    Scan,
    /// The rows with these primary keys (each a full key, computed without reading the table).
    Keys(Vec<Vec<Expr>>),
    /// The rows whose first key column lies between the bounds (inclusive flags).
    Range { lo: Option<(Expr, bool)>, hi: Option<(Expr, bool)> },
    /// The rows whose index entries start with these values.
    Index { index: Oid, name: String, values: Vec<Expr> },
}

/// An aggregate function call.
#[derive(Clone, Debug)]
pub struct Aggregate {
    pub func: AggFunc,
    /// None for count(*).
    pub arg: Option<Expr>,
    pub distinct: bool,
    /// string_agg's delimiter.
    pub delimiter: Option<Expr>,
    /// FILTER (WHERE ...): only input rows for which it is true are aggregated.
    pub filter: Option<Expr>,
}

/// The aggregate functions.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum AggFunc {
    Count,
    Sum,
    Avg,
    Min,
    Max,
    BoolAnd,
    BoolOr,
    StringAgg,
    /// var_samp/variance (`sample`), var_pop, and with `root` their square roots stddev_samp/stddev and
    /// stddev_pop.
    Variance {
        sample: bool,
        root: bool,
    },
}

/// A window function call: `kind(args) OVER (PARTITION BY partition ORDER BY order frame)`.
#[derive(Clone, Debug)]
pub struct WindowFunc {
    pub kind: WindowKind,
    pub args: Vec<Expr>,
    pub partition: Vec<Expr>,
    pub order: Vec<SortKey>,
    pub frame: Frame,
}

/// The window functions.
#[derive(Clone, Debug)]
pub enum WindowKind {
    RowNumber,
    Rank,
    DenseRank,
    PercentRank,
    CumeDist,
    Ntile,
    Lag,
    Lead,
    FirstValue,
    LastValue,
    NthValue,
    /// An aggregate over the frame.
    Aggregate(Aggregate),
}

/// A window frame: ROWS counts rows, RANGE counts peers (rows equal in the ORDER BY) as one.
#[derive(Clone, Debug)]
pub struct Frame {
    pub rows: bool,
    pub start: FrameBound,
    pub end: FrameBound,
}

/// One end of a window frame; offsets (ROWS only) are expressions evaluated once per statement.
#[derive(Clone, Debug)]
pub enum FrameBound {
    UnboundedPreceding,
    Preceding(Expr),
    CurrentRow,
    Following(Expr),
    UnboundedFollowing,
}

/// A sort key.
#[derive(Clone, Debug)]
pub struct SortKey {
    pub expr: Expr,
    pub desc: bool,
    pub nulls_first: bool,
}

/// The join kinds the executor knows.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum JoinKind {
    Inner,
    Left,
    Right,
    Full,
}

/// A plan node.
#[derive(Clone, Debug)]
pub enum Plan {
    /// Literal rows (a single empty row for SELECT without FROM).
    Values(Vec<Vec<Expr>>),
    /// A user table, read through an access path, with an optional filter.
    Table {
        table: Oid,
        name: String,
        access: Access,
        filter: Option<Expr>,
    },
    /// A system view, computed from the catalog.
    System {
        name: String,
    },
    /// generate_series(start, stop[, step]).
    Series {
        args: Vec<Expr>,
    },
    /// unnest(array): one row per element (arrays are carried in their text form).
    Unnest {
        arg: Expr,
    },
    Filter {
        input: Box<Plan>,
        predicate: Expr,
    },
    Project {
        input: Box<Plan>,
        exprs: Vec<Expr>,
    },
    /// Nested-loop join; a lateral right side sees the left row as its outer row.
    Join {
        left: Box<Plan>,
        right: Box<Plan>,
        kind: JoinKind,
        on: Option<Expr>,
        lateral: bool,
        right_width: usize,
        left_width: usize,
    },
    /// Groups rows by `group` and computes the aggregates: output is the group values then the results.
    Aggregate {
        input: Box<Plan>,
        group: Vec<Expr>,
        aggs: Vec<Aggregate>,
    },
    /// Window functions: each input row with one value appended per function, computed over the row's
    /// partition (see `sql/window.rs`); rows come out in the last function's partition and order.
    Window {
        input: Box<Plan>,
        funcs: Vec<WindowFunc>,
    },
    Sort {
        input: Box<Plan>,
        keys: Vec<SortKey>,
    },
    Limit {
        input: Box<Plan>,
        limit: Option<Expr>,
        offset: Option<Expr>,
    },
    Distinct {
        input: Box<Plan>,
    },
    /// DISTINCT ON: the input's last `keys` columns are the key; the first row of each key is kept, without
    /// them.
    DistinctOn {
        input: Box<Plan>,
        keys: usize,
    },
    /// WITH RECURSIVE's `anchor UNION [ALL] step`: the anchor's rows, then `step` run again and again over
    /// the rows the previous round added (its working table, read by [`Plan::WorkTable`] with the same id)
    /// until a round adds none. Without ALL, rows already produced are not added again.
    RecursiveUnion {
        anchor: Box<Plan>,
        step: Box<Plan>,
        all: bool,
        id: usize,
    },
    /// The working table of the enclosing [`Plan::RecursiveUnion`] with this id.
    WorkTable {
        id: usize,
    },
    /// UNION / INTERSECT / EXCEPT, with ALL or not.
    SetOp {
        left: Box<Plan>,
        right: Box<Plan>,
        op: SetOpKind,
        all: bool,
    },
}

/// A set operation.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum SetOpKind {
    Union,
    Intersect,
    Except,
}

impl Plan {
    /// The plan as EXPLAIN prints it, one node per line.
    pub fn explain(&self) -> Vec<String> {
        let mut out = Vec::new();
        self.explain_into(0, &mut out);
        out
    }

    fn explain_into(&self, depth: usize, out: &mut Vec<String>) {
        let pad = if depth == 0 { String::new() } else { format!("{}->  ", "  ".repeat(depth * 2 - 1)) };
        let mut line = pad;
        let children: Vec<&Plan> = match self {
            Plan::Values(rows) => {
                let _ = write!(line, "Values ({} rows)", rows.len());
                vec![]
            }
            Plan::Table { name, access, filter, .. } => {
                match access {
                    Access::Scan => {
                        let _ = write!(line, "Seq Scan on {name}");
                    }
                    Access::Keys(keys) => {
                        let _ = write!(line, "Primary Key Lookup on {name} ({} keys)", keys.len());
                    }
                    Access::Range { .. } => {
                        let _ = write!(line, "Primary Key Range Scan on {name}");
                    }
                    Access::Index { name: index, .. } => {
                        let _ = write!(line, "Index Scan using {index} on {name}");
                    }
                }
                if filter.is_some() {
                    line.push_str(" (with filter)");
                }
                vec![]
            }
            Plan::System { name } => {
                let _ = write!(line, "System View Scan on {name}");
                vec![]
            }
            Plan::Series { .. } => {
                line.push_str("Function Scan on generate_series");
                vec![]
            }
            Plan::Unnest { .. } => {
                line.push_str("Function Scan on unnest");
                vec![]
            }
            Plan::Filter { input, .. } => {
                line.push_str("Filter");
                vec![input]
            }
            Plan::Project { input, exprs } => {
                let _ = write!(line, "Project ({} columns)", exprs.len());
                vec![input]
            }
            Plan::Join { left, right, kind, .. } => {
                line.push_str(match kind {
                    JoinKind::Inner => "Nested Loop",
                    JoinKind::Left => "Nested Loop Left Join",
                    JoinKind::Right => "Nested Loop Right Join",
                    JoinKind::Full => "Nested Loop Full Join",
                });
                vec![left, right]
            }
            Plan::Aggregate { input, group, .. } => {
                line.push_str(if group.is_empty() { "Aggregate" } else { "HashAggregate" });
                vec![input]
            }
            Plan::Sort { input, .. } => {
                line.push_str("Sort");
                vec![input]
            }
            Plan::Window { input, funcs } => {
                let _ = write!(line, "WindowAgg ({} functions)", funcs.len());
                vec![input]
            }
            Plan::Limit { input, .. } => {
                line.push_str("Limit");
                vec![input]
            }
            Plan::Distinct { input } => {
                line.push_str("Unique");
                vec![input]
            }
            Plan::DistinctOn { input, keys } => {
                let _ = write!(line, "Unique (first row of each of {keys} key columns)");
                vec![input]
            }
            Plan::RecursiveUnion { anchor, step, .. } => {
                line.push_str("Recursive Union");
                vec![anchor, step]
            }
            Plan::WorkTable { .. } => {
                line.push_str("WorkTable Scan");
                vec![]
            }
            Plan::SetOp { left, right, op, all } => {
                let _ = write!(line, "{:?}{}", op, if *all { " All" } else { "" });
                vec![left, right]
            }
        };
        out.push(line);
        for c in children {
            c.explain_into(depth + 1, out);
        }
    }
}
