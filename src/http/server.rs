//! The HTTP(S) listener: its own thread and runtime, so nothing a monitoring client does
//! (or a hostile one: garbage, huge headers, slow or many connections) can delay a
//! routed connection or the route managers. Limits: 1024 connections at once (more are
//! closed at accept), 64 KiB of request head (hyper answers 431 beyond), 10 s to send a
//! request head and to finish a TLS handshake, 120 s per connection.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use http_body_util::Full;
use hyper::body::{Bytes, Incoming};
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper_util::rt::{TokioIo, TokioTimer};
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::sync::{watch, Semaphore};

use super::api::{Api, Request};

const MAX_CONNECTIONS: usize = 1024;
const MAX_HEAD: usize = 64 * 1024;
const HEAD_TIMEOUT: Duration = Duration::from_secs(10);
const CONNECTION_LIFETIME: Duration = Duration::from_secs(120);

fn respond(api: &Api, req: &hyper::Request<Incoming>) -> hyper::Response<Full<Bytes>> {
    let h = |name: &str| req.headers().get(name).and_then(|v| v.to_str().ok());
    let reply = api.handle(&Request {
        method: req.method().as_str(),
        path: req.uri().path(),
        query: req.uri().query(),
        authorization: h("authorization"),
        if_modified_since: h("if-modified-since"),
    });
    let mut resp = hyper::Response::new(Full::new(Bytes::from(reply.body)));
    *resp.status_mut() = hyper::StatusCode::from_u16(reply.status)
        .unwrap_or(hyper::StatusCode::INTERNAL_SERVER_ERROR);
    resp.extensions_mut()
        .insert(hyper::ext::ReasonPhrase::from_static(
            reply.reason.as_bytes(),
        ));
    for (k, v) in reply.headers {
        if let Ok(v) = hyper::header::HeaderValue::from_str(&v) {
            resp.headers_mut().append(k, v);
        }
    }
    resp
}

/// Serves HTTP/1.1 on one accepted connection (plain or TLS) until it closes or its
/// lifetime ends. Public for the HTTP fuzz target (tests/fuzz.rs), which feeds it raw
/// bytes over in-memory streams.
pub async fn serve_connection<S>(io: S, api: Arc<Api>)
where
    S: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    let service = service_fn(move |req: hyper::Request<Incoming>| {
        let api = api.clone();
        async move {
            // Password checks can take milliseconds (KDF rounds): off the accept thread.
            let resp = tokio::task::spawn_blocking(move || respond(&api, &req))
                .await
                .unwrap_or_else(|_| {
                    let mut r = hyper::Response::new(Full::new(Bytes::new()));
                    *r.status_mut() = hyper::StatusCode::INTERNAL_SERVER_ERROR;
                    r
                });
            Ok::<_, std::convert::Infallible>(resp)
        }
    });
    let conn = http1::Builder::new()
        .timer(TokioTimer::new())
        .header_read_timeout(HEAD_TIMEOUT)
        .max_buf_size(MAX_HEAD)
        .keep_alive(true)
        // A client may shut down its write side once its request is sent (`nc -N`,
        // scripts); MySQL Router still answers it, so must we (hyper's default drops
        // the request at the read side's end).
        .half_close(true)
        .title_case_headers(true)
        .serve_connection(TokioIo::new(io), service);
    let _ = tokio::time::timeout(CONNECTION_LIFETIME, conn).await;
}

/// Accepts until `stop` turns true.
pub async fn run(
    listener: std::net::TcpListener,
    tls: Option<tokio_rustls::TlsAcceptor>,
    api: Arc<Api>,
    mut stop: watch::Receiver<bool>,
) {
    let listener = match tokio::net::TcpListener::from_std(listener) {
        Ok(l) => l,
        Err(e) => {
            tracing::error!(target: "http_server", "cannot use the listening socket: {e}");
            return;
        }
    };
    let slots = Arc::new(Semaphore::new(MAX_CONNECTIONS));
    loop {
        let accepted = tokio::select! {
            r = listener.accept() => r,
            _ = stop.wait_for(|s| *s) => return,
        };
        let (sock, _peer): (tokio::net::TcpStream, SocketAddr) = match accepted {
            Ok(a) => a,
            Err(e) => {
                // EMFILE and friends: back off instead of spinning.
                tracing::warn!(target: "http_server", "accept() failed: {}", crate::logging::strerror(&e));
                tokio::time::sleep(Duration::from_millis(100)).await;
                continue;
            }
        };
        let Ok(permit) = slots.clone().try_acquire_owned() else {
            drop(sock);
            continue;
        };
        let api = api.clone();
        let tls = tls.clone();
        tokio::spawn(async move {
            let _permit = permit;
            match tls {
                None => serve_connection(sock, api).await,
                Some(acceptor) => {
                    if let Ok(Ok(s)) =
                        tokio::time::timeout(HEAD_TIMEOUT, acceptor.accept(sock)).await
                    {
                        serve_connection(s, api).await;
                    }
                }
            }
        });
    }
}
