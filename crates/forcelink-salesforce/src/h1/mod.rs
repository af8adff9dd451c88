//! The token endpoint's transport: a small HTTP/1.1 client that writes a form post and reads
//! its answer in the calling task, over a pool of kept-alive connections (plain TCP or rustls).
//!
//! Why not reqwest for this one call: every refresh goes through it (a heartbeat round makes
//! one per connection), and reqwest's layers (URL re-parse, redirect and timeout wrappers, a
//! connection task that hands each answer to the caller through channels) cost more CPU than
//! the rest of a refresh. Here a refresh is one write and, usually, one read, and this module
//! knows exactly whether a byte of the request left: the difference between "never sent"
//! (safe to retry) and "outcome unknown" (the token may have rotated) is the one that matters
//! under rotation.
//!
//! Scope: POST with a `Content-Length` body to `http` or `https` origins, answers framed by
//! `Content-Length`, `chunked` or the end of the connection, at most `wire::MAX_BODY` bytes. An egress
//! proxy is not handled here: with `egress.proxy` set, the client uses reqwest for every call.
//!
//! Layout: this file holds the pool and how connections are made; `stream` the connection
//! (plain or TLS) and its reuse check; `wire` one request's bytes out and its answer's framing.

mod stream;
mod wire;

use std::collections::HashMap;
use std::net::{IpAddr, SocketAddr};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use tokio::net::{TcpSocket, TcpStream};
use tokio_rustls::TlsConnector;
use url::Url;

use stream::{Connection, Stream};
use wire::exchange;

/// A kept-alive connection idle longer than this is closed rather than reused: a server that
/// closes idle connections first would otherwise race our next request.
const MAX_IDLE: Duration = Duration::from_secs(30);
/// Idle connections kept per origin.
const MAX_IDLE_PER_ORIGIN: usize = 256;

/// What went wrong, sorted by whether the request may have reached the server.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Failure {
    /// Nothing of the request was sent (no connection, TLS failed, or refused before writing).
    NotSent,
    /// The request was sent, or may have been, and no complete answer came back in time.
    TimedOut,
    /// The request was sent, or may have been, and the connection failed before a complete answer.
    Lost,
}

/// A complete answer.
#[derive(Debug)]
pub(crate) struct Answer {
    pub(crate) status: u16,
    pub(crate) body: Vec<u8>,
}

#[derive(Debug, Clone, PartialEq, Eq, Hash)]
struct Origin {
    https: bool,
    host: String,
    port: u16,
}

pub(crate) struct Transport {
    tls: TlsConnector,
    local_address: Option<IpAddr>,
    connect_timeout: Duration,
    timeout: Duration,
    user_agent: &'static str,
    /// `MAX_IDLE`; tests shorten it.
    max_idle: Duration,
    idle: Mutex<Idle>,
}

/// Kept-alive connections by origin, and when the whole pool was last swept of expired ones.
struct Idle {
    by_origin: HashMap<Origin, Vec<Connection>>,
    swept: Instant,
}

impl std::fmt::Debug for Transport {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Transport")
            .field("local_address", &self.local_address)
            .field("timeout", &self.timeout)
            .finish_non_exhaustive()
    }
}

impl Transport {
    pub(crate) fn new(
        tls: Arc<rustls::ClientConfig>,
        local_address: Option<IpAddr>,
        timeout: Duration,
        connect_timeout: Duration,
        user_agent: &'static str,
    ) -> Self {
        Self {
            tls: TlsConnector::from(tls),
            local_address,
            connect_timeout,
            timeout,
            user_agent,
            max_idle: MAX_IDLE,
            idle: Mutex::new(Idle {
                by_origin: HashMap::new(),
                swept: Instant::now(),
            }),
        }
    }

    /// Posts `form` (already `application/x-www-form-urlencoded`) to `path` on the origin of
    /// `base` and reads the answer, all within the request timeout.
    pub(crate) async fn post_form(
        &self,
        base: &Url,
        path: &str,
        form: &[u8],
    ) -> Result<Answer, Failure> {
        let origin = origin_of(base).ok_or(Failure::NotSent)?;
        let request = self.request_bytes(&origin, path, form);
        let deadline = tokio::time::Instant::now() + self.timeout;
        // A kept-alive connection the server closes as the request goes out fails before a
        // byte is written, or is refused at the first write: then, and only then, the request
        // is tried once more on a new connection.
        let mut reused = self.checkout(&origin);
        loop {
            let fresh = reused.is_none();
            let mut connection = match reused.take() {
                Some(connection) => connection,
                None => self.connect(&origin, deadline).await?,
            };
            let mut sent = false;
            let result =
                tokio::time::timeout_at(deadline, exchange(&mut connection, &request, &mut sent))
                    .await;
            return match result {
                Ok(Ok((answer, keep_alive))) => {
                    if keep_alive {
                        self.checkin(origin, connection);
                    }
                    Ok(answer)
                }
                Ok(Err(_)) if !sent && !fresh => continue,
                Ok(Err(_)) if !sent => Err(Failure::NotSent),
                Ok(Err(failure)) => Err(failure),
                Err(_) if !sent => Err(Failure::NotSent),
                Err(_) => Err(Failure::TimedOut),
            };
        }
    }

