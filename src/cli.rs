//! The `tandem` command line: `init`, `start`, `stop` and `quickstart`, named after the PostgreSQL tools
//! operators know (initdb, pg_ctl).
//!
//! Settings live in `DIR/tandem.toml`, a handful of `key = value` lines read by hand (no TOML crate for
//! two keys); flags override the file. Authentication is `trust` for now, so the server refuses any
//! listen address that is not loopback.
//!
//! `start` runs in the foreground. `start --detach` re-executes itself in a new session with its output in
//! `DIR/log/tandem.log`, and returns once the server accepts connections (or fails with the log's last
//! lines). `stop` signals the pid in the data directory's lock file: SIGTERM for a fast shutdown
//! (sessions closed, checkpoint, clean control file), SIGQUIT for an immediate one (exit at once; the next
//! start recovers from the WAL).

use std::net::{IpAddr, SocketAddr, TcpStream};
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::Arc;
use std::time::{Duration, Instant};

use clap::{Parser, Subcommand, ValueEnum};

use tandem::engine::{Engine, EngineConfig, InitOptions, PID_FILE};
use tandem::error::{Error, Result, SqlState};
use tandem::replication::basebackup::{self, FetchOptions};
use tandem::replication::client::{literal, Conn};
use tandem::replication::walreceiver::ReceiverConfig;
use tandem::replication::walsender::{ReplicationContext, SenderConfig};
use tandem::server::Server;
use tandem::settings::ServerSettings;

const CONFIG_FILE: &str = "tandem.toml";
const DEFAULT_PORT: u16 = 5433;
const DEFAULT_LISTEN: &str = "127.0.0.1";
/// Where the Unix-domain socket goes by default: PostgreSQL's compiled-in default.
const DEFAULT_SOCKET_DIRS: &str = "/tmp";

/// tandem: a PostgreSQL-wire database server with WAL streaming to a standby.
#[derive(Parser, Debug)]
#[command(name = "tandem", version, about, long_about = None)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Command,
}

/// The subcommands.
#[derive(Subcommand, Debug)]
pub enum Command {
    /// Create a data directory for a new primary (like initdb).
    #[command(
        after_help = "Examples:\n  tandem init -D ./data\n  tandem init -D ./data --port 5544 --wal-segment-size 16MB"
    )]
    Init {
        /// The data directory to create (must be missing or empty).
        #[arg(short = 'D', long = "pgdata", value_name = "DIR")]
        dir: PathBuf,
        /// The port to record in tandem.toml.
        #[arg(long, value_parser = port_number)]
        port: Option<u16>,
        /// The listen address to record in tandem.toml (loopback only).
        #[arg(long)]
        listen: Option<String>,
        /// WAL segment size, a power of two between 1MB and 1GB (e.g. 16MB).
        #[arg(long, value_name = "SIZE")]
        wal_segment_size: Option<String>,
    },
    /// Run the server (in the foreground, or in the background with --detach).
    #[command(
        after_help = "Examples:\n  tandem start -D ./data\n  tandem start -D ./data --port 5544 --detach\n  psql -h 127.0.0.1 -p 5433 -U postgres postgres"
    )]
    Start {
        /// The data directory.
        #[arg(short = 'D', long = "pgdata", value_name = "DIR")]
        dir: PathBuf,
        /// The port to listen on (overrides tandem.toml).
        #[arg(long, value_parser = port_number)]
        port: Option<u16>,
        /// The address to listen on (overrides tandem.toml; loopback only).
        #[arg(long)]
        listen: Option<String>,
        /// Run in the background, logging to DIR/log/tandem.log; return once connections are accepted.
        #[arg(long)]
        detach: bool,
    },
    /// Stop a running server.
    #[command(after_help = "Examples:\n  tandem stop -D ./data\n  tandem stop -D ./data --mode immediate")]
    Stop {
        /// The data directory.
        #[arg(short = 'D', long = "pgdata", value_name = "DIR")]
        dir: PathBuf,
        /// fast: close sessions, checkpoint, exit; immediate: exit at once (recovery at next start).
        #[arg(long, value_enum, default_value_t = StopMode::Fast)]
        mode: StopMode,
    },
    /// Take a base backup of a running primary (like pg_basebackup).
    #[command(
        disable_help_flag = true,
        after_help = "Examples:\n  tandem basebackup -h 127.0.0.1 -p 5433 -D ./backup --progress\n  tandem basebackup -h 127.0.0.1 -p 5433 -D ./standby --write-standby-config --max-rate 50MB"
    )]
    Basebackup {
        /// Print help (-h is the host, as in PostgreSQL's tools).
        #[arg(long, action = clap::ArgAction::Help)]
        help: Option<bool>,
        /// The primary's host.
        #[arg(short = 'h', long, default_value = "127.0.0.1")]
        host: String,
        /// The primary's port.
        #[arg(short = 'p', long, default_value_t = DEFAULT_PORT, value_parser = port_number)]
        port: u16,
        /// Where to write the copy (must be missing or empty).
        #[arg(short = 'D', long = "pgdata", value_name = "DIR")]
        dir: PathBuf,
        /// Show a progress bar (on a terminal).
        #[arg(long)]
        progress: bool,
        /// Limit the transfer rate, e.g. 50MB (per second).
        #[arg(long, value_name = "RATE")]
        max_rate: Option<String>,
        /// Make the copy start as a standby of the primary (standby.signal, primary_conninfo).
        #[arg(long)]
        write_standby_config: bool,
    },
    /// Create a standby of a running primary and start it (like gpinitstandby).
    #[command(
        disable_help_flag = true,
        after_help = "Examples:\n  tandem init-standby -h 127.0.0.1 -p 5433 -D ./standby --port 5434\n  tandem init-standby -h 127.0.0.1 -p 5433 -D ./standby --port 5434 --name mirror1 --no-start"
    )]
    InitStandby {
        /// Print help (-h is the host, as in PostgreSQL's tools).
        #[arg(long, action = clap::ArgAction::Help)]
        help: Option<bool>,
        /// The primary's host.
        #[arg(short = 'h', long, default_value = "127.0.0.1")]
        host: String,
        /// The primary's port.
        #[arg(short = 'p', long, default_value_t = DEFAULT_PORT, value_parser = port_number)]
        primary_port: u16,
        /// The standby's data directory (must be missing or empty).
        #[arg(short = 'D', long = "pgdata", value_name = "DIR")]
        dir: PathBuf,
        /// The port the standby listens on.
        #[arg(long, value_parser = port_number)]
        port: u16,
        /// The standby's name (its application_name and replication slot on the primary).
        #[arg(long, default_value = "standby")]
        name: String,
        /// Prepare the standby but do not start it.
        #[arg(long)]
        no_start: bool,
    },
    /// Promote a running standby to primary (like gpactivatestandby / pg_ctl promote).
    #[command(
        after_help = "Examples:\n  tandem promote -D ./standby\n  tandem promote -D ./standby --wait-seconds 30\n  tandem promote -D ./standby --force      # the old primary is cut off but may still run"
    )]
    Promote {
        /// The standby's data directory.
        #[arg(short = 'D', long = "pgdata", value_name = "DIR")]
        dir: PathBuf,
        /// How long to wait for the promotion to finish.
        #[arg(long, default_value_t = 60)]
        wait_seconds: u64,
        /// Promote even though the old primary still answers and accepts writes (split brain risk).
        #[arg(long, conflicts_with = "fence")]
        force: bool,
        /// Tell the old primary to stop accepting writes first (it is fenced), then promote.
        #[arg(long)]
        fence: bool,
    },
    /// Make a stopped old primary a standby of the new primary, cutting its WAL back to where the new
    /// primary's timeline branched off (like pg_rewind).
    #[command(
        disable_help_flag = true,
        after_help = "Examples:\n  tandem rewind -D ./old-primary -h 127.0.0.1 -p 5434\n  tandem rewind -D ./old-primary -h 10.0.0.2 -p 5433 --name mirror1\n\nWhen the old primary checkpointed after the switch point, rewinding is impossible: it says so, and what\nto run instead (a fresh tandem init-standby)."
    )]
    Rewind {
        /// Print help (-h is the host, as in PostgreSQL's tools).
        #[arg(long, action = clap::ArgAction::Help)]
        help: Option<bool>,
        /// The old primary's data directory (the server must be stopped).
        #[arg(short = 'D', long = "pgdata", value_name = "DIR")]
        dir: PathBuf,
        /// The new primary's host.
        #[arg(short = 'h', long, default_value = "127.0.0.1")]
        host: String,
        /// The new primary's port.
        #[arg(short = 'p', long, value_parser = port_number)]
        port: u16,
        /// The name the rewound server streams under (application_name and slot).
        #[arg(long, default_value = "standby")]
        name: String,
    },
    /// Show a server's role, positions and standbys (like gpstate -f).
    #[command(
        disable_help_flag = true,
        after_help = "Examples:\n  tandem status -h 127.0.0.1 -p 5433\n  tandem status -p 5434 --json"
    )]
    Status {
        /// Print help (-h is the host, as in PostgreSQL's tools).
        #[arg(long, action = clap::ArgAction::Help)]
        help: Option<bool>,
        /// The server's host.
        #[arg(short = 'h', long, default_value = "127.0.0.1")]
        host: String,
        /// The server's port.
        #[arg(short = 'p', long, default_value_t = DEFAULT_PORT, value_parser = port_number)]
        port: u16,
        /// Print JSON instead of text.
        #[arg(long)]
        json: bool,
    },
    /// Run a primary (127.0.0.1:5433) and its synchronous standby (5434) until Ctrl-C, creating them in
    /// ./tandem-data if needed.
    #[command(
        after_help = "Examples:\n  tandem quickstart\n  tandem quickstart --dir /tmp/tandem-demo\n  tandem quickstart --dir /tmp/other-pair --port 6543"
    )]
    Quickstart {
        /// Where to keep the data (`primary` and `standby` folders inside it).
        #[arg(long, default_value = "./tandem-data")]
        dir: PathBuf,
        /// The primary's port when the pair is created [default: 5433]; the standby takes the next one. A
        /// pair that exists keeps the ports it was created with.
        #[arg(long)]
        port: Option<u16>,
    },
}

