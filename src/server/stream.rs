//! The two transports a client reaches the server by: TCP on the listen address, and a Unix-domain
//! socket in each of `unix_socket_directories` (`DIR/.s.PGSQL.PORT`, PostgreSQL's name, so `psql -h /tmp
//! -p 5433` and pgbench find it).
//!
//! A Unix socket is the cheaper transport for a client on the same machine: no TCP/IP stack, no
//! acknowledgements, one copy. Sessions and WAL senders are written against [`Stream`] and cannot tell
//! the two apart except by [`Stream::peer`] (None on a Unix socket, where pg_stat_replication's
//! client_addr is NULL and client_port is -1, as in PostgreSQL).
//!
//! [`Stream::connect`] is the client side, for tandem's own tools and the WAL receiver: as in libpq, a host
//! that starts with `/` is a socket directory.
//!
//! [`UnixSocket`] owns the socket file: it refuses a path where another server answers, replaces a file
//! left behind by a server that died (nothing answers there), makes the socket connectable by every local
//! user (PostgreSQL's default `unix_socket_permissions = 0777`: authentication, not the file mode, decides
//! who gets in), and removes the file when dropped.

use std::io::{Read, Write};
use std::net::{Shutdown, SocketAddr, TcpStream, ToSocketAddrs};
use std::os::unix::fs::{FileTypeExt, PermissionsExt};
use std::os::unix::net::{UnixListener, UnixStream};
use std::path::{Path, PathBuf};
use std::time::Duration;

use crate::error::{Error, Result, SqlState};

/// A connected client, by either transport.
#[derive(Debug)]
pub enum Stream {
    Tcp(TcpStream),
    Unix(UnixStream),
}

impl Stream {
    /// Connects to a server: through `HOST/.s.PGSQL.PORT` when the host is a directory (starts with `/`),
    /// else over TCP, giving up after `timeout`. Small messages go out at once (TCP_NODELAY). `what` names
    /// the server in errors ("the server", "the primary server").
    pub fn connect(host: &str, port: u16, timeout: Duration, what: &str) -> Result<Stream> {
        if host.starts_with('/') {
            let path = socket_path(Path::new(host), port);
            let s = UnixStream::connect(&path)
                .map_err(|e| Error::io(format!("could not connect to {what} on socket \"{}\"", path.display()), e))?;
            return Ok(Stream::Unix(s));
        }
        let addr = (host, port)
            .to_socket_addrs()
            .map_err(|e| Error::io(format!("could not resolve \"{host}\""), e))?
            .next()
            .ok_or_else(|| Error::new(SqlState("08001"), format!("could not resolve \"{host}\"")))?;
        let s = TcpStream::connect_timeout(&addr, timeout)
            .map_err(|e| Error::io(format!("could not connect to {what} at {host}:{port}"), e))?;
        let _ = s.set_nodelay(true);
        Ok(Stream::Tcp(s))
    }

    /// How long a read may block (None: forever).
    pub fn set_read_timeout(&self, timeout: Option<Duration>) -> std::io::Result<()> {
        match self {
            Stream::Tcp(s) => s.set_read_timeout(timeout),
            Stream::Unix(s) => s.set_read_timeout(timeout),
        }
    }

    /// Another handle on the same connection (one reads while another writes).
    pub fn try_clone(&self) -> std::io::Result<Stream> {
        Ok(match self {
            Stream::Tcp(s) => Stream::Tcp(s.try_clone()?),
            Stream::Unix(s) => Stream::Unix(s.try_clone()?),
        })
    }

    /// Shuts the connection down, waking a thread blocked reading it.
    pub fn shutdown(&self, how: Shutdown) -> std::io::Result<()> {
        match self {
            Stream::Tcp(s) => s.shutdown(how),
            Stream::Unix(s) => s.shutdown(how),
        }
    }

    /// The client's address; None on a Unix socket.
    pub fn peer(&self) -> Option<SocketAddr> {
        match self {
            Stream::Tcp(s) => s.peer_addr().ok(),
            Stream::Unix(_) => None,
        }
    }

    /// The port this connection came in on: the TCP port, or the one in a Unix socket's `.s.PGSQL.PORT` name.
    pub fn local_port(&self) -> Option<u16> {
        match self {
            Stream::Tcp(s) => s.local_addr().ok().map(|a| a.port()),
            Stream::Unix(s) => {
                let addr = s.local_addr().ok()?;
                let name = addr.as_pathname()?.file_name()?.to_str()?;
                name.strip_prefix(".s.PGSQL.")?.parse().ok()
            }
        }
    }

    /// The socket's descriptor if it is a TCP connection (for `SO_INCOMING_CPU`, see server::scheduling).
    pub fn tcp_fd(&self) -> Option<std::os::fd::RawFd> {
        match self {
            Stream::Tcp(s) => Some(std::os::fd::AsRawFd::as_raw_fd(s)),
            Stream::Unix(_) => None,
        }
    }

    /// Sends small messages at once (TCP_NODELAY); a Unix socket has no delay to turn off.
    pub fn set_nodelay(&self) {
        if let Stream::Tcp(s) = self {
            let _ = s.set_nodelay(true);
        }
    }

