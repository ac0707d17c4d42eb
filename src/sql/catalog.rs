//! System views: `pg_catalog` and `information_schema`, computed from the database state.
//!
//! Tools learn about tables by querying PostgreSQL's catalogs (psql's `\dt` and `\d` join pg_class,
//! pg_namespace, pg_attribute, pg_index, pg_constraint and more). tandem keeps no catalog tables; each
//! view here is a function from [`DbState`] to rows, with PostgreSQL's column names and types, so those
//! queries run unchanged through the ordinary planner and executor. Catalogs tandem has no use for
//! (policies, publications, inheritance, ...) exist with their columns and no rows.
//!
//! Oids follow PostgreSQL where clients depend on them: namespaces 11 (pg_catalog) and 2200 (public), type
//! oids from [`DataType::oid`], table and index oids from the table definitions. A constraint's oid is its
//! index's oid with [`CONSTRAINT_OID_BIT`] set.

use crate::error::Result;
use crate::sql::execute::Env;
use crate::storage::catalog::TableDef;
use crate::storage::state::DbState;
use crate::storage::value::{DataType, Value};

/// Set in a constraint's oid to tell it from its index's.
pub const CONSTRAINT_OID_BIT: u32 = 0x4000_0000;
const NS_CATALOG: i64 = 11;
const NS_PUBLIC: i64 = 2200;
const NS_INFORMATION_SCHEMA: i64 = 13_000;

use DataType::{Bool, Int2, Int4, Int8, Oid as O, Text as T};

/// Who is connected, as pg_stat_activity and pg_stat_replication both show it (after `pid`).
const BACKEND_COLUMNS: [(&str, DataType); 7] = [
    ("usesysid", O),
    ("usename", T),
    ("application_name", T),
    ("client_addr", T),
    ("client_hostname", T),
    ("client_port", Int4),
    ("backend_start", DataType::TimestampTz),
];