/// How `stop` stops the server.
#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub enum StopMode {
    Fast,
    Immediate,
}

/// The settings in tandem.toml.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Config {
    pub listen: String,
    pub port: u16,
    /// Comma-separated directories for the Unix-domain socket `.s.PGSQL.PORT`; empty for TCP only.
    pub unix_socket_directories: String,
    /// On a standby: how to reach the primary (`host=... port=... application_name=...`).
    pub primary_conninfo: Option<String>,
    /// On a standby: the primary's replication slot for it.
    pub primary_slot_name: Option<String>,
}

impl Default for Config {
    fn default() -> Self {
        Config {
            listen: DEFAULT_LISTEN.into(),
            port: DEFAULT_PORT,
            unix_socket_directories: DEFAULT_SOCKET_DIRS.into(),
            primary_conninfo: None,
            primary_slot_name: None,
        }
    }
}

fn config_error(msg: impl Into<String>) -> Error {
    Error::new(SqlState::CONFIG_FILE_ERROR, msg)
}

impl Config {
    /// Parses `key = value` lines; `#` starts a comment; string values may be quoted.
    pub fn parse(text: &str) -> Result<Config> {
        let mut c = Config::default();
        for (n, line) in text.lines().enumerate() {
            let line = line.split('#').next().unwrap_or("").trim();
            if line.is_empty() {
                continue;
            }
            let (k, v) = line
                .split_once('=')
                .ok_or_else(|| config_error(format!("tandem.toml line {}: expected key = value", n + 1)))?;
            let v = v.trim().trim_matches('"').trim_matches('\'');
            match k.trim() {
                "listen" => c.listen = v.to_string(),
                "unix_socket_directories" => c.unix_socket_directories = v.to_string(),
                "primary_conninfo" => c.primary_conninfo = Some(v.to_string()),
                "primary_slot_name" => c.primary_slot_name = Some(v.to_string()),
                "port" => {
                    c.port = port_number(v).map_err(|e| config_error(format!("tandem.toml line {}: {e}", n + 1)))?
                }
                _ => {}
            }
        }
        Ok(c)
    }

    /// The file's text.
    pub fn render(&self) -> String {
        let mut text = format!("# tandem settings\nlisten = \"{}\"\nport = {}\n", self.listen, self.port);
        if self.unix_socket_directories != DEFAULT_SOCKET_DIRS {
            text.push_str(&format!("unix_socket_directories = '{}'\n", self.unix_socket_directories));
        }
        if let Some(c) = &self.primary_conninfo {
            text.push_str(&format!("primary_conninfo = '{c}'\n"));
        }
        if let Some(s) = &self.primary_slot_name {
            text.push_str(&format!("primary_slot_name = '{s}'\n"));
        }
        text
    }

    /// Reads DIR/tandem.toml. A standby made by `pg_basebackup -R` has its primary_conninfo in
    /// postgresql.auto.conf instead, which is read too.
    fn load(dir: &Path) -> Result<Config> {
        let path = dir.join(CONFIG_FILE);
        let mut config = match std::fs::read_to_string(&path) {
            Ok(t) => Config::parse(&t)?,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Config::default(),
            Err(e) => return Err(Error::io(format!("could not read \"{}\"", path.display()), e)),
        };
        if config.primary_conninfo.is_none() {
            if let Ok(text) = std::fs::read_to_string(dir.join("postgresql.auto.conf")) {
                for line in text.lines() {
                    if let Some((k, v)) = line.split_once('=') {
                        let v = v.trim().trim_matches('\'').replace("\'\'", "\'");
                        match k.trim() {
                            "primary_conninfo" => config.primary_conninfo = Some(v),
                            "primary_slot_name" => config.primary_slot_name = Some(v),
                            _ => {}
                        }
                    }
                }
            }
        }
        Ok(config)
    }

