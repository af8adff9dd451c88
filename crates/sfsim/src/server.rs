//! The network side: one 127.0.0.1:0 listener per host (production login, sandbox login, each
//! org's My Domain), our own accept loop over hyper so a handler can learn its TCP peer and drop
//! its connection without answering, and request recording. It routes; it must not decide any
//! OAuth or REST outcome.

use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};

use axum::Router;
use axum::body::Body;
use axum::http::Request;
use hyper::body::Incoming;
use hyper_util::rt::TokioIo;
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{Notify, watch};
use tokio::task::JoinHandle;
use tower::ServiceExt;

use crate::clock::SimClock;
use crate::model::{Org, RecordedRequest};
use crate::state::{self, State};

/// Everything shared by all hosts.
#[derive(Debug)]
pub(crate) struct Inner {
    pub(crate) state: Mutex<State>,
    pub(crate) clock: SimClock,
    pub(crate) production_url: String,
    pub(crate) sandbox_url: String,
    pub(crate) shutdown: watch::Sender<bool>,
    pub(crate) tasks: Mutex<Vec<JoinHandle<()>>>,
    /// Bumped by `Sim::release_holds`; held requests wait for a bump after they fired.
    pub(crate) holds: watch::Sender<u64>,
}

impl Inner {
    pub(crate) fn state(&self) -> std::sync::MutexGuard<'_, State> {
        state::lock(&self.state)
    }

    /// The release generation now; a hold that fired now waits for a later one.
    pub(crate) fn hold_generation(&self) -> u64 {
        *self.holds.borrow()
    }

    /// Waits until `release_holds` is called after `fired_at`, or the sim shuts down.
    pub(crate) async fn wait_release(&self, fired_at: u64) {
        let mut releases = self.holds.subscribe();
        let mut shutdown = self.shutdown.subscribe();
        tokio::select! {
            _ = releases.wait_for(|generation| *generation > fired_at) => {}
            _ = shutdown.wait_for(|stopped| *stopped) => {}
        }
    }
}

/// Which Salesforce host a listener stands for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum HostKind {
    /// login.salesforce.com
    Production,
    /// test.salesforce.com
    Sandbox,
    /// An org's My Domain (holds the org id).
    MyDomain(String),
}

#[derive(Debug, Clone)]
pub(crate) struct Host {
    pub(crate) kind: HostKind,
    pub(crate) base_url: String,
}

impl Host {
    /// Whether users of this org may log in here.
    pub(crate) fn serves(&self, org: &Org) -> bool {
        match &self.kind {
            HostKind::Production => !org.sandbox,
            HostKind::Sandbox => org.sandbox,
            HostKind::MyDomain(org_id) => *org_id == org.org_id,
        }
    }
}

/// Handler state: the shared world plus the host the request arrived on.
#[derive(Debug, Clone)]
pub(crate) struct AppState {
    pub(crate) sim: Arc<Inner>,
    pub(crate) host: Arc<Host>,
}

/// Per-connection facts, put in every request's extensions.
#[derive(Debug, Clone)]
pub(crate) struct Connection {
    pub(crate) peer: SocketAddr,
    kill: Arc<Notify>,
}

impl Connection {
    /// Closes this TCP connection with no HTTP response; never returns.
    pub(crate) async fn drop_without_response(&self) -> axum::response::Response {
        self.kill.notify_one();
        std::future::pending::<()>().await;
        axum::response::Response::new(Body::empty())
    }
}

/// Binds a fresh loopback listener and returns it with its base URL.
pub(crate) async fn bind() -> std::io::Result<(TcpListener, String)> {
    let listener = TcpListener::bind(("127.0.0.1", 0)).await?;
    let address = listener.local_addr()?;
    Ok((listener, format!("http://{address}")))
}

/// Salesforce's `Date` header comes from Salesforce's clock: stamp the simulated one, so clock
/// skew checks see the time travel.
fn stamp_date(mut response: axum::response::Response, now_ms: i64) -> axum::response::Response {
    let seconds = u64::try_from(now_ms / 1000).unwrap_or(0);
    let when = std::time::UNIX_EPOCH + std::time::Duration::from_secs(seconds);
    if let Ok(value) = axum::http::HeaderValue::from_str(&httpdate::fmt_http_date(when)) {
        response
            .headers_mut()
            .insert(axum::http::header::DATE, value);
    }
    response
}

/// Starts serving a bound listener as `kind`.
pub(crate) fn serve(inner: &Arc<Inner>, listener: TcpListener, host: Host) {
    let app_state = AppState {
        sim: Arc::clone(inner),
        host: Arc::new(host.clone()),
    };
    let clock_owner = Arc::clone(inner);
    let router = crate::routes::router(&host.kind)
        .with_state(app_state)
        .layer(axum::middleware::map_response(move |response| {
            let now_ms = clock_owner.clock.now_ms();
            async move { stamp_date(response, now_ms) }
        }));
    let shutdown = inner.shutdown.subscribe();
    let task = tokio::spawn(accept_loop(
        listener,
        router,
        Arc::clone(inner),
        host.base_url,
        shutdown,
    ));
    inner
        .tasks
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner())
        .push(task);
}

async fn accept_loop(
    listener: TcpListener,
    router: Router,
    inner: Arc<Inner>,
    base_url: String,
    mut shutdown: watch::Receiver<bool>,
) {
    loop {
        let accepted = tokio::select! {
            accepted = listener.accept() => accepted,
            _ = shutdown.changed() => return,
        };
        let Ok((stream, peer)) = accepted else {
            continue;
        };
        tokio::spawn(serve_connection(
            stream,
            peer,
            router.clone(),
            Arc::clone(&inner),
            base_url.clone(),
            shutdown.clone(),
        ));
    }
}

async fn serve_connection(
    stream: TcpStream,
    peer: SocketAddr,
    router: Router,
    inner: Arc<Inner>,
    base_url: String,
    mut shutdown: watch::Receiver<bool>,
) {
    let kill = Arc::new(Notify::new());
    let connection = Connection {
        peer,
        kill: Arc::clone(&kill),
    };
    let service = hyper::service::service_fn(move |request: Request<Incoming>| {
        let mut request = request.map(Body::new);
        record(&inner, &base_url, &request, peer);
        request.extensions_mut().insert(connection.clone());
        let router = router.clone();
        async move { Ok::<_, Infallible>(router.oneshot(request).await.into_ok_response()) }
    });
    let serving =
        hyper::server::conn::http1::Builder::new().serve_connection(TokioIo::new(stream), service);
    tokio::select! {
        _ = serving => {}
        _ = kill.notified() => {}
        _ = shutdown.changed() => {}
    }
}

trait IntoOkResponse {
    fn into_ok_response(self) -> axum::response::Response;
}

impl IntoOkResponse for Result<axum::response::Response, Infallible> {
    fn into_ok_response(self) -> axum::response::Response {
        match self {
            Ok(response) => response,
            Err(never) => match never {},
        }
    }
}

fn record(inner: &Inner, base_url: &str, request: &Request<Body>, peer: SocketAddr) {
    let headers = request
        .headers()
        .iter()
        .map(|(name, value)| {
            (
                name.as_str().to_owned(),
                String::from_utf8_lossy(value.as_bytes()).into_owned(),
            )
        })
        .collect();
    let path_and_query = request
        .uri()
        .path_and_query()
        .map(|pq| pq.as_str().to_owned())
        .unwrap_or_else(|| "/".to_owned());
    inner.state().record_request(RecordedRequest {
        host: base_url.to_owned(),
        method: request.method().as_str().to_owned(),
        path_and_query,
        headers,
        peer,
    });
}