/// The columns of a system view, or None if there is no such view. Names may carry a `pg_catalog.` or
/// `information_schema.` prefix.
pub fn columns(name: &str) -> Option<Vec<(&'static str, DataType)>> {
    let c = |cols: &[(&'static str, DataType)]| Some(cols.to_vec());
    match name {
        "pg_namespace" => c(&[("oid", O), ("nspname", T), ("nspowner", O), ("nspacl", T)]),
        "pg_class" => c(&[
            ("oid", O),
            ("relname", T),
            ("relnamespace", O),
            ("reltype", O),
            ("relowner", O),
            ("relam", O),
            ("relkind", T),
            ("relnatts", Int2),
            ("relchecks", Int2),
            ("relhasindex", Bool),
            ("relhasrules", Bool),
            ("relhastriggers", Bool),
            ("relrowsecurity", Bool),
            ("relforcerowsecurity", Bool),
            ("relispartition", Bool),
            ("reltablespace", O),
            ("reloftype", O),
            ("relpersistence", T),
            ("relreplident", T),
            ("reltoastrelid", O),
            ("relpartbound", T),
            ("reloptions", T),
            ("reltuples", DataType::Float4),
            ("relpages", Int4),
            ("relhasoids", Bool),
            ("relacl", T),
        ]),
        "pg_am" => c(&[("oid", O), ("amname", T), ("amtype", T)]),
        "pg_attribute" => c(&[
            ("attrelid", O),
            ("attname", T),
            ("atttypid", O),
            ("attlen", Int2),
            ("attnum", Int2),
            ("atttypmod", Int4),
            ("attnotnull", Bool),
            ("atthasdef", Bool),
            ("attisdropped", Bool),
            ("attcollation", O),
            ("attidentity", T),
            ("attgenerated", T),
            ("attstorage", T),
            ("attstattarget", Int4),
            ("attfdwoptions", T),
            ("attoptions", T),
            ("attcompression", T),
            ("attacl", T),
        ]),
        "pg_attrdef" => c(&[("oid", O), ("adrelid", O), ("adnum", Int2), ("adbin", T)]),
        "pg_type" => c(&[
            ("oid", O),
            ("typname", T),
            ("typnamespace", O),
            ("typlen", Int2),
            ("typtype", T),
            ("typcollation", O),
            ("typrelid", O),
            ("typelem", O),
            ("typbasetype", O),
            ("typnotnull", Bool),
            ("typarray", O),
            ("typtypmod", Int4),
            ("typdefault", T),
            ("typacl", T),
        ]),
        "pg_collation" => c(&[("oid", O), ("collname", T), ("collnamespace", O)]),
        "pg_index" => c(&[
            ("indexrelid", O),
            ("indrelid", O),
            ("indnatts", Int2),
            ("indisunique", Bool),
            ("indisprimary", Bool),
            ("indisclustered", Bool),
            ("indisvalid", Bool),
            ("indisreplident", Bool),
            ("indimmediate", Bool),
            ("indkey", T),
            ("indpred", T),
            ("indexprs", T),
        ]),
        "pg_constraint" => c(&[
            ("oid", O),
            ("conname", T),
            ("connamespace", O),
            ("contype", T),
            ("condeferrable", Bool),
            ("condeferred", Bool),
            ("convalidated", Bool),
            ("conrelid", O),
            ("conindid", O),
            ("confrelid", O),
            ("conparentid", O),
            ("conislocal", Bool),
            ("conkey", T),
            ("confkey", T),
            ("conbin", T),
            ("contypid", O),
        ]),
        "pg_database" => c(&[
            ("oid", O),
            ("datname", T),
            ("datdba", O),
            ("encoding", Int4),
            ("datcollate", T),
            ("datctype", T),
            ("datallowconn", Bool),
            ("datacl", T),
            ("datlocprovider", T),
            ("daticulocale", T),
            ("dattablespace", O),
            ("datconnlimit", Int4),
            ("datistemplate", Bool),
        ]),
        "pg_roles" | "pg_user" | "pg_authid" => c(&[
            ("oid", O),
            ("rolname", T),
            ("rolsuper", Bool),
            ("usename", T),
            ("usesysid", O),
            ("rolinherit", Bool),
            ("rolcreaterole", Bool),
            ("rolcreatedb", Bool),
            ("rolcanlogin", Bool),
            ("rolreplication", Bool),
            ("rolbypassrls", Bool),
            ("rolconnlimit", Int4),
            ("rolvaliduntil", DataType::TimestampTz),
            ("rolpassword", T),
            ("usecreatedb", Bool),
            ("usesuper", Bool),
            ("userepl", Bool),
            ("usebypassrls", Bool),
            ("passwd", T),
            ("valuntil", DataType::TimestampTz),
        ]),
        "pg_auth_members" => c(&[("roleid", O), ("member", O), ("grantor", O), ("admin_option", Bool)]),
        "pg_settings" => {
            c(&[("name", T), ("setting", T), ("unit", T), ("category", T), ("short_desc", T), ("source", T)])
        }
        "pg_tables" => {
            c(&[("schemaname", T), ("tablename", T), ("tableowner", T), ("tablespace", T), ("hasindexes", Bool)])
        }
        "pg_indexes" => c(&[("schemaname", T), ("tablename", T), ("indexname", T), ("tablespace", T), ("indexdef", T)]),
        "pg_sequence" => c(&[
            ("seqrelid", O),
            ("seqstart", Int8),
            ("seqincrement", Int8),
            ("seqmax", Int8),
            ("seqmin", Int8),
            ("seqcycle", Bool),
        ]),
        "pg_description" => c(&[("objoid", O), ("classoid", O), ("objsubid", Int4), ("description", T)]),
        "pg_policy" => c(&[
            ("oid", O),
            ("polname", T),
            ("polrelid", O),
            ("polcmd", T),
            ("polpermissive", Bool),
            ("polroles", T),
            ("polqual", T),
            ("polwithcheck", T),
        ]),
        "pg_statistic_ext" => c(&[
            ("oid", O),
            ("stxrelid", O),
            ("stxname", T),
            ("stxnamespace", O),
            ("stxowner", O),
            ("stxstattarget", Int4),
            ("stxkeys", T),
            ("stxkind", T),
        ]),
        "pg_publication" => c(&[
            ("oid", O),
            ("pubname", T),
            ("puballtables", Bool),
            ("pubinsert", Bool),
            ("pubupdate", Bool),
            ("pubdelete", Bool),
            ("pubtruncate", Bool),
            ("pubviaroot", Bool),
        ]),
        "pg_publication_namespace" => c(&[("oid", O), ("pnpubid", O), ("pnnspid", O)]),
        "pg_publication_rel" => c(&[("oid", O), ("prpubid", O), ("prrelid", O), ("prqual", T), ("prattrs", T)]),
        "pg_inherits" => c(&[("inhrelid", O), ("inhparent", O), ("inhseqno", Int4), ("inhdetachpending", Bool)]),
        "pg_partitioned_table" => c(&[("partrelid", O), ("partstrat", T), ("partnatts", Int2)]),
        "pg_trigger" => {
            c(&[("oid", O), ("tgrelid", O), ("tgname", T), ("tgisinternal", Bool), ("tgenabled", T), ("tgparentid", O)])
        }
        "pg_rewrite" => {
            c(&[("oid", O), ("rulename", T), ("ev_class", O), ("ev_type", T), ("ev_enabled", T), ("is_instead", Bool)])
        }
        "pg_foreign_table" => c(&[("ftrelid", O), ("ftserver", O), ("ftoptions", T)]),
        "pg_tablespace" => c(&[("oid", O), ("spcname", T), ("spcowner", O), ("spcacl", T), ("spcoptions", T)]),
        "pg_extension" => c(&[
            ("oid", O),
            ("extname", T),
            ("extversion", T),
            ("extowner", O),
            ("extnamespace", O),
            ("extrelocatable", Bool),
            ("extconfig", T),
            ("extcondition", T),
        ]),
        "pg_proc" => c(&[("oid", O), ("proname", T), ("pronamespace", O), ("prokind", T)]),
        "pg_stat_replication" | "gp_stat_replication" => {
            let mut cols = vec![("pid", Int4)];
            cols.extend_from_slice(&BACKEND_COLUMNS);
            cols.extend_from_slice(&[
                ("backend_xmin", T),
                ("state", T),
                ("sent_lsn", T),
                ("write_lsn", T),
                ("flush_lsn", T),
                ("replay_lsn", T),
                ("write_lag", T),
                ("flush_lag", T),
                ("replay_lag", T),
                ("sync_priority", Int4),
                ("sync_state", T),
                ("reply_time", DataType::TimestampTz),
            ]);
            if name == "gp_stat_replication" {
                cols.insert(0, ("gp_segment_id", Int2));
                cols.push(("sync_error", T));
            }
            // tandem's own: commits are acknowledged without the synchronous standbys
            // (synchronous_standby_timeout ran out).
            cols.push(("sync_fallback", DataType::Bool));
            c(&cols)
        }
        "pg_stat_wal_receiver" => c(&[
            ("pid", Int4),
            ("status", T),
            ("receive_start_lsn", T),
            ("receive_start_tli", Int4),
            ("written_lsn", T),
            ("flushed_lsn", T),
            ("received_tli", Int4),
            ("last_msg_send_time", DataType::TimestampTz),
            ("last_msg_receipt_time", DataType::TimestampTz),
            ("latest_end_lsn", T),
            ("latest_end_time", DataType::TimestampTz),
            ("slot_name", T),
            ("sender_host", T),
            ("sender_port", Int4),
            ("conninfo", T),
            ("last_error", T),
        ]),
        "pg_replication_slots" => c(&[
            ("slot_name", T),
            ("plugin", T),
            ("slot_type", T),
            ("datoid", O),
            ("database", T),
            ("temporary", Bool),
            ("active", Bool),
            ("active_pid", Int4),
            ("xmin", T),
            ("catalog_xmin", T),
            ("restart_lsn", T),
            ("confirmed_flush_lsn", T),
            ("wal_status", T),
            ("safe_wal_size", Int8),
            ("two_phase", Bool),
        ]),
        "pg_stat_activity" => {
            let mut cols = vec![("datid", O), ("datname", T), ("pid", Int4), ("leader_pid", Int4)];
            cols.extend_from_slice(&BACKEND_COLUMNS);
            cols.extend_from_slice(&[
                ("xact_start", DataType::TimestampTz),
                ("query_start", DataType::TimestampTz),
                ("state_change", DataType::TimestampTz),
                ("wait_event_type", T),
                ("wait_event", T),
                ("state", T),
                ("backend_xid", T),
                ("backend_xmin", T),
                ("query_id", Int8),
                ("query", T),
                ("backend_type", T),
            ]);
            c(&cols)
        }
        "tables" => c(&[("table_catalog", T), ("table_schema", T), ("table_name", T), ("table_type", T)]),
        "columns" => c(&[
            ("table_catalog", T),
            ("table_schema", T),
            ("table_name", T),
            ("column_name", T),
            ("ordinal_position", Int4),
            ("column_default", T),
            ("is_nullable", T),
            ("data_type", T),
            ("character_maximum_length", Int4),
            ("numeric_precision", Int4),
            ("numeric_scale", Int4),
        ]),
        "schemata" => c(&[("catalog_name", T), ("schema_name", T), ("schema_owner", T)]),
        _ => None,
    }
}

/// Strips a schema prefix that names the system schemas, returning the view name if it is one.
pub fn system_view(schema: Option<&str>, name: &str) -> Option<String> {
    match schema {
        Some("pg_catalog") | None if name != "tables" && name != "columns" && name != "schemata" => {
            columns(name).map(|_| name.to_string())
        }
        Some("information_schema") => columns(name).map(|_| name.to_string()),
        _ => None,
    }
}

fn b(v: bool) -> Value {
    Value::Bool(v)
}

fn t(s: &str) -> Value {
    Value::text(s)
}

fn i(v: i64) -> Value {
    Value::Int(v)
}

/// The typmod PostgreSQL records for a column type.
fn typmod(ty: &DataType) -> i64 {
    match ty {
        DataType::Varchar(Some(n)) | DataType::Char(n) => *n as i64 + 4,
        DataType::Numeric(Some((p, s))) => (((*p as i64) << 16) | *s as i64) + 4,
        _ => -1,
    }
}

fn typlen(ty: &DataType) -> i64 {
    match ty {
        DataType::Bool => 1,
        DataType::Int2 => 2,
        DataType::Int4 | DataType::Float4 | DataType::Date | DataType::Oid => 4,
        DataType::Int8 | DataType::Float8 | DataType::Timestamp | DataType::TimestampTz => 8,
        _ => -1,
    }
}

/// The types in pg_type.
const TYPES: &[(u32, &str, i64)] = &[
    (16, "bool", 1),
    (17, "bytea", -1),
    (18, "char", 1),
    (19, "name", 64),
    (20, "int8", 8),
    (21, "int2", 2),
    (23, "int4", 4),
    (25, "text", -1),
    (26, "oid", 4),
    (700, "float4", 4),
    (701, "float8", 8),
    (1042, "bpchar", -1),
    (1043, "varchar", -1),
    (1082, "date", 4),
    (1114, "timestamp", 8),
    (1184, "timestamptz", 8),
    (1186, "interval", 16),
    (1700, "numeric", -1),
];

/// format_type(oid, typmod).
pub fn type_by_oid(oid: u32, typmod: i64) -> Option<String> {
    let m = typmod - 4;
    Some(match oid {
        16 => "boolean".into(),
        17 => "bytea".into(),
        18 => "\"char\"".into(),
        19 => "name".into(),
        20 => "bigint".into(),
        21 => "smallint".into(),
        23 => "integer".into(),
        25 => "text".into(),
        26 => "oid".into(),
        700 => "real".into(),
        701 => "double precision".into(),
        1042 if m >= 0 => format!("character({m})"),
        1042 => "character".into(),
        1043 if m >= 0 => format!("character varying({m})"),
        1043 => "character varying".into(),
        1082 => "date".into(),
        1114 => "timestamp without time zone".into(),
        1184 => "timestamp with time zone".into(),
        1186 => "interval".into(),
        1700 if m >= 0 => format!("numeric({},{})", m >> 16, m & 0xffff),
        1700 => "numeric".into(),
        _ => return None,
    })
}

fn column_list(def: &TableDef, cols: &[usize]) -> String {
    cols.iter().map(|&c| def.columns.get(c).map_or("?", |c| c.name.as_str())).collect::<Vec<_>>().join(", ")
}

/// pg_get_indexdef for an index oid.
pub fn index_def(state: &DbState, oid: u32) -> Option<String> {
    for td in state.tables.values() {
        let def = &td.def;
        if let Some(pk) = def.primary_key.as_ref().filter(|pk| pk.index_id == oid) {
            return Some(format!(
                "CREATE UNIQUE INDEX {} ON public.{} USING btree ({})",
                pk.name,
                def.name,
                column_list(def, &pk.columns)
            ));
        }
        if let Some(ix) = def.indexes.iter().find(|ix| ix.id == oid) {
            return Some(format!(
                "CREATE {}INDEX {} ON public.{} USING btree ({})",
                if ix.unique { "UNIQUE " } else { "" },
                ix.name,
                def.name,
                column_list(def, &ix.columns)
            ));
        }
    }
    None
}

/// pg_get_constraintdef for a constraint oid.
pub fn constraint_def(state: &DbState, oid: u32) -> Option<String> {
    let index = oid & !CONSTRAINT_OID_BIT;
    for td in state.tables.values() {
        let def = &td.def;
        if let Some(pk) = def.primary_key.as_ref().filter(|pk| pk.index_id == index) {
            return Some(format!("PRIMARY KEY ({})", column_list(def, &pk.columns)));
        }
        if let Some(ix) = def.indexes.iter().find(|ix| ix.id == index && ix.constraint) {
            return Some(format!("UNIQUE ({})", column_list(def, &ix.columns)));
        }
    }
    None
}

/// The rows of a system view.
pub fn rows(name: &str, env: &Env) -> Result<Vec<Vec<Value>>> {
    let state = env.state;
    let tables = || state.tables.values().map(|t| t.def.clone());
    let mut out = Vec::new();
    match name {
        "pg_namespace" => {
            out.push(vec![i(NS_CATALOG), t("pg_catalog"), i(10), Value::Null]);
            out.push(vec![i(NS_PUBLIC), t("public"), i(10), Value::Null]);
            out.push(vec![i(NS_INFORMATION_SCHEMA), t("information_schema"), i(10), Value::Null]);
        }
        "pg_am" => {
            out.push(vec![i(2), t("heap"), t("t")]);
            out.push(vec![i(403), t("btree"), t("i")]);
        }
        "pg_class" => {
            for def in tables() {
                let has_index = def.primary_key.is_some() || !def.indexes.is_empty();
                out.push(class_row(def.id, &def.name, "r", 2, def.columns.len() as i64, has_index));
                if let Some(pk) = &def.primary_key {
                    out.push(class_row(pk.index_id, &pk.name, "i", 403, pk.columns.len() as i64, false));
                }
                for ix in &def.indexes {
                    out.push(class_row(ix.id, &ix.name, "i", 403, ix.columns.len() as i64, false));
                }
            }
        }
        "pg_attribute" => {
            for def in tables() {
                for (n, col) in def.columns.iter().enumerate() {
                    let coll = if matches!(col.ty, DataType::Text | DataType::Varchar(_) | DataType::Char(_)) {
                        100
                    } else {
                        0
                    };
                    out.push(vec![
                        i(def.id as i64),
                        t(&col.name),
                        i(col.ty.oid() as i64),
                        i(typlen(&col.ty)),
                        i(n as i64 + 1),
                        i(typmod(&col.ty)),
                        b(col.not_null || def.primary_key.as_ref().is_some_and(|pk| pk.columns.contains(&n))),
                        b(col.default.is_some()),
                        b(false),
                        i(coll),
                        t(""),
                        t(""),
                        t(storage(&col.ty)),
                        i(-1),
                        Value::Null,
                        Value::Null,
                        t(""),
                        Value::Null,
                    ]);
                }
            }
        }
        "pg_attrdef" => {
            for def in tables() {
                for (n, col) in def.columns.iter().enumerate() {
                    if let Some(d) = &col.default {
                        out.push(vec![i(def.id as i64 * 1000 + n as i64), i(def.id as i64), i(n as i64 + 1), t(d)]);
                    }
                }
            }
        }
        "pg_type" => {
            for (oid, name, len) in TYPES {
                let coll = if matches!(oid, 25 | 1042 | 1043) { 100 } else { 0 };
                out.push(vec![
                    i(*oid as i64),
                    t(name),
                    i(NS_CATALOG),
                    i(*len),
                    t("b"),
                    i(coll),
                    i(0),
                    i(0),
                    i(0),
                    b(false),
                    i(0),
                    i(-1),
                    Value::Null,
                    Value::Null,
                ]);
            }
        }
        "pg_collation" => {
            out.push(vec![i(100), t("default"), i(NS_CATALOG)]);
            out.push(vec![i(950), t("C"), i(NS_CATALOG)]);
        }
        "pg_index" => {
            for def in tables() {
                let key = |cols: &[usize]| cols.iter().map(|c| (c + 1).to_string()).collect::<Vec<_>>().join(" ");
                if let Some(pk) = &def.primary_key {
                    out.push(index_row(pk.index_id, def.id, pk.columns.len(), true, true, &key(&pk.columns)));
                }
                for ix in &def.indexes {
                    out.push(index_row(ix.id, def.id, ix.columns.len(), ix.unique, false, &key(&ix.columns)));
                }
            }
        }
        "pg_constraint" => {
            for def in tables() {
                let key = |cols: &[usize]| {
                    format!("{{{}}}", cols.iter().map(|c| (c + 1).to_string()).collect::<Vec<_>>().join(","))
                };
                if let Some(pk) = &def.primary_key {
                    out.push(constraint_row(pk.index_id, &pk.name, "p", def.id, &key(&pk.columns)));
                }
                for ix in def.indexes.iter().filter(|ix| ix.constraint) {
                    out.push(constraint_row(ix.id, &ix.name, "u", def.id, &key(&ix.columns)));
                }
            }
        }
        "pg_database" => {
            // The postgres database, and the session's own if it named another.
            let mut dbs = vec![(5, "postgres")];
            if env.session.database != "postgres" {
                dbs.push((16384, env.session.database.as_str()));
            }
            for (oid, name) in dbs {
                out.push(vec![
                    i(oid),
                    t(name),
                    i(10),
                    i(6),
                    t("C.UTF-8"),
                    t("C.UTF-8"),
                    b(true),
                    Value::Null,
                    t("c"),
                    Value::Null,
                    i(TABLESPACE_DEFAULT),
                    i(-1),
                    b(false),
                ]);
            }
        }
        "pg_roles" | "pg_user" | "pg_authid" => {
            // One role, the session's user, which may do everything (authentication is trust).
            let user = &env.session.user;
            let mut row = vec![i(10), t(user), b(true), t(user), i(10)];
            row.extend([b(true), b(true), b(true), b(true), b(true), b(true), i(-1), Value::Null, Value::Null]);
            row.extend([b(true), b(true), b(true), b(true), Value::Null, Value::Null]);
            out.push(row);
        }
        "pg_tablespace" => {
            out.push(vec![i(TABLESPACE_DEFAULT), t("pg_default"), i(10), Value::Null, Value::Null]);
            out.push(vec![i(1664), t("pg_global"), i(10), Value::Null, Value::Null]);
        }
        "pg_settings" => {
            for (k, v) in &env.session.settings {
                out.push(vec![t(k), t(v), Value::Null, t("tandem"), t(""), t("session")]);
            }
        }
        "pg_tables" => {
            for def in tables() {
                let has = def.primary_key.is_some() || !def.indexes.is_empty();
                out.push(vec![t("public"), t(&def.name), t(&env.session.user), Value::Null, b(has)]);
            }
        }
        "pg_indexes" => {
            for def in tables() {
                let ids = def
                    .primary_key
                    .iter()
                    .map(|p| (p.index_id, p.name.clone()))
                    .chain(def.indexes.iter().map(|x| (x.id, x.name.clone())));
                for (id, n) in ids {
                    out.push(vec![
                        t("public"),
                        t(&def.name),
                        t(&n),
                        Value::Null,
                        index_def(state, id).map_or(Value::Null, |s| t(&s)),
                    ]);
                }
            }
        }
        "pg_stat_activity" => {
            let Some(registry) = &env.session.activity else { return Ok(out) };
            let ts = |v: Option<i64>| v.map_or(Value::Null, Value::TimestampTz);
            for b in registry.list() {
                let now = b.snapshot();
                let client = b.kind == crate::activity::Kind::Client;
                // PostgreSQL shows the database of a client backend (a physical WAL sender has none), and a
                // Unix-domain client with no address and port -1.
                let (datid, datname) = if client {
                    (i(if b.database == "postgres" { 5 } else { 16384 }), t(&b.database))
                } else {
                    (Value::Null, Value::Null)
                };
                let (addr, port) = match b.client {
                    Some(a) => (t(&a.ip().to_string()), i(a.port() as i64)),
                    None => (Value::Null, i(-1)),
                };
                // An idle client backend waits for its client, as PostgreSQL's shows.
                let wait = match now.wait.names() {
                    Some(w) => Some(w),
                    None if client && now.info.state != crate::activity::State::Active => {
                        Some(("Client", "ClientRead"))
                    }
                    None => None,
                };
                out.push(vec![
                    datid,
                    datname,
                    i(b.pid as i64),
                    Value::Null,
                    i(10),
                    t(&b.user),
                    t(&b.application_name),
                    addr,
                    Value::Null,
                    port,
                    Value::TimestampTz(b.started),
                    ts(now.info.xact_start),
                    ts(now.info.query_start),
                    Value::TimestampTz(now.info.state_change),
                    wait.map_or(Value::Null, |w| t(w.0)),
                    wait.map_or(Value::Null, |w| t(w.1)),
                    t(now.info.state.name()),
                    Value::Null,
                    Value::Null,
                    Value::Null,
                    t(&now.info.query),
                    t(b.kind.name()),
                ]);
            }
        }
        "tables" => {
            for def in tables() {
                out.push(vec![t(&env.session.database), t("public"), t(&def.name), t("BASE TABLE")]);
            }
        }
        "columns" => {
            for def in tables() {
                for (n, col) in def.columns.iter().enumerate() {
                    let (len, prec, scale) = match &col.ty {
                        DataType::Varchar(Some(l)) | DataType::Char(l) => (i(*l as i64), Value::Null, Value::Null),
                        DataType::Int2 => (Value::Null, i(16), i(0)),
                        DataType::Int4 => (Value::Null, i(32), i(0)),
                        DataType::Int8 => (Value::Null, i(64), i(0)),
                        DataType::Numeric(Some((p, s))) => (Value::Null, i(*p as i64), i(*s as i64)),
                        _ => (Value::Null, Value::Null, Value::Null),
                    };
                    let nullable = !col.not_null && !def.primary_key.as_ref().is_some_and(|pk| pk.columns.contains(&n));
                    out.push(vec![
                        t(&env.session.database),
                        t("public"),
                        t(&def.name),
                        t(&col.name),
                        i(n as i64 + 1),
                        col.default.as_deref().map_or(Value::Null, t),
                        t(if nullable { "YES" } else { "NO" }),
                        t(col.ty.sql_name().split('(').next().unwrap_or("")),
                        len,
                        prec,
                        scale,
                    ]);
                }
            }
        }
        "pg_stat_replication" | "gp_stat_replication" => {
            let gp = name == "gp_stat_replication";
            let Some(ctx) = env.session.replication.as_ref() else { return Ok(out) };
            let senders = ctx.senders();
            let roles = ctx.syncrep.roles(&senders, ctx.engine.wal().flushed());
            let fallback = ctx.syncrep.degraded();
            for (sender, role) in senders.iter().zip(roles) {
                use std::sync::atomic::Ordering::Relaxed;
                let lsn = |v: u64| if v == 0 { Value::Null } else { t(&crate::wal::Lsn(v).to_string()) };
                let reply = sender.reply_time.load(Relaxed);
                let state = *sender.state.lock().unwrap_or_else(|e| e.into_inner());
                let mut row = vec![
                    i(sender.pid as i64),
                    i(10),
                    t("postgres"),
                    t(&sender.application_name),
                    // Empty for a standby on a Unix-domain socket: NULL, as PostgreSQL shows it.
                    if sender.client_addr.is_empty() { Value::Null } else { t(&sender.client_addr) },
                    Value::Null,
                    i(sender.client_port as i64),
                    Value::TimestampTz(sender.backend_start),
                    Value::Null,
                    t(state),
                    lsn(sender.sent.load(Relaxed)),
                    lsn(sender.write.load(Relaxed)),
                    lsn(sender.flush.load(Relaxed)),
                    lsn(sender.apply.load(Relaxed)),
                    sender.lag_text(0).map_or(Value::Null, |l| t(&l)),
                    sender.lag_text(1).map_or(Value::Null, |l| t(&l)),
                    sender.lag_text(2).map_or(Value::Null, |l| t(&l)),
                    i(role.priority as i64),
                    t(role.state),
                    if reply == 0 { Value::Null } else { Value::TimestampTz(reply) },
                ];
                if gp {
                    row.insert(0, Value::Int(-1));
                    row.push(t(if fallback && role.state != "async" { "walsender" } else { "none" }));
                }
                row.push(Value::Bool(fallback));
                out.push(row);
            }
        }
        "pg_stat_wal_receiver" => {
            if let Some(s) = env.session.replication.as_ref().and_then(|r| r.receiver_status()) {
                let lsn = |l: crate::wal::Lsn| if l.0 == 0 { Value::Null } else { t(&l.to_string()) };
                let time = |v: Option<i64>| v.map_or(Value::Null, Value::TimestampTz);
                out.push(vec![
                    i(std::process::id() as i64),
                    t(&s.status),
                    lsn(s.receive_start_lsn),
                    i(s.receive_start_tli as i64),
                    lsn(s.written_lsn),
                    lsn(s.flushed_lsn),
                    i(s.received_tli as i64),
                    time(s.last_msg_send_time),
                    time(s.last_msg_receipt_time),
                    lsn(s.latest_end_lsn),
                    time(s.latest_end_time),
                    s.slot_name.as_deref().map_or(Value::Null, t),
                    t(&s.sender_host),
                    i(s.sender_port as i64),
                    t(&format!("host={} port={}", s.sender_host, s.sender_port)),
                    s.last_error.as_deref().map_or(Value::Null, t),
                ]);
            }
        }
        "pg_replication_slots" => {
            if let Some(r) = &env.session.replication {
                for slot in r.slots.list() {
                    out.push(vec![
                        t(&slot.name),
                        Value::Null,
                        t("physical"),
                        Value::Null,
                        Value::Null,
                        b(slot.temporary),
                        b(slot.active_pid.is_some()),
                        slot.active_pid.map_or(Value::Null, |p| i(p as i64)),
                        Value::Null,
                        Value::Null,
                        slot.restart_lsn.map_or(Value::Null, |l| t(&l.to_string())),
                        Value::Null,
                        t(r.slots.wal_status(&slot)),
                        Value::Null,
                        b(false),
                    ]);
                }
            }
        }
        "schemata" => {
            for s in ["pg_catalog", "public", "information_schema"] {
                out.push(vec![t(&env.session.database), t(s), t(&env.session.user)]);
            }
        }
        _ => {}
    }
    Ok(out)
}

/// The oid of a system catalog, for `'pg_catalog.pg_class'::regclass` (the oids PostgreSQL gives them, which
/// clients compare with pg_description.classoid and the like).
pub fn catalog_oid(name: &str) -> Option<u32> {
    Some(match name {
        "pg_type" => 1247,
        "pg_attribute" => 1249,
        "pg_proc" => 1255,
        "pg_class" => 1259,
        "pg_authid" => 1260,
        "pg_database" => 1262,
        "pg_tablespace" => 1213,
        "pg_am" => 2601,
        "pg_attrdef" => 2604,
        "pg_constraint" => 2606,
        "pg_description" => 2609,
        "pg_index" => 2610,
        "pg_namespace" => 2615,
        "pg_trigger" => 2620,
        "pg_extension" => 3079,
        "pg_collation" => 3456,
        _ => return None,
    })
}

/// attstorage as PostgreSQL sets it for a type: plain for fixed-size types, main for numeric, extended for
/// the other variable-length ones.
fn storage(ty: &DataType) -> &'static str {
    match ty {
        DataType::Numeric(_) => "m",
        DataType::Text | DataType::Varchar(_) | DataType::Char(_) | DataType::Bytea => "x",
        _ => "p",
    }
}

/// pg_default's oid, the tablespace every database and relation is in.
const TABLESPACE_DEFAULT: i64 = 1663;

fn class_row(oid: u32, name: &str, kind: &str, am: i64, natts: i64, has_index: bool) -> Vec<Value> {
    vec![
        i(oid as i64),
        t(name),
        i(NS_PUBLIC),
        i(0),
        i(10),
        i(am),
        t(kind),
        i(natts),
        i(0),
        b(has_index),
        b(false),
        b(false),
        b(false),
        b(false),
        b(false),
        i(0),
        i(0),
        t("p"),
        t("d"),
        i(0),
        Value::Null,
        Value::Null,
        Value::Float(-1.0),
        i(0),
        b(false),
        Value::Null,
    ]
}

fn index_row(oid: u32, table: u32, natts: usize, unique: bool, primary: bool, key: &str) -> Vec<Value> {
    vec![
        i(oid as i64),
        i(table as i64),
        i(natts as i64),
        b(unique),
        b(primary),
        b(false),
        b(true),
        b(false),
        b(true),
        t(key),
        Value::Null,
        Value::Null,
    ]
}

fn constraint_row(index: u32, name: &str, kind: &str, table: u32, key: &str) -> Vec<Value> {
    vec![
        i((index | CONSTRAINT_OID_BIT) as i64),
        t(name),
        i(NS_PUBLIC),
        t(kind),
        b(false),
        b(false),
        b(true),
        i(table as i64),
        i(index as i64),
        i(0),
        i(0),
        b(true),
        t(key),
        Value::Null,
        Value::Null,
        i(0),
    ]
}