    /// The directories of `unix_socket_directories`.
    fn socket_dirs(&self) -> Vec<PathBuf> {
        self.unix_socket_directories.split(',').map(str::trim).filter(|d| !d.is_empty()).map(PathBuf::from).collect()
    }

    fn address(&self) -> Result<SocketAddr> {
        let ip: IpAddr = if self.listen == "localhost" {
            IpAddr::from([127, 0, 0, 1])
        } else {
            self.listen.parse().map_err(|_| config_error(format!("invalid listen address \"{}\"", self.listen)))?
        };
        if !ip.is_loopback() {
            return Err(config_error(format!("refusing to listen on non-loopback address {ip}"))
                .with_detail("Authentication is \"trust\": anyone who can connect is a superuser.")
                .with_hint("Listen on 127.0.0.1 (or ::1) until password authentication is available."));
        }
        Ok(SocketAddr::new(ip, self.port))
    }
}

/// Parses a size such as `16MB`, `1GB` or a byte count.
pub fn parse_size(s: &str) -> Result<u64> {
    let t = s.trim().to_ascii_uppercase();
    let (num, mult) = if let Some(n) = t.strip_suffix("GB") {
        (n, 1u64 << 30)
    } else if let Some(n) = t.strip_suffix("MB") {
        (n, 1 << 20)
    } else if let Some(n) = t.strip_suffix("KB") {
        (n, 1 << 10)
    } else {
        (t.as_str(), 1)
    };
    num.trim()
        .parse::<u64>()
        .ok()
        .and_then(|n| n.checked_mul(mult))
        .ok_or_else(|| config_error(format!("invalid size \"{s}\"")))
}

/// A TCP port from the command line: 1 to 65535 (0 would be a port the kernel picks, which no client knows).
fn port_number(s: &str) -> std::result::Result<u16, String> {
    match s.parse::<u16>() {
        Ok(0) => Err("port 0 is not a port clients can connect to; give 1 to 65535".into()),
        Ok(p) => Ok(p),
        Err(_) => Err(format!("\"{s}\" is not a port number (1 to 65535)")),
    }
}

/// Runs a command.
pub fn run(cli: Cli) -> ExitCode {
    if matches!(cli.command, Command::Status { .. }) {
        // Piped into `head`, a report ends quietly when the reader goes, as other command-line tools do.
        // SAFETY: restoring a signal's default disposition; no handler runs.
        unsafe {
            libc::signal(libc::SIGPIPE, libc::SIG_DFL);
        }
    }
    let result = match cli.command {
        Command::Init { dir, port, listen, wal_segment_size } => init(&dir, port, listen, wal_segment_size.as_deref()),
        Command::Start { dir, port, listen, detach: false } => start(&dir, port, listen, None),
        Command::Start { dir, port, listen, detach: true } => detach(&dir, port, listen, true),
        Command::Stop { dir, mode } => stop(&dir, mode),
        Command::Quickstart { dir, port } => quickstart(&dir, port),
        Command::Basebackup { host, port, dir, progress, max_rate, write_standby_config, .. } => {
            run_basebackup(&host, port, &dir, progress, max_rate.as_deref(), write_standby_config)
        }
        Command::Promote { dir, wait_seconds, force, fence } => promote(&dir, wait_seconds, force, fence),
        Command::Rewind { dir, host, port, name, .. } => rewind(&dir, &host, port, &name),
        Command::Status { host, port, json, .. } => tandem::replication::status::print(&host, port, json),
        Command::InitStandby { host, primary_port, dir, port, name, no_start, .. } => {
            init_standby(&host, primary_port, &dir, port, &name, no_start)
        }
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("tandem: error: {e}");
            ExitCode::FAILURE
        }
    }
}

fn init(dir: &Path, port: Option<u16>, listen: Option<String>, segment: Option<&str>) -> Result<()> {
    create(dir, port, listen, segment)?;
    println!(
        "Success. The data directory {} is ready.\n\nStart the server with:\n\n    tandem start -D {}\n",
        dir.display(),
        dir.display()
    );
    Ok(())
}

/// Creates a data directory and its tandem.toml.
fn create(dir: &Path, port: Option<u16>, listen: Option<String>, segment: Option<&str>) -> Result<()> {
    let mut config = Config::default();
    if let Some(p) = port {
        config.port = p;
    }
    if let Some(l) = listen {
        config.listen = l;
    }
    config.address()?;
    let mut options = InitOptions::default();
    if let Some(s) = segment {
        options.segment_size = parse_size(s)?;
    }
    Engine::init(dir, &options)?;
    let path = dir.join(CONFIG_FILE);
    std::fs::write(&path, config.render())
        .map_err(|e| Error::io(format!("could not write \"{}\"", path.display()), e))?;
    Ok(())
}

fn settings(dir: &Path, port: Option<u16>, listen: Option<String>) -> Result<Config> {
    let mut config = Config::load(dir)?;
    if let Some(p) = port {
        config.port = p;
    }
    if let Some(l) = listen {
        config.listen = l;
    }
    Ok(config)
}

/// Blocks the shutdown signals in this thread (and the threads it starts), so one thread can wait for them.
fn block_signals() -> libc::sigset_t {
    // SAFETY: plain libc calls on a sigset_t owned by this frame.
    unsafe {
        let mut set: libc::sigset_t = std::mem::zeroed();
        libc::sigemptyset(&mut set);
        libc::sigaddset(&mut set, libc::SIGTERM);
        libc::sigaddset(&mut set, libc::SIGINT);
        libc::sigaddset(&mut set, libc::SIGQUIT);
        libc::pthread_sigmask(libc::SIG_BLOCK, &set, std::ptr::null_mut());
        set
    }
}

fn wait_signal(set: &libc::sigset_t) -> i32 {
    let mut sig = 0;
    // SAFETY: sigwait on a set this process blocked; `sig` is a valid out-pointer.
    unsafe {
        libc::sigwait(set, &mut sig);
    }
    sig
}