    fn request_bytes(&self, origin: &Origin, path: &str, form: &[u8]) -> Vec<u8> {
        use std::io::Write;
        let mut request = Vec::with_capacity(256 + form.len());
        let default_port = if origin.https { 443 } else { 80 };
        // Writing into a Vec cannot fail.
        let _ = write!(request, "POST {path} HTTP/1.1\r\nHost: {}", origin.host);
        if origin.port != default_port {
            let _ = write!(request, ":{}", origin.port);
        }
        let _ = write!(
            request,
            "\r\nUser-Agent: {}\r\nAccept: application/json\r\n\
             Content-Type: application/x-www-form-urlencoded\r\nContent-Length: {}\r\n\r\n",
            self.user_agent,
            form.len()
        );
        request.extend_from_slice(form);
        request
    }

    fn checkout(&self, origin: &Origin) -> Option<Connection> {
        let mut idle = self
            .idle
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        let connections = idle.by_origin.get_mut(origin)?;
        while let Some(mut connection) = connections.pop() {
            if connection.reusable(self.max_idle) {
                return Some(connection);
            }
        }
        None
    }

    fn checkin(&self, origin: Origin, mut connection: Connection) {
        connection.idle_since = Instant::now();
        let mut idle = self
            .idle
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        // Origins used once a day (a heartbeat of a few connections) would otherwise keep
        // their sockets open long after the server closed them.
        if idle.swept.elapsed() > self.max_idle {
            let max_idle = self.max_idle;
            idle.by_origin.retain(|_, connections| {
                connections.retain(|connection| connection.idle_since.elapsed() <= max_idle);
                !connections.is_empty()
            });
            idle.swept = Instant::now();
        }
        let connections = idle.by_origin.entry(origin).or_default();
        if connections.len() < MAX_IDLE_PER_ORIGIN {
            connections.push(connection);
        }
    }

    async fn connect(
        &self,
        origin: &Origin,
        deadline: tokio::time::Instant,
    ) -> Result<Connection, Failure> {
        let connect_by = deadline.min(tokio::time::Instant::now() + self.connect_timeout);
        let stream = tokio::time::timeout_at(connect_by, self.connect_tls(origin))
            .await
            .map_err(|_| Failure::NotSent)??;
        Ok(Connection {
            stream,
            buffer: Vec::with_capacity(8 << 10),
            idle_since: Instant::now(),
        })
    }

    async fn connect_tls(&self, origin: &Origin) -> Result<Stream, Failure> {
        let tcp = self.connect_tcp(origin).await?;
        if !origin.https {
            return Ok(Stream::Plain(tcp));
        }
        let name = rustls::pki_types::ServerName::try_from(unbracketed(&origin.host).to_string())
            .map_err(|_| Failure::NotSent)?;
        let tls = self
            .tls
            .connect(name, tcp)
            .await
            .map_err(|_| Failure::NotSent)?;
        Ok(Stream::Tls(Box::new(tls)))
    }

    async fn connect_tcp(&self, origin: &Origin) -> Result<TcpStream, Failure> {
        let host = unbracketed(&origin.host);
        let addresses: Vec<SocketAddr> = tokio::net::lookup_host((host, origin.port))
            .await
            .map_err(|_| Failure::NotSent)?
            // With a bind address, only addresses of its family can be reached from it.
            .filter(|address| {
                self.local_address
                    .is_none_or(|local| local.is_ipv4() == address.is_ipv4())
            })
            .collect();
        for address in addresses {
            let socket = if address.is_ipv4() {
                TcpSocket::new_v4()
            } else {
                TcpSocket::new_v6()
            };
            let Ok(socket) = socket else { continue };
            if let Some(local) = self.local_address
                && socket.bind(SocketAddr::new(local, 0)).is_err()
            {
                continue;
            }
            if let Ok(stream) = socket.connect(address).await {
                let _ = stream.set_nodelay(true);
                return Ok(stream);
            }
        }
        Err(Failure::NotSent)
    }
}

/// A host as DNS and TLS want it: an IPv6 literal without its URL brackets.
fn unbracketed(host: &str) -> &str {
    host.strip_prefix('[')
        .and_then(|inner| inner.strip_suffix(']'))
        .unwrap_or(host)
}

fn origin_of(url: &Url) -> Option<Origin> {
    let https = match url.scheme() {
        "https" => true,
        "http" => false,
        _ => return None,
    };
    Some(Origin {
        https,
        host: url.host_str()?.to_string(),
        port: url.port_or_known_default()?,
    })
}

#[cfg(test)]
mod tests;