    /// For logs: the peer's address, or "local" for a Unix socket.
    pub fn describe(&self) -> String {
        self.peer().map_or_else(|| "[local]".to_string(), |a| a.to_string())
    }
}

impl Read for Stream {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        match self {
            Stream::Tcp(s) => s.read(buf),
            Stream::Unix(s) => s.read(buf),
        }
    }
}

impl Write for Stream {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        match self {
            Stream::Tcp(s) => s.write(buf),
            Stream::Unix(s) => s.write(buf),
        }
    }

    fn write_all(&mut self, buf: &[u8]) -> std::io::Result<()> {
        match self {
            Stream::Tcp(s) => s.write_all(buf),
            Stream::Unix(s) => s.write_all(buf),
        }
    }

    fn flush(&mut self) -> std::io::Result<()> {
        match self {
            Stream::Tcp(s) => s.flush(),
            Stream::Unix(s) => s.flush(),
        }
    }
}

/// The socket file's path for a port in a directory: `DIR/.s.PGSQL.PORT`.
pub fn socket_path(dir: &Path, port: u16) -> PathBuf {
    dir.join(format!(".s.PGSQL.{port}"))
}

/// The longest path a Unix socket address holds (sun_path, less its terminating NUL).
const MAX_SOCKET_PATH: usize = 107;

/// A listening Unix-domain socket and the file it owns.
pub struct UnixSocket {
    pub listener: UnixListener,
    pub path: PathBuf,
}

impl UnixSocket {
    /// Creates `DIR/.s.PGSQL.PORT`, replacing a stale file but never a live server's socket.
    pub fn bind(dir: &Path, port: u16) -> Result<UnixSocket> {
        let path = socket_path(dir, port);
        let shown = path.display().to_string();
        let refuse = |msg: String| Error::new(SqlState::CONFIG_FILE_ERROR, msg);
        if !dir.is_absolute() {
            // Clients take a host that starts with `/` as a socket directory; a relative one would also
            // depend on the server's working directory.
            return Err(refuse(format!("unix_socket_directories entry \"{}\" is not an absolute path", dir.display())));
        }
        if path.as_os_str().len() > MAX_SOCKET_PATH {
            return Err(refuse(format!(
                "Unix-domain socket path \"{shown}\" is too long (maximum {MAX_SOCKET_PATH} bytes)"
            )));
        }
        match std::fs::symlink_metadata(&path) {
            Ok(meta) if !meta.file_type().is_socket() => {
                return Err(refuse(format!(
                    "could not create Unix-domain socket \"{shown}\": a file that is not a socket is in the way"
                )));
            }
            Ok(_) => {
                if UnixStream::connect(&path).is_ok() {
                    return Err(refuse(format!("could not create Unix-domain socket \"{shown}\": another server is listening on it"))
                        .with_hint("Is another server running on this port? Choose another port or another unix_socket_directories."));
                }
                // A socket nothing answers on: left by a server that died.
                std::fs::remove_file(&path)
                    .map_err(|e| Error::io(format!("could not remove stale Unix-domain socket \"{shown}\""), e))?;
            }
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(e) => return Err(Error::io(format!("could not create Unix-domain socket \"{shown}\""), e)),
        }
        let listener = UnixListener::bind(&path)
            .map_err(|e| Error::io(format!("could not create Unix-domain socket \"{shown}\""), e))?;
        let socket = UnixSocket { listener, path };
        std::fs::set_permissions(&socket.path, std::fs::Permissions::from_mode(0o777))
            .map_err(|e| Error::io(format!("could not set permissions of \"{shown}\""), e))?;
        Ok(socket)
    }
}

impl Drop for UnixSocket {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.path);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stale_sockets_are_replaced_and_live_ones_refused() {
        let dir = tempfile::tempdir().unwrap();
        let first = UnixSocket::bind(dir.path(), 5999).unwrap();
        let mode = std::fs::metadata(&first.path).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, 0o777);
        let e = UnixSocket::bind(dir.path(), 5999).err().expect("a live socket is refused");
        assert!(e.message.contains("another server is listening"), "{}", e.message);
        let path = first.path.clone();
        drop(first);
        assert!(!path.exists(), "dropping the socket removes its file");

        // A server that died leaves its file behind, with nothing listening: it is replaced.
        drop(UnixListener::bind(&path).unwrap());
        assert!(path.exists());
        let again = UnixSocket::bind(dir.path(), 5999).unwrap();
        assert!(UnixStream::connect(&again.path).is_ok());

        // A relative directory is refused.
        let e = UnixSocket::bind(Path::new("sock"), 6001).err().expect("a relative directory is refused");
        assert!(e.message.contains("not an absolute path"), "{}", e.message);

        // Something that is not a socket is never removed.
        let other = socket_path(dir.path(), 6000);
        std::fs::write(&other, b"data").unwrap();
        assert!(UnixSocket::bind(dir.path(), 6000).is_err());
        assert_eq!(std::fs::read(&other).unwrap(), b"data");
    }
}
