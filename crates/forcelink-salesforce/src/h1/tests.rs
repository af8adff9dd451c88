//! The token transport against scripted servers on loopback: framing, keep-alive and its
//! expiry, what counts as sent, timeouts, the bind address, and TLS.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::sync::atomic::{AtomicUsize, Ordering};

use tokio::io::{AsyncRead, AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpListener;

use super::wire::MAX_BODY;
use super::*;

fn transport(timeout: Duration, local: Option<IpAddr>) -> Transport {
    let _ = rustls::crypto::aws_lc_rs::default_provider().install_default();
    let tls = rustls::ClientConfig::builder()
        .with_root_certificates(rustls::RootCertStore::empty())
        .with_no_client_auth();
    Transport::new(Arc::new(tls), local, timeout, timeout, "forcelink-test")
}

/// A loopback listener on a free port and its `http` URL.
async fn listen() -> (TcpListener, Url) {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = Url::parse(&format!("http://{}", listener.local_addr().unwrap())).unwrap();
    (listener, url)
}

/// Reads one request (head and `Content-Length` body) off `stream`; `None` at its end.
async fn read_request<S: AsyncRead + Unpin>(stream: &mut S) -> Option<(String, Vec<u8>)> {
    let mut buffer = Vec::new();
    loop {
        if let Some(end) = buffer.windows(4).position(|w| w == b"\r\n\r\n") {
            let head = String::from_utf8(buffer[..end].to_vec()).unwrap();
            let length = head
                .lines()
                .find_map(|line| line.strip_prefix("Content-Length: "))
                .map_or(0, |value| value.parse::<usize>().unwrap());
            let mut body = buffer[end + 4..].to_vec();
            while body.len() < length {
                let mut chunk = [0u8; 4096];
                let n = stream.read(&mut chunk).await.unwrap();
                assert!(n > 0, "request body cut short");
                body.extend_from_slice(&chunk[..n]);
            }
            return Some((head, body));
        }
        let mut chunk = [0u8; 4096];
        let n = stream.read(&mut chunk).await.ok()?;
        if n == 0 {
            return None;
        }
        buffer.extend_from_slice(&chunk[..n]);
    }
}

/// A server that answers each request on each connection with `answer(request number)`,
/// counting connections; an answer of `None` closes the connection without answering.
async fn server(
    answer: impl Fn(usize) -> Option<Vec<u8>> + Send + Sync + 'static,
) -> (Url, Arc<AtomicUsize>, Arc<Mutex<Vec<(String, Vec<u8>)>>>) {
    let (listener, url) = listen().await;
    let connections = Arc::new(AtomicUsize::new(0));
    let requests = Arc::new(Mutex::new(Vec::new()));
    let answer = Arc::new(answer);
    let (counted, seen) = (connections.clone(), requests.clone());
    tokio::spawn(async move {
        loop {
            let Ok((mut stream, _)) = listener.accept().await else {
                return;
            };
            counted.fetch_add(1, Ordering::SeqCst);
            let (answer, seen) = (answer.clone(), seen.clone());
            tokio::spawn(async move {
                while let Some(request) = read_request(&mut stream).await {
                    let number = {
                        let mut seen = seen.lock().unwrap();
                        seen.push(request);
                        seen.len()
                    };
                    match answer(number) {
                        Some(bytes) => stream.write_all(&bytes).await.unwrap(),
                        None => return,
                    }
                }
            });
        }
    });
    (url, connections, requests)
}

fn ok_json(body: &str) -> Vec<u8> {
    format!(
        "HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\r\n{body}",
        body.len()
    )
    .into_bytes()
}

#[tokio::test]
async fn posts_the_form_and_reuses_the_connection() {
    let (url, connections, requests) = server(|n| Some(ok_json(&format!("{{\"n\":{n}}}")))).await;
    let transport = transport(Duration::from_secs(10), None);
    for expected in 1..=3 {
        let answer = transport
            .post_form(
                &url,
                "/services/oauth2/token",
                b"grant_type=refresh_token&a=b%20c",
            )
            .await
            .unwrap();
        assert_eq!(answer.status, 200);
        assert_eq!(answer.body, format!("{{\"n\":{expected}}}").into_bytes());
    }
    assert_eq!(connections.load(Ordering::SeqCst), 1, "kept alive");
    let requests = requests.lock().unwrap();
    let (head, body) = &requests[0];
    assert!(
        head.starts_with("POST /services/oauth2/token HTTP/1.1\r\n"),
        "{head}"
    );
    let host = format!("Host: 127.0.0.1:{}", url.port().unwrap());
    assert!(head.contains(&host), "{head}");
    assert!(head.contains("Content-Type: application/x-www-form-urlencoded"));
    assert!(head.contains("Accept: application/json"));
    assert_eq!(body, b"grant_type=refresh_token&a=b%20c");
}

#[tokio::test]
async fn reads_chunked_interim_and_close_delimited_answers() {
    let (url, connections, _) = server(|n| {
        Some(match n {
            // 100 Continue first, then a chunked answer with an extension and a trailer.
            1 => b"HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 400 Bad Request\r\nTransfer-Encoding: chunked\r\n\r\n\
                   5;ext=1\r\n{\"err\r\n7\r\nor\":1}\n\r\n0\r\nX-Trailer: t\r\n\r\n"
                .to_vec(),
            // Connection: close is honoured: the next request needs a new connection.
            2 => b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\nConnection: close\r\n\r\n{}".to_vec(),
            _ => ok_json("{}"),
        })
    })
    .await;
    let transport = transport(Duration::from_secs(10), None);
    let first = transport.post_form(&url, "/t", b"x=1").await.unwrap();
    assert_eq!(first.status, 400);
    assert_eq!(first.body, b"{\"error\":1}\n");
    let second = transport.post_form(&url, "/t", b"x=2").await.unwrap();
    assert_eq!((second.status, second.body.as_slice()), (200, &b"{}"[..]));
    assert_eq!(connections.load(Ordering::SeqCst), 1);
    let third = transport.post_form(&url, "/t", b"x=3").await.unwrap();
    assert_eq!(third.status, 200);
    assert_eq!(
        connections.load(Ordering::SeqCst),
        2,
        "a closed connection is not reused"
    );
}

#[tokio::test]
async fn an_answer_cut_short_is_lost_not_unsent() {
    // The server reads the request and closes: the request left, the outcome is unknown.
    let (url, _, requests) = server(|_| None).await;
    let transport = transport(Duration::from_secs(10), None);
    let failure = transport.post_form(&url, "/t", b"x=1").await.unwrap_err();
    assert_eq!(failure, Failure::Lost);
    assert_eq!(requests.lock().unwrap().len(), 1);

    // Half an answer, then the end of the connection, is no answer either.
    let (listener, url) = listen().await;
    tokio::spawn(async move {
        let (mut stream, _) = listener.accept().await.unwrap();
        read_request(&mut stream).await.unwrap();
        stream
            .write_all(b"HTTP/1.1 200 OK\r\nContent-Length: 100\r\n\r\n{\"access")
            .await
            .unwrap();
    });
    let failure = transport.post_form(&url, "/t", b"x=1").await.unwrap_err();
    assert_eq!(failure, Failure::Lost);
}

#[tokio::test]
async fn a_silent_server_times_out_after_the_request_left() {
    let (listener, url) = listen().await;
    let (got, mut request_seen) = tokio::sync::mpsc::channel(1);
    tokio::spawn(async move {
        let (mut stream, _) = listener.accept().await.unwrap();
        let request = read_request(&mut stream).await;
        got.send(request.is_some()).await.unwrap();
        // Never answers; holds the connection open.
        let mut rest = Vec::new();
        let _ = stream.read_to_end(&mut rest).await;
    });
    let transport = transport(Duration::from_millis(300), None);
    let failure = transport.post_form(&url, "/t", b"x=1").await.unwrap_err();
    assert_eq!(failure, Failure::TimedOut);
    assert_eq!(request_seen.recv().await, Some(true));
}

#[tokio::test]
async fn nothing_listening_is_not_sent() {
    let (listener, url) = listen().await;
    drop(listener);
    let transport = transport(Duration::from_secs(5), None);
    let failure = transport.post_form(&url, "/t", b"x=1").await.unwrap_err();
    assert_eq!(failure, Failure::NotSent);
}

#[tokio::test]
async fn a_kept_alive_connection_closed_by_the_server_is_replaced_before_sending() {
    // The server answers once per connection, then closes it as idle servers do.
    let (listener, url) = listen().await;
    let (closed, mut closed_rx) = tokio::sync::mpsc::channel(4);
    let accepted = Arc::new(AtomicUsize::new(0));
    let counted = accepted.clone();
    tokio::spawn(async move {
        loop {
            let (mut stream, _) = listener.accept().await.unwrap();
            counted.fetch_add(1, Ordering::SeqCst);
            read_request(&mut stream).await.unwrap();
            stream.write_all(&ok_json("{}")).await.unwrap();
            stream.shutdown().await.unwrap();
            drop(stream);
            closed.send(()).await.unwrap();
        }
    });
    let transport = transport(Duration::from_secs(10), None);
    transport.post_form(&url, "/t", b"x=1").await.unwrap();
    closed_rx.recv().await.unwrap();
    // Wait until the close has reached our side: the pooled connection reads its end.
    let reaped = async {
        loop {
            let gone = {
                let mut idle = transport.idle.lock().unwrap();
                idle.by_origin
                    .values_mut()
                    .flat_map(|connections| connections.iter_mut())
                    .all(|connection| !connection.reusable(MAX_IDLE))
            };
            if gone {
                return;
            }
            tokio::task::yield_now().await;
        }
    };
    tokio::time::timeout(Duration::from_secs(5), reaped)
        .await
        .unwrap();
    let answer = transport.post_form(&url, "/t", b"x=2").await.unwrap();
    assert_eq!(answer.status, 200);
    assert_eq!(accepted.load(Ordering::SeqCst), 2);
}

#[tokio::test]
async fn connections_idle_too_long_are_neither_reused_nor_kept() {
    let (url, connections, _) = server(|_| Some(ok_json("{}"))).await;
    let (other, _, _) = server(|_| Some(ok_json("{}"))).await;
    let mut transport = transport(Duration::from_secs(10), None);
    transport.max_idle = Duration::ZERO;
    transport.post_form(&other, "/t", b"x=0").await.unwrap();
    for _ in 0..2 {
        transport.post_form(&url, "/t", b"x=1").await.unwrap();
    }
    assert_eq!(
        connections.load(Ordering::SeqCst),
        2,
        "an expired connection is not reused"
    );
    // Each check-in sweeps the pool: the other origin's expired connection is gone.
    let idle = transport.idle.lock().unwrap();
    let other_origin = origin_of(&other).unwrap();
    assert!(!idle.by_origin.contains_key(&other_origin));
    assert_eq!(idle.by_origin.values().map(Vec::len).sum::<usize>(), 1);
}

#[tokio::test]
async fn an_oversized_answer_is_refused() {
    let (url, _, _) = server(|_| {
        Some(
            format!(
                "HTTP/1.1 200 OK\r\nContent-Length: {}\r\n\r\n",
                MAX_BODY + 1
            )
            .into_bytes(),
        )
    })
    .await;
    let transport = transport(Duration::from_secs(10), None);
    let failure = transport.post_form(&url, "/t", b"x=1").await.unwrap_err();
    assert_eq!(failure, Failure::Lost);
}

#[tokio::test]
async fn sends_from_the_bound_local_address() {
    let (listener, url) = listen().await;
    let (peer, mut peer_rx) = tokio::sync::mpsc::channel(1);
    tokio::spawn(async move {
        let (mut stream, address) = listener.accept().await.unwrap();
        peer.send(address.ip()).await.unwrap();
        read_request(&mut stream).await.unwrap();
        stream.write_all(&ok_json("{}")).await.unwrap();
    });
    let local: IpAddr = "127.0.0.2".parse().unwrap();
    let transport = transport(Duration::from_secs(10), Some(local));
    transport.post_form(&url, "/t", b"x=1").await.unwrap();
    assert_eq!(peer_rx.recv().await, Some(local));
}

#[tokio::test]
async fn speaks_tls_to_a_trusted_server_and_refuses_an_untrusted_one() {
    let _ = rustls::crypto::aws_lc_rs::default_provider().install_default();
    let certified = rcgen::generate_simple_self_signed(vec!["localhost".to_string()]).unwrap();
    let cert = certified.cert.der().clone();
    let key = rustls::pki_types::PrivateKeyDer::Pkcs8(certified.signing_key.serialize_der().into());
    let server_config = rustls::ServerConfig::builder()
        .with_no_client_auth()
        .with_single_cert(vec![cert.clone()], key)
        .unwrap();
    let acceptor = tokio_rustls::TlsAcceptor::from(Arc::new(server_config));
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    tokio::spawn(async move {
        loop {
            let (stream, _) = listener.accept().await.unwrap();
            let acceptor = acceptor.clone();
            tokio::spawn(async move {
                let Ok(mut tls) = acceptor.accept(stream).await else {
                    return;
                };
                while let Some((_, body)) = read_request(&mut tls).await {
                    let answer = format!("{{\"echo\":\"{}\"}}", String::from_utf8(body).unwrap());
                    tls.write_all(&ok_json(&answer)).await.unwrap();
                }
            });
        }
    });
    let url = Url::parse(&format!("https://localhost:{port}")).unwrap();

    let mut roots = rustls::RootCertStore::empty();
    roots.add(cert).unwrap();
    let trusting = rustls::ClientConfig::builder()
        .with_root_certificates(roots)
        .with_no_client_auth();
    let transport = Transport::new(
        Arc::new(trusting),
        None,
        Duration::from_secs(10),
        Duration::from_secs(10),
        "forcelink-test",
    );
    let answer = transport.post_form(&url, "/t", b"x=1").await.unwrap();
    assert_eq!(answer.body, br#"{"echo":"x=1"}"#);
    let again = transport.post_form(&url, "/t", b"x=2").await.unwrap();
    assert_eq!(again.body, br#"{"echo":"x=2"}"#);

    // Without the root, the handshake fails and nothing is sent.
    let failure = self::transport(Duration::from_secs(10), None)
        .post_form(&url, "/t", b"x=3")
        .await
        .unwrap_err();
    assert_eq!(failure, Failure::NotSent);
}