fn start(dir: &Path, port: Option<u16>, listen: Option<String>, banner: Option<&dyn Fn(SocketAddr)>) -> Result<()> {
    let config = settings(dir, port, listen)?;
    let addr = config.address()?;
    let signals = block_signals();
    let engine = Arc::new(Engine::open(dir, EngineConfig::default())?);
    let settings = Arc::new(ServerSettings::load(dir)?);
    if !engine.in_recovery() && engine.fenced().is_none() {
        fence_if_replaced(&engine, &settings);
    }
    let max_slot_wal_keep_size =
        tandem::settings::parse_wal_keep(&settings.get("max_slot_wal_keep_size")).unwrap_or(None);
    let sender = SenderConfig { max_slot_wal_keep_size, ..SenderConfig::default() };
    let replication = ReplicationContext::new(engine.clone(), sender, settings)?;
    let mut server = Server::bind(addr, engine.clone(), replication.clone())?;
    server.listen_unix(&config.socket_dirs())?;
    engine.announce_listening(addr)?;
    if engine.in_recovery() {
        // ALTER SYSTEM's primary_conninfo (postgresql.auto.conf) wins over tandem.toml's.
        let conninfo = Some(replication.settings.get("primary_conninfo"))
            .filter(|c| !c.is_empty())
            .or(config.primary_conninfo.clone());
        match conninfo {
            Some(conninfo) => {
                let mut rc = ReceiverConfig::from_conninfo(&conninfo)?;
                rc.slot = config.primary_slot_name.clone();
                tracing::info!(primary = %format!("{}:{}", rc.host, rc.port), "starting as a standby");
                replication.start_receiver(rc);
            }
            None => tracing::warn!("standby.signal is present but primary_conninfo is not set: not streaming"),
        }
    }
    let stopper = server.stopper()?;
    let immediate_engine = engine.clone();
    std::thread::Builder::new()
        .name("signals".into())
        .spawn(move || loop {
            let sig = wait_signal(&signals);
            if sig == libc::SIGQUIT {
                tracing::info!("received immediate shutdown request");
                immediate_engine.halt();
                std::process::exit(0);
            }
            if sig == libc::SIGTERM || sig == libc::SIGINT {
                tracing::info!("received fast shutdown request");
                stopper.stop();
                return;
            }
        })
        .map_err(|e| Error::io("could not start the signal thread", e))?;
    for path in server.socket_paths() {
        tracing::info!(socket = %path.display(), "listening on a Unix-domain socket");
    }
    if engine.consistent() {
        tracing::info!(%addr, dir = %dir.display(), "database system is ready to accept connections");
    } else {
        tracing::info!(%addr, dir = %dir.display(), "listening; read-only connections are accepted once the snapshot is loaded");
    }
    if let Some(b) = banner {
        b(server.local_addr()?);
    }
    server.run();
    tracing::info!("shutting down");
    replication.stop_receiver();
    let result = engine.shutdown();
    // The standbys get everything, the shutdown checkpoint included, before their connections close.
    server.close_replication(engine.wal().flushed(), SHUTDOWN_DRAIN);
    result?;
    tracing::info!("database system is shut down");
    // Everything is durable and every connection closed. Returning would drop the engine and its tables
    // row by row: about a second of CPU for seven million rows, partly before the data directory's lock is
    // released (which `tandem stop` waits for) and partly after it. Exiting leaves the memory to the kernel;
    // the lock goes when the process's files close. The server goes first: dropping it removes its
    // Unix-domain socket files.
    drop(server);
    std::process::exit(0)
}

fn log_tail(path: &Path, lines: usize) -> String {
    let text = std::fs::read_to_string(path).unwrap_or_default();
    let all: Vec<&str> = text.lines().collect();
    all[all.len().saturating_sub(lines)..].join("\n")
}

/// Whether the server at `addr` takes sessions: a standby still loading its snapshot answers 57P03 (the
/// database system is not yet accepting connections); Err if nothing listens there any more. Any other
/// answer counts as taking them.
fn takes_sessions(addr: &SocketAddr) -> std::io::Result<bool> {
    match Conn::session(&addr.ip().to_string(), addr.port(), "tandem start", Some(Duration::from_secs(5))) {
        Ok(c) => {
            c.close();
            Ok(true)
        }
        Err(e) if e.code == SqlState::CANNOT_CONNECT_NOW => Ok(false),
        Err(_) => TcpStream::connect_timeout(addr, Duration::from_secs(5)).map(|_| true),
    }
}

/// How long a fast shutdown waits for streaming standbys to flush the shutdown checkpoint.
const SHUTDOWN_DRAIN: Duration = Duration::from_secs(10);

/// How long `tandem start --detach` and `init-standby` wait for a standby to load its snapshot.
const LOAD_WAIT: Duration = Duration::from_secs(600);

