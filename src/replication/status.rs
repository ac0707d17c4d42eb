//! `tandem status`: what gpstate -f shows, from the monitoring views over an ordinary SQL connection.
//!
//! It asks the server whether it is in recovery, then reads pg_stat_replication (on a primary: one entry
//! per standby) or pg_stat_wal_receiver (on a standby), and prints them for a person or, with `--json`, for
//! a script. A standby that is not streaming is shown with its last error, never as healthy.

use crate::error::{Result, SqlState};
use crate::replication::basebackup::replication_query;
use crate::replication::client::Conn;
use crate::wal::Lsn;

fn json_string(v: &Option<String>) -> String {
    match v {
        None => "null".into(),
        Some(s) => format!("\"{}\"", s.replace('\\', "\\\\").replace('"', "\\\"")),
    }
}

fn bytes_between(a: &Option<String>, b: &Option<String>) -> Option<u64> {
    let a: Lsn = a.as_ref()?.parse().ok()?;
    let b: Lsn = b.as_ref()?.parse().ok()?;
    Some(a.0.saturating_sub(b.0))
}

/// Prints the status of the server at host:port.
pub fn print(host: &str, port: u16, json: bool) -> Result<()> {
    let mut c = match Conn::session(host, port, "tandem status", None) {
        Ok(c) => c,
        Err(e) if e.code == SqlState::CANNOT_CONNECT_NOW => return print_loading(host, port, json),
        Err(e) => return Err(e),
    };
    let (_, info) = c.query(
        "select pg_is_in_recovery(), pg_current_wal_lsn(), pg_current_wal_flush_lsn(), pg_last_wal_receive_lsn(), pg_last_wal_replay_lsn(), version(), current_setting('synchronous_standby_names'), tandem_sync_fallback(), tandem_fenced()",
    )?;
    let info = info.into_iter().next().unwrap_or_default();
    let get = |i: usize| info.get(i).cloned().flatten();
    let standby = get(0).as_deref() == Some("t");
    let fenced = get(8).as_deref() == Some("t");
    let view = if standby {
        "select status, receive_start_lsn, written_lsn, flushed_lsn, latest_end_lsn, last_msg_send_time, last_msg_receipt_time, sender_host, sender_port, slot_name, last_error from pg_stat_wal_receiver"
    } else {
        "select application_name, client_addr, client_port, state, sync_state, sent_lsn, write_lsn, flush_lsn, replay_lsn, write_lag, flush_lag, replay_lag, reply_time from pg_stat_replication order by application_name"
    };
    let (names, rows) = c.query(view)?;
    if json {
        let entries: Vec<String> = rows
            .iter()
            .map(|r| {
                let fields: Vec<String> =
                    names.iter().zip(r).map(|(n, v)| format!("\"{n}\": {}", json_string(v))).collect();
                format!("{{ {} }}", fields.join(", "))
            })
            .collect();
        println!(
            "{{ \"role\": \"{}\", \"host\": \"{host}\", \"port\": {port}, \"fenced\": {fenced}, \"synchronous_standby_names\": {}, \"sync_fallback\": {}, \"current_lsn\": {}, \"flush_lsn\": {}, \"receive_lsn\": {}, \"replay_lsn\": {}, \"{}\": [{}] }}",
            if standby { "standby" } else { "primary" },
            json_string(&get(6)),
            get(7).as_deref() == Some("t"),
            json_string(&get(1)),
            json_string(&get(2)),
            json_string(&get(3)),
            json_string(&get(4)),
            if standby { "receiver" } else { "standbys" },
            entries.join(", ")
        );
        return Ok(());
    }
    let role = match (standby, fenced) {
        (true, _) => "standby (in recovery)",
        (false, true) => "primary, FENCED: a standby was promoted in its place; writes are refused (tandem rewind makes it a standby)",
        (false, false) => "primary",
    };
    println!("{host}:{port}: {role}");
    if standby {
        println!("  last received LSN: {}", get(3).unwrap_or_else(|| "-".into()));
        println!("  last applied LSN:  {}", get(4).unwrap_or_else(|| "-".into()));
        if let Some(lag) = bytes_between(&get(3), &get(4)) {
            println!("  replay lag:        {lag} bytes");
        }
        match rows.first() {
            None => println!("  WAL receiver: not running (no primary_conninfo)"),
            Some(r) => {
                let f = |i: usize| r.get(i).cloned().flatten().unwrap_or_else(|| "-".into());
                println!("  WAL receiver status: {}", f(0));
                println!("  primary:             {}:{} (slot {})", f(7), f(8), f(9));
                println!("  written / flushed:   {} / {}", f(2), f(3));
                println!("  last message:        {}", f(6));
                if let Some(e) = r.get(10).cloned().flatten() {
                    println!("  last error:          {e}");
                }
            }
        }
        return Ok(());
    }
    let names = get(6).unwrap_or_default();
    println!(
        "  synchronous standbys: {}",
        if names.is_empty() { "none (asynchronous replication)".to_string() } else { names }
    );
    if get(7).as_deref() == Some("t") {
        println!(
            "  SYNC FALLBACK: the synchronous standbys did not confirm within synchronous_standby_timeout;\n                 commits are acknowledged without them until they are back"
        );
    }
    println!("  current LSN:   {}", get(1).unwrap_or_else(|| "-".into()));
    println!("  flushed LSN:   {}", get(2).unwrap_or_else(|| "-".into()));
    if rows.is_empty() {
        println!("  standbys: No entries found.");
    }
    for r in &rows {
        let f = |i: usize| r.get(i).cloned().flatten().unwrap_or_else(|| "-".into());
        println!("  standby \"{}\" at {}:{}", f(0), f(1), f(2));
        println!("    WAL Sender State: {}", f(3));
        println!("    Sync state:       {}", f(4));
        println!("    Sent Location:    {}", f(5));
        println!("    Write Location:   {}", f(6));
        println!("    Flush Location:   {}", f(7));
        println!("    Replay Location:  {}", f(8));
        if let Some(lag) = bytes_between(&get(1), &r.get(8).cloned().flatten()) {
            println!("    Replay lag:       {lag} bytes");
        }
        println!("    Last reply:       {}", f(12));
    }
    Ok(())
}

/// A standby that still loads its snapshot refuses sessions (57P03) but answers IDENTIFY_SYSTEM on a
/// replication connection: its timeline and the end of the WAL it has, which it already streams.
fn print_loading(host: &str, port: u16, json: bool) -> Result<()> {
    let row = replication_query(host, port, "IDENTIFY_SYSTEM")?;
    let get = |i: usize| row.get(i).cloned().flatten();
    if json {
        println!(
            "{{ \"role\": \"standby\", \"host\": \"{host}\", \"port\": {port}, \"state\": \"starting up\", \"system_identifier\": {}, \"timeline\": {}, \"receive_lsn\": {}, \"replay_lsn\": null, \"receiver\": [] }}",
            json_string(&get(0)),
            get(1).unwrap_or_else(|| "null".into()),
            json_string(&get(2)),
        );
        return Ok(());
    }
    println!("{host}:{port}: standby (in recovery), starting up");
    println!("  loading its snapshot: read-only connections are refused until it is consistent");
    println!("  timeline:          {}", get(1).unwrap_or_else(|| "-".into()));
    println!("  WAL held up to:    {}", get(2).unwrap_or_else(|| "-".into()));
    Ok(())
}
