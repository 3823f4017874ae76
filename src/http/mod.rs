//! The monitoring HTTP server: MySQL Router's REST API (`/api/20190715/...`) and our
//! Prometheus `/metrics`.
//!
//! It reads the router only through [`crate::stats::Source`] snapshots; it never touches
//! a connection. [`start`] does what MySQL Router's http plugins do at init (read the
//! password files, load the certificate, bind the port; each failure is MySQL Router's
//! message) and then serves on a thread of its own ([`server`]).

pub mod api;
pub mod auth;
pub mod metrics;
pub mod passwd;
pub mod server;
pub mod swagger;
pub mod time;
pub mod tls;

use std::net::{SocketAddr, ToSocketAddrs};
use std::sync::Arc;

use socket2::{Domain, Socket, Type};
use tokio::sync::watch;

use crate::config::HttpConfig;
use crate::stats::Source;
pub use api::RouterInfo;

/// Why the HTTP server did not start; `Display` is MySQL Router's message.
#[derive(Debug, thiserror::Error)]
pub enum StartError {
    #[error(transparent)]
    Backend(#[from] auth::BackendError),
    #[error(transparent)]
    Tls(#[from] tls::TlsError),
    #[error("resolving {0} failed: {1}")]
    Resolve(String, String),
    #[error("bind({0}) failed: {1}")]
    Bind(String, String),
    #[error("cannot start the HTTP server thread: {0}")]
    Thread(String),
}

/// The running server; [`HttpServer::stop`] ends it.
pub struct HttpServer {
    pub local_addr: SocketAddr,
    stop: watch::Sender<bool>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl HttpServer {
    pub fn stop(mut self) {
        let _ = self.stop.send(true);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

fn bind(host: &str, port: u16) -> Result<std::net::TcpListener, StartError> {
    let addrs: Vec<SocketAddr> = match host.parse::<std::net::IpAddr>() {
        Ok(ip) => vec![SocketAddr::new(ip, port)],
        Err(_) => (host, port)
            .to_socket_addrs()
            .map_err(|e| {
                let msg = e.to_string();
                let msg = msg
                    .strip_prefix("failed to lookup address information: ")
                    .unwrap_or(&msg)
                    .to_string();
                StartError::Resolve(host.to_string(), msg)
            })?
            .collect(),
    };
    // MySQL Router binds the first address the name resolves to.
    let Some(addr) = addrs.first().copied() else {
        return Err(StartError::Resolve(
            host.into(),
            "resolved to nothing".into(),
        ));
    };
    let bind_err =
        |e: std::io::Error| StartError::Bind(addr.to_string(), crate::logging::strerror(&e));
    let s = Socket::new(Domain::for_address(addr), Type::STREAM, None).map_err(bind_err)?;
    s.set_reuse_address(true).map_err(bind_err)?;
    s.set_nonblocking(true).map_err(bind_err)?;
    s.bind(&addr.into()).map_err(bind_err)?;
    s.listen(128).map_err(bind_err)?;
    Ok(s.into())
}

/// Loads the realms and the certificate, binds, and starts serving.
pub fn start(
    cfg: &HttpConfig,
    source: Arc<dyn Source>,
    info: RouterInfo,
) -> Result<HttpServer, StartError> {
    let realms = auth::Realms::load(&cfg.realms, &cfg.backends)?;
    for b in cfg.backends.iter().filter(|b| b.filename.is_none()) {
        tracing::warn!(
            target: "http_auth_backend",
            "[http_auth_backend:{}] backend=metadata_cache has no accounts in this router (no metadata cache): every login to its realms fails",
            b.key
        );
    }
    let tls = cfg.server.tls.as_ref().map(tls::acceptor).transpose()?;
    let listener = bind(&cfg.server.bind_address, cfg.server.port)?;
    let local_addr = listener
        .local_addr()
        .map_err(|e| StartError::Bind(cfg.server.bind_address.clone(), e.to_string()))?;
    tracing::info!(
        target: "http_server",
        "listening on {}://{}:{}",
        if tls.is_some() { "https" } else { "http" },
        cfg.server.bind_address,
        local_addr.port()
    );
    let api = Arc::new(api::Api::new(cfg.clone(), realms, source, info));
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .max_blocking_threads(4)
        .build()
        .map_err(|e| StartError::Thread(e.to_string()))?;
    let (stop, stop_rx) = watch::channel(false);
    let thread = std::thread::Builder::new()
        .name("http".into())
        .spawn(move || {
            runtime.block_on(server::run(listener, tls, api, stop_rx));
            runtime.shutdown_timeout(std::time::Duration::from_millis(200));
        })
        .map_err(|e| StartError::Thread(e.to_string()))?;
    Ok(HttpServer {
        local_addr,
        stop,
        thread: Some(thread),
    })
}