/// Starts the server in the background and returns once it accepts connections. With `wait_sessions`, a
/// standby must also have loaded its snapshot and take read-only sessions, as `pg_ctl start -w` waits for
/// a hot standby's consistent state.
fn detach(dir: &Path, port: Option<u16>, listen: Option<String>, wait_sessions: bool) -> Result<()> {
    let config = settings(dir, port, listen)?;
    let addr = config.address()?;
    let log_dir = dir.join("log");
    std::fs::create_dir_all(&log_dir)
        .map_err(|e| Error::io(format!("could not create \"{}\"", log_dir.display()), e))?;
    let log_path = log_dir.join("tandem.log");
    let log = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(&log_path)
        .map_err(|e| Error::io(format!("could not open \"{}\"", log_path.display()), e))?;
    let log2 = log.try_clone().map_err(|e| Error::io("log file", e))?;
    let exe = std::env::current_exe().map_err(|e| Error::io("could not find the tandem executable", e))?;
    let mut cmd = std::process::Command::new(exe);
    cmd.arg("start").arg("-D").arg(dir).arg("--port").arg(config.port.to_string()).arg("--listen").arg(&config.listen);
    cmd.stdin(std::process::Stdio::null()).stdout(log).stderr(log2);
    // SAFETY: setsid is async-signal-safe; it detaches the child from our terminal's session.
    unsafe {
        std::os::unix::process::CommandExt::pre_exec(&mut cmd, || {
            libc::setsid();
            Ok(())
        });
    }
    let mut child = cmd.spawn().map_err(|e| Error::io("could not start the server", e))?;
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        if let Ok(Some(status)) = child.try_wait() {
            return Err(config_error(format!(
                "server exited ({status}) before accepting connections; the log ends with:\n{}",
                log_tail(&log_path, 10)
            )));
        }
        // Up means this child holds the data directory's lock and has announced its address there: a
        // connection alone could reach another server (or any program) already on the port.
        let announced = std::fs::read_to_string(dir.join(PID_FILE)).is_ok_and(|text| {
            let mut lines = text.lines();
            lines.next().is_some_and(|pid| pid.trim() == child.id().to_string()) && lines.next().is_some()
        });
        if announced && TcpStream::connect_timeout(&addr, Duration::from_millis(200)).is_ok() {
            println!("server started (pid {}), listening on {addr}, logging to {}", child.id(), log_path.display());
            if wait_sessions {
                wait_for_sessions(&addr, Some(&mut child), &log_path)?;
            }
            return Ok(());
        }
        if Instant::now() > deadline {
            return Err(config_error(format!(
                "server did not accept connections within 60 s; the log ends with:\n{}",
                log_tail(&log_path, 10)
            )));
        }
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// Waits until the server at `addr` takes sessions (a standby has loaded its snapshot), saying so if it
/// has to wait. After [`LOAD_WAIT`] it stops waiting without an error: the server is up and still loading.
fn wait_for_sessions(addr: &SocketAddr, mut child: Option<&mut std::process::Child>, log_path: &Path) -> Result<()> {
    let started = Instant::now();
    let mut said = false;
    loop {
        let exited = match child.as_mut().map(|c| c.try_wait()) {
            Some(Ok(Some(status))) => Some(status.to_string()),
            _ => None,
        };
        let taking = match (exited, takes_sessions(addr)) {
            (None, Ok(taking)) => taking,
            (exited, _) => {
                return Err(config_error(format!(
                    "the server {} while loading its snapshot; the log ends with:\n{}",
                    exited.map_or("stopped".to_string(), |s| format!("exited ({s})")),
                    log_tail(log_path, 10)
                )))
            }
        };
        if taking {
            break;
        }
        if !said {
            println!("the standby is loading its snapshot; waiting until it accepts read-only connections");
            said = true;
        }
        if started.elapsed() > LOAD_WAIT {
            println!(
                "still loading after {} s; not waiting any longer (its log says when it is ready)",
                LOAD_WAIT.as_secs()
            );
            return Ok(());
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    if said {
        println!(
            "the standby accepts read-only connections ({:.1} s after it started)",
            started.elapsed().as_secs_f64()
        );
    }
    Ok(())
}

/// Refuses a directory that holds no tandem data directory, with the message `tandem start` gives (and
/// nothing more: a server whose control file is damaged must still be stoppable).
fn data_directory(dir: &Path) -> Result<()> {
    if dir.join(tandem::control::CONTROL_FILE).exists() {
        return Ok(());
    }
    tandem::control::ControlFile::read(dir).map(|_| ())
}

fn stop(dir: &Path, mode: StopMode) -> Result<()> {
    data_directory(dir)?;
    let path = dir.join(PID_FILE);
    let text = std::fs::read_to_string(&path)
        .map_err(|e| Error::io(format!("could not read \"{}\" (is the server running?)", path.display()), e))?;
    let pid: i32 = text
        .lines()
        .next()
        .and_then(|l| l.trim().parse().ok())
        .ok_or_else(|| config_error(format!("bad pid file \"{}\"", path.display())))?;
    let alive = |pid: i32| {
        // SAFETY: kill with signal 0 only checks that the process exists.
        unsafe { libc::kill(pid, 0) == 0 }
    };
    let file = std::fs::File::open(&path).map_err(|e| Error::io("pid file", e))?;
    if file.try_lock().is_ok() || !alive(pid) {
        return Err(config_error(format!("no server running in \"{}\"", dir.display())));
    }
    drop(file);
    let sig = match mode {
        StopMode::Fast => libc::SIGTERM,
        StopMode::Immediate => libc::SIGQUIT,
    };
    // SAFETY: sending a signal to the pid the data directory's lock file names, which holds the lock.
    if unsafe { libc::kill(pid, sig) } != 0 {
        return Err(Error::io("could not signal the server", std::io::Error::last_os_error()));
    }
    // The server is gone once its lock on the pid file is released (a zombie still answers kill 0).
    let held = || std::fs::File::open(&path).map(|f| f.try_lock().is_err()).unwrap_or(false);
    let deadline = Instant::now() + Duration::from_secs(120);
    while alive(pid) && held() {
        if Instant::now() > deadline {
            return Err(config_error(format!("server (pid {pid}) did not stop within 120 s")));
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    println!("server stopped");
    Ok(())
}

fn run_basebackup(
    host: &str,
    port: u16,
    dir: &Path,
    progress: bool,
    max_rate: Option<&str>,
    write_standby_config: bool,
) -> Result<()> {
    let max_rate = max_rate.map(parse_size).transpose()?;
    if let Some(rate) = max_rate.filter(|r| !(32 << 10..=1 << 30).contains(r)) {
        return Err(config_error(format!("transfer rate {rate} bytes/s is out of range"))
            .with_hint("--max-rate takes 32kB to 1GB (per second), as pg_basebackup's does."));
    }
    let options = FetchOptions { progress, max_rate, application_name: "tandem_basebackup".into() };
    let existed = empty_target(dir)?;
    let fetched = basebackup::fetch(host, port, dir, &options).and_then(|fetched| {
        if write_standby_config {
            basebackup::write_standby_config(dir, host, port, "standby", None)?;
        }
        Ok(fetched)
    });
    let fetched = fetched.inspect_err(|_| clear_target(dir, existed))?;
    println!(
        "base backup of system {} written to {}: {} bytes, WAL {} to {}",
        fetched.system_id,
        dir.display(),
        fetched.bytes,
        fetched.start,
        fetched.end
    );
    Ok(())
}

/// Checks that `dir` is absent or empty, as a base backup needs it; returns whether it exists.
fn empty_target(dir: &Path) -> Result<bool> {
    match std::fs::read_dir(dir).map(|mut entries| entries.next().is_none()) {
        Ok(false) => Err(config_error(format!("directory \"{}\" exists but is not empty", dir.display()))
            .with_hint("Give a new or empty directory; nothing in this one was touched.")),
        Ok(true) => Ok(true),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(false),
        Err(e) => Err(Error::io(format!("could not open directory \"{}\"", dir.display()), e)),
    }
}

/// Removes what a failed command wrote into `dir`, which [`empty_target`] found absent (`existed` false: the
/// directory goes) or empty (its contents go).
fn clear_target(dir: &Path, existed: bool) {
    if !existed {
        let _ = std::fs::remove_dir_all(dir);
        return;
    }
    if let Ok(entries) = std::fs::read_dir(dir) {
        for e in entries.flatten() {
            let p = e.path();
            let _ = if p.is_dir() { std::fs::remove_dir_all(&p) } else { std::fs::remove_file(&p) };
        }
    }
}

/// A replication slot name made from a standby name: lower case letters, digits and underscores.
fn slot_name(name: &str) -> String {
    let s: String =
        name.chars().map(|c| if c.is_ascii_alphanumeric() { c.to_ascii_lowercase() } else { '_' }).take(63).collect();
    if s.is_empty() {
        "standby".into()
    } else {
        s
    }
}

/// Whether two host names are the same machine (for the same-host-and-port check). A socket directory
/// (a host starting with `/`) is this machine, as loopback is.
fn same_host(a: &str, b: &str) -> bool {
    use std::net::ToSocketAddrs;
    let ips = |h: &str| -> Vec<IpAddr> {
        if h.starts_with('/') {
            return vec![IpAddr::from([127, 0, 0, 1])];
        }
        (h, 0).to_socket_addrs().map(|it| it.map(|s| s.ip()).collect()).unwrap_or_default()
    };
    let (x, y) = (ips(a), ips(b));
    a == b
        || x.iter().any(|ip| y.contains(ip))
        || (x.iter().any(IpAddr::is_loopback) && y.iter().any(IpAddr::is_loopback))
}

fn init_standby(host: &str, primary_port: u16, dir: &Path, port: u16, name: &str, no_start: bool) -> Result<()> {
    if port == primary_port && same_host(host, DEFAULT_LISTEN) {
        return Err(config_error(format!(
            "cannot create standby on the same host and port as the primary ({host}:{port})"
        ))
        .with_hint("Give the standby another --port."));
    }
    if name.is_empty() || name.len() > 63 || !name.chars().all(|c| c.is_ascii_alphanumeric() || "_-.".contains(c)) {
        return Err(config_error(format!("invalid standby name \"{name}\"")).with_hint(
            "A standby name (its application_name) is 1 to 63 letters, digits, underscores, dashes or dots.",
        ));
    }
    // Refused before anything is done, so that undoing a failure can only remove what this command wrote.
    let existed = empty_target(dir)?;
    let begun = Instant::now();
    let slot = slot_name(name);
    // The slot is made first, on its own, so that a failure undoes only a slot this command made: a slot of
    // that name that exists already is another standby's, whose WAL it holds.
    if let Err(e) =
        replication_command(host, primary_port, &format!("CREATE_REPLICATION_SLOT \"{slot}\" PHYSICAL RESERVE_WAL"))
    {
        clear_target(dir, existed);
        if e.code == SqlState::DUPLICATE_OBJECT {
            return Err(config_error(format!(
                "a standby named \"{name}\" is already registered on the primary {host}:{primary_port} (replication slot \"{slot}\" exists)"
            ))
            .with_detail("The slot holds the WAL that standby still needs, so it was left as it is.")
            .with_hint(format!(
                "Give the new standby another --name. If the standby that used the slot is gone for good, drop the slot on the primary first: SELECT pg_drop_replication_slot('{slot}');"
            )));
        }
        return Err(e);
    }
    let undo = |started: bool| {
        if started {
            let _ = stop(dir, StopMode::Immediate);
        }
        let _ = drop_slot(host, primary_port, &slot);
        clear_target(dir, existed);
    };
    let options = FetchOptions { progress: true, max_rate: None, application_name: name.to_string() };
    println!("taking a base backup of {host}:{primary_port} into {} (the primary keeps serving)", dir.display());
    let fetched = match basebackup::fetch(host, primary_port, dir, &options) {
        Ok(f) => f,
        Err(e) => {
            undo(false);
            return Err(e);
        }
    };
    let config = Config {
        listen: DEFAULT_LISTEN.into(),
        port,
        primary_conninfo: Some(format!("host={host} port={primary_port} application_name={name}")),
        primary_slot_name: Some(slot.clone()),
        ..Config::default()
    };
    let written = std::fs::write(dir.join(CONFIG_FILE), config.render())
        .map_err(|e| Error::io("could not write the standby's tandem.toml", e))
        .and_then(|_| basebackup::write_standby_config(dir, host, primary_port, name, Some(&slot)));
    if let Err(e) = written {
        undo(false);
        return Err(e);
    }
    println!("base backup done: {} bytes, WAL {} to {}", fetched.bytes, fetched.start, fetched.end);
    if no_start {
        println!(
            "standby prepared in {}; start it with:\n\n    tandem start -D {} --detach\n",
            dir.display(),
            dir.display()
        );
        return Ok(());
    }
    // Not waiting for the snapshot to load: the standby streams (and protects commits) while it loads.
    if let Err(e) = detach(dir, Some(port), None, false) {
        undo(true);
        return Err(e);
    }
    // Streaming means the standby's slot on the primary has moved past the backup's end.
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        match slot_position(host, primary_port, &slot) {
            Ok(Some(lsn)) if lsn >= fetched.end => break,
            _ if Instant::now() > deadline => {
                undo(true);
                return Err(config_error("the standby did not start streaming within 60 s; it was removed again"));
            }
            _ => std::thread::sleep(Duration::from_millis(100)),
        }
    }
    // The primary remembers its mirrors, so that a restart after a failover finds out it was replaced.
    if let Err(e) = remember_mirror(host, primary_port, port) {
        eprintln!("tandem: warning: could not record the standby in the primary's mirror_conninfo: {e}");
    }
    println!(
        "standby \"{name}\" is streaming from {host}:{primary_port} ({:.1} s after the start of the command)",
        begun.elapsed().as_secs_f64()
    );
    let addr = SocketAddr::from(([127, 0, 0, 1], port));
    wait_for_sessions(&addr, None, &dir.join("log").join("tandem.log"))?;
    println!("standby \"{name}\" accepts read-only connections on port {port}");
    Ok(())
}

/// Adds `host=127.0.0.1 port=PORT` to the primary's `mirror_conninfo` (a `;`-separated list).
fn remember_mirror(host: &str, primary_port: u16, port: u16) -> Result<()> {
    let mut c = Conn::session(host, primary_port, "tandem init-standby", None)?;
    let current = c.value("select current_setting('mirror_conninfo')")?.unwrap_or_default();
    let entry = format!("host={DEFAULT_LISTEN} port={port}");
    let mut list: Vec<String> =
        current.split(';').map(|x| x.trim().to_string()).filter(|x| !x.is_empty() && *x != entry).collect();
    list.push(entry);
    c.query(&format!("alter system set mirror_conninfo = {}", literal(&list.join("; "))))?;
    c.query("select pg_reload_conf()")?;
    Ok(())
}

/// At start, a primary asks its mirrors (`mirror_conninfo`) whether one of them was promoted to a newer
/// timeline of this system while it was down; if so it fences itself before it accepts a connection.
fn fence_if_replaced(engine: &Engine, settings: &ServerSettings) {
    let list = settings.get("mirror_conninfo");
    for entry in list.split(';').map(str::trim).filter(|x| !x.is_empty()) {
        let Ok(rc) = ReceiverConfig::from_conninfo(entry) else { continue };
        let Ok(row) = basebackup::replication_query(&rc.host, rc.port, "IDENTIFY_SYSTEM") else { continue };
        let field = |i: usize| row.get(i).cloned().flatten().unwrap_or_default();
        let (system, tli): (u64, u32) = (field(0).parse().unwrap_or(0), field(1).parse().unwrap_or(0));
        if system == engine.system_id() && tli > engine.wal().timeline() {
            let reason = format!(
                "at start: the mirror at {}:{} is on timeline {tli}, newer than this server's {}",
                rc.host,
                rc.port,
                engine.wal().timeline()
            );
            if let Err(e) = engine.fence(&reason) {
                eprintln!("tandem: could not fence: {e}");
            }
            return;
        }
    }
}

/// `tandem promote`: refuses while the standby's primary still accepts writes (unless `--force`), then
/// runs `pg_promote(true, N)` on the standby, which returns once it accepts writes.
fn promote(dir: &Path, wait_seconds: u64, force: bool, fence: bool) -> Result<()> {
    data_directory(dir)?;
    let config = Config::load(dir)?;
    if !dir.join(tandem::engine::STANDBY_SIGNAL).exists() {
        return Err(config_error(format!("\"{}\" is not a standby (no standby.signal)", dir.display())));
    }
    let settings = ServerSettings::load(dir)?;
    let conninfo = Some(settings.get("primary_conninfo")).filter(|c| !c.is_empty()).or(config.primary_conninfo.clone());
    if let (Some(conninfo), false) = (conninfo, force) {
        let rc = ReceiverConfig::from_conninfo(&conninfo)?;
        // Serving = answers, is not in recovery, and is not fenced. With --fence, fence it first.
        let serving = Conn::session(&rc.host, rc.port, "tandem promote", Some(Duration::from_secs(2)))
            .and_then(|mut c| {
                if c.value("select pg_is_in_recovery()")?.as_deref() != Some("f") {
                    return Ok(false);
                }
                if c.value("select tandem_fenced()").ok().flatten().as_deref() == Some("t") {
                    return Ok(false);
                }
                if fence {
                    let reason =
                        format!("being replaced by the standby on port {} (tandem promote --fence)", config.port);
                    c.query(&format!("select tandem_fence({})", literal(&reason)))?;
                    println!("fenced the old primary at {}:{}", rc.host, rc.port);
                    return Ok(false);
                }
                Ok(true)
            })
            .unwrap_or(false);
        if serving {
            return Err(config_error(format!(
                "the primary at {}:{} is still running and accepting writes; promoting this standby would make two primaries",
                rc.host, rc.port
            ))
            .with_hint("Stop the primary first, or use --fence to make it refuse writes first, or --force."));
        }
    }
    let started = Instant::now();
    // A standby still loading its snapshot refuses sessions (57P03): promotion waits for the load, within
    // the same time limit.
    let mut said = false;
    let mut conn = loop {
        match Conn::session("127.0.0.1", config.port, "tandem promote", None) {
            Ok(c) => break c,
            Err(e) if e.code == SqlState::CANNOT_CONNECT_NOW && started.elapsed().as_secs() < wait_seconds => {
                if !said {
                    println!("the standby is still loading its snapshot; promoting once it has");
                    said = true;
                }
                std::thread::sleep(Duration::from_millis(20));
            }
            Err(e) => {
                return Err(config_error(format!("could not connect to the standby on port {}: {e}", config.port)))
            }
        }
    };
    if conn.value(&format!("select pg_promote(true, {wait_seconds})"))?.as_deref() != Some("t") {
        return Err(config_error(format!("the standby did not finish promoting within {wait_seconds} s")));
    }
    let lsn = conn.value("select pg_current_wal_lsn()")?.unwrap_or_default();
    println!(
        "server promoted in {} ms: {} accepts writes on port {} (WAL continues at {lsn} on a new timeline)",
        started.elapsed().as_millis(),
        dir.display(),
        config.port
    );
    Ok(())
}

/// `tandem rewind`: checks that the new primary is of the same system and on a timeline that branched off
/// this server's, cuts this server's WAL back to the switch point (possible while its last checkpoint is
/// at or before it), and writes the standby configuration.
fn rewind(dir: &Path, host: &str, port: u16, name: &str) -> Result<()> {
    use tandem::control::ControlFile;
    use tandem::wal::{segment, timeline};
    let pid = dir.join(PID_FILE);
    if std::fs::File::open(&pid).is_ok_and(|f| f.try_lock().is_err()) {
        return Err(config_error(format!("a server is running in \"{}\"", dir.display()))
            .with_hint(format!("Stop it first: tandem stop -D {}", dir.display())));
    }
    let control = ControlFile::read(dir)?;
    let instead = format!(
        "Rebuild it instead: move \"{}\" away, then tandem init-standby -h {host} -p {port} -D {} --port PORT",
        dir.display(),
        dir.display()
    );
    let ident = replication_command(host, port, "IDENTIFY_SYSTEM")?;
    let field = |i: usize| ident.get(i).cloned().flatten().unwrap_or_default();
    let system: u64 = field(0).parse().unwrap_or(0);
    if system != control.system_id {
        return Err(config_error(format!(
            "the server at {host}:{port} is another database system (identifier {system}, this one {})",
            control.system_id
        )));
    }
    let new_tli: u32 = field(1).parse().unwrap_or(0);
    if new_tli <= control.timeline {
        return Err(config_error(format!(
            "the server at {host}:{port} is on timeline {new_tli}, not newer than this server's timeline {}: nothing to rewind",
            control.timeline
        ))
        .with_hint("Point rewind at the promoted standby."));
    }
    let content = replication_command(host, port, &format!("TIMELINE_HISTORY {new_tli}"))?
        .get(1)
        .cloned()
        .flatten()
        .unwrap_or_default();
    let history = timeline::parse_history(&content)?;
    let Some(switch) = timeline::switch_point(&history, control.timeline) else {
        return Err(config_error(format!(
            "timeline {} of this server is not in the history of the new primary's timeline {new_tli}",
            control.timeline
        ))
        .with_hint(instead));
    };
    // Where this server's WAL ends.
    let mut replay = tandem::recovery::Replay::start(dir, &control)?;
    replay.to_end()?;
    let end = replay.position();
    drop(replay);
    let wal_dir = dir.join(tandem::engine::WAL_DIR);
    let seg = control.segment_size;
    if end > switch {
        if control.checkpoint >= switch {
            return Err(config_error(format!(
                "this server checkpointed at {} after the switch point {switch}: its state cannot be cut back",
                control.checkpoint
            ))
            .with_hint(instead));
        }
        // Zero the rest of the switch segment and drop later segments of this server's timeline.
        let path = wal_dir.join(segment::file_name(control.timeline, switch.segment(seg), seg));
        let f = std::fs::OpenOptions::new()
            .write(true)
            .open(&path)
            .map_err(|e| Error::io(format!("could not open \"{}\"", path.display()), e))?;
        let off = switch.segment_offset(seg);
        std::os::unix::fs::FileExt::write_all_at(&f, &vec![0u8; (seg - off) as usize], off)
            .and_then(|_| f.sync_all())
            .map_err(|e| Error::io(format!("could not cut \"{}\"", path.display()), e))?;
        for (tli, segno, p) in segment::list(&wal_dir, seg)? {
            if tli == control.timeline && segno > switch.segment(seg) {
                std::fs::remove_file(&p).map_err(|e| Error::io(format!("could not remove \"{}\"", p.display()), e))?;
            }
        }
        segment::sync_dir(&wal_dir)?;
        println!("cut this server's WAL back from {end} to {switch}, where timeline {new_tli} branched off");
    } else {
        println!("this server's WAL ends at {end}, at or before the switch point {switch}: nothing to cut");
    }
    let slot = slot_name(name);
    basebackup::write_standby_config(dir, host, port, name, Some(&slot))?;
    // An ALTER SYSTEM primary_conninfo would override the one just written.
    ServerSettings::load(dir)?.alter_system("primary_conninfo", None)?;
    let fenced = dir.join(tandem::engine::FENCED_FILE);
    if fenced.exists() {
        std::fs::remove_file(&fenced).map_err(|e| Error::io("could not remove the fence", e))?;
    }
    println!(
        "{} is now a standby of {host}:{port}; start it with:\n\n    tandem start -D {} --detach\n",
        dir.display(),
        dir.display()
    );
    Ok(())
}

/// Runs one replication command on the primary; returns the first row.
fn replication_command(host: &str, port: u16, command: &str) -> Result<Vec<Option<String>>> {
    basebackup::replication_query(host, port, command)
}

fn slot_position(host: &str, port: u16, slot: &str) -> Result<Option<tandem::wal::Lsn>> {
    let row = replication_command(host, port, &format!("READ_REPLICATION_SLOT {slot}"))?;
    Ok(row.get(1).cloned().flatten().and_then(|s| s.parse().ok()))
}

fn drop_slot(host: &str, port: u16, slot: &str) -> Result<()> {
    replication_command(host, port, &format!("DROP_REPLICATION_SLOT \"{slot}\"")).map(|_| ())
}

/// The mirrored pair of `quickstart`: a primary on 5433 (or `--port`) and a synchronous standby on the next
/// port, both detached, stopped (primary first) on Ctrl-C. Run again, it starts the same pair on the ports
/// it was created with.
fn quickstart(dir: &Path, port: Option<u16>) -> Result<()> {
    let primary = dir.join("primary");
    let standby = dir.join("standby");
    let (primary_port, standby_port) = quickstart_ports(&primary, &standby, port)?;
    let signals = block_signals();
    if !primary.join("tandem.control").exists() {
        create(&primary, Some(primary_port), Some(DEFAULT_LISTEN.into()), None)?;
        println!("Created a new primary in {}.", primary.display());
    }
    detach(&primary, Some(primary_port), Some(DEFAULT_LISTEN.into()), true)?;
    let stop_primary = || {
        let _ = stop(&primary, StopMode::Fast);
    };
    let made = if standby.join("tandem.control").exists() {
        detach(&standby, Some(standby_port), Some(DEFAULT_LISTEN.into()), true)
    } else {
        // A standby folder removed by hand leaves its slot on the primary. The pair is quickstart's own, so
        // a slot of its standby's name that no one streams from is that standby's, and goes.
        match drop_slot(DEFAULT_LISTEN, primary_port, &slot_name("standby")) {
            Ok(()) => println!("Dropped the replication slot of the standby that was in {}.", standby.display()),
            Err(e) if e.code == SqlState::UNDEFINED_OBJECT => {}
            Err(e) => {
                stop_primary();
                return Err(e);
            }
        }
        println!("Creating a synchronous standby in {} (as tandem init-standby does).", standby.display());
        init_standby(DEFAULT_LISTEN, primary_port, &standby, standby_port, "standby", false)
    };
    if let Err(e) = made {
        stop_primary();
        return Err(e);
    }
    let sync = (|| -> Result<()> {
        let mut c = Conn::session(DEFAULT_LISTEN, primary_port, "tandem quickstart", None)?;
        c.query("alter system set synchronous_standby_names = 'standby'")?;
        c.query("select pg_reload_conf()")?;
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            let state = c.value("select sync_state from pg_stat_replication where application_name = 'standby'")?;
            if state.as_deref() == Some("sync") {
                return Ok(());
            }
            if Instant::now() > deadline {
                return Err(config_error("the standby did not become synchronous within 30 s"));
            }
            std::thread::sleep(Duration::from_millis(100));
        }
    })();
    if let Err(e) = sync {
        let _ = stop(&standby, StopMode::Fast);
        stop_primary();
        return Err(e);
    }
    println!();
    let _ = tandem::replication::status::print(DEFAULT_LISTEN, primary_port, false);
    println!(
        "\ntandem is running: primary on {DEFAULT_LISTEN}:{primary_port}, synchronous standby on {DEFAULT_LISTEN}:{standby_port} (data in {}).\n\
         Every commit on the primary is on the standby's disk before it returns. Connect with:\n\n    \
         psql -h {DEFAULT_LISTEN} -p {primary_port} -U postgres postgres    # read-write\n    \
         psql -h {DEFAULT_LISTEN} -p {standby_port} -U postgres postgres    # read-only standby\n    \
         tandem status -p {primary_port}\n\nPress Ctrl-C to stop both.",
        dir.display()
    );
    loop {
        let sig = wait_signal(&signals);
        if sig == libc::SIGINT || sig == libc::SIGTERM || sig == libc::SIGQUIT {
            break;
        }
    }
    println!("\nstopping the primary, then the standby");
    let first = stop(&primary, StopMode::Fast);
    let second = stop(&standby, StopMode::Fast);
    first.and(second)
}

/// quickstart's ports: those a pair that exists was created with (`--port` must agree), else `--port` (or
/// 5433) and the next one.
fn quickstart_ports(primary: &Path, standby: &Path, port: Option<u16>) -> Result<(u16, u16)> {
    let recorded = |dir: &Path| -> Result<Option<u16>> {
        Ok(if dir.join("tandem.control").exists() { Some(Config::load(dir)?.port) } else { None })
    };
    let primary_port = match (recorded(primary)?, port) {
        (Some(r), Some(p)) if r != p => {
            return Err(config_error(format!(
                "the primary in \"{}\" was created on port {r}, not {p}",
                primary.display()
            ))
            .with_hint(format!("Run quickstart with --port {r}, or without --port, or with another --dir.")))
        }
        (Some(r), _) => r,
        (None, p) => p.unwrap_or(DEFAULT_PORT),
    };
    let standby_port = match recorded(standby)? {
        Some(r) => r,
        None => primary_port.checked_add(1).ok_or_else(|| config_error("--port leaves no port for the standby"))?,
    };
    Ok((primary_port, standby_port))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn config_round_trip() {
        let c = Config {
            listen: "127.0.0.1".into(),
            port: 6000,
            unix_socket_directories: "/var/run/tandem, /tmp".into(),
            primary_conninfo: Some("host=127.0.0.1 port=5433 application_name=s1".into()),
            primary_slot_name: Some("s1".into()),
        };
        assert_eq!(Config::parse(&c.render()).ok(), Some(c));
        assert!(Config { listen: "0.0.0.0".into(), port: 1, ..Config::default() }.address().is_err());
        assert_eq!(parse_size("16MB").ok(), Some(16 << 20));
    }
}
