//! One [`Route`] per `[routing:*]` section: its listeners, its admission counters, and
//! the life of each client connection (admit → choose → connect → relay → close).
//!
//! Destination choice is [`policy`] (pure); destination health is the shared
//! [`Quarantine`]; bytes are moved by [`crate::relay`]. Routes with a `role` also read
//! the [`Monitor`]'s view of each destination ([`roles`] follows it for them).
//!
//! Threads: a route's *manager* task (on the main runtime) owns the listening sockets
//! and decides when they are open. Each I/O worker (one single-threaded runtime per
//! core) accepts on its own duplicate of those sockets and runs the connections it
//! accepted to the end, so a connection never changes thread.

mod accept_errors;
pub mod admission;
pub mod connect;
pub mod listener;
pub mod policy;
mod roles;
mod session;
mod shed;
mod terminated;
pub mod view;

use std::net::IpAddr;
use std::os::fd::{AsFd, AsRawFd, OwnedFd};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use tokio::io::{AsyncRead, AsyncWrite};
use tokio::net::{TcpListener, UnixListener};
use tokio::sync::watch;

use crate::config::{RouteConfig, Strategy};
use crate::monitor::Monitor;
use crate::protocol::errors;
use crate::quarantine::Quarantine;
use crate::session::terminate::ServerSide;
use crate::stats::{self, Connections, DestStats, Refused, RouteStats};
use accept_errors::AcceptErrors;
use admission::{Admission, Refusal};
use policy::Policy;
use session::refuse;

/// State shared by all routes of the process.
pub struct Shared {
    pub quarantine: Arc<Quarantine>,
    /// Active client connections of the whole process.
    pub total: AtomicU64,
    pub max_total: u64,
    /// Turns true when the routes must stop accepting.
    pub stop_accepting: watch::Receiver<bool>,
    /// Turns true when active connections must be closed.
    pub close_all: watch::Receiver<bool>,
    /// The role monitor, when `[monitor]` is configured.
    pub monitor: Option<Arc<Monitor>>,
}

pub struct Route {
    pub cfg: RouteConfig,
    /// The bound listening sockets while the route accepts, `None` while it does not.
    listening: watch::Sender<Option<Arc<Bound>>>,
    admission: Admission,
    policy: Policy,
    /// `host:port` of each destination, the quarantine keys.
    keys: Vec<String>,
    /// Active connections through this route per destination (least-connections, and
    /// the counts of the session-closing log lines).
    active: Vec<AtomicU64>,
    /// Per destination: bumped to close this route's sessions on it (role routes).
    kick: Vec<watch::Sender<u64>>,
    shared: Arc<Shared>,
    /// TLS contexts when the route terminates TLS (`client_ssl_mode` not PASSTHROUGH).
    tls: Option<Arc<crate::session::tls::Contexts>>,
    /// Counters for monitoring (relaxed atomics, bumped once per connection).
    stats: RouteStats,
    dest_stats: Vec<DestStats>,
    connections: Connections,
    /// accept() failures not yet logged (one line per interval, with a count).
    accept_errors: Mutex<AcceptErrors>,
    /// Set while `accept_errors` holds unreported failures, so that a working accept()
    /// looks at the book only then.
    accept_errors_pending: AtomicBool,
}

/// The bound listening sockets of one route (non-blocking).
#[derive(Default)]
struct Bound {
    tcp: Option<std::net::TcpListener>,
    unix: Option<std::os::unix::net::UnixListener>,
}

impl Route {
    pub fn new(
        cfg: RouteConfig,
        shared: Arc<Shared>,
        tls: Option<Arc<crate::session::tls::Contexts>>,
    ) -> Arc<Route> {
        let keys: Vec<String> = cfg.destinations.iter().map(|d| d.address()).collect();
        shed::reserve();
        for d in &cfg.destinations {
            shared.quarantine.register(d);
        }
        Arc::new(Route {
            listening: watch::channel(None).0,
            admission: Admission::new(cfg.max_connections as u64, cfg.max_connect_errors),
            policy: Policy::new(cfg.strategy, keys.len()),
            active: keys.iter().map(|_| AtomicU64::new(0)).collect(),
            kick: keys.iter().map(|_| watch::channel(0).0).collect(),
            dest_stats: keys.iter().map(|_| DestStats::default()).collect(),
            keys,
            shared,
            cfg,
            tls,
            stats: RouteStats::default(),
            connections: Connections::default(),
            accept_errors: Mutex::new(AcceptErrors::default()),
            accept_errors_pending: AtomicBool::new(false),
        })
    }

    /// A copy of the route's state for monitoring; with its live connections if asked.
    pub fn snapshot(&self, with_connections: bool) -> stats::RouteSnapshot {
        let mut counters = self.stats.values();
        (counters.bytes_up, counters.bytes_down) = self.connections.bytes();
        let states = self.shared.quarantine.states(&self.keys);
        // Role routes show what the monitor last saw of each destination.
        let roles = match (&self.cfg.roles, &self.shared.monitor) {
            (Some(_), Some(m)) => m.snapshot(),
            _ => Vec::new(),
        };
        let role_of = |key: &str| roles.iter().find(|r| r.address == key);
        let destinations = self
            .cfg
            .destinations
            .iter()
            .zip(states)
            .zip(&self.dest_stats)
            .map(|((d, (quarantined, entries)), ds)| {
                let seen = role_of(&d.address());
                stats::DestSnapshot {
                    host: d.host.clone(),
                    port: d.port,
                    quarantined,
                    quarantine_entries: entries,
                    switches_to: ds.switches_to.load(std::sync::atomic::Ordering::Relaxed),
                    connect_latency: ds.latency(),
                    role: seen.map(|r| r.role.name().to_string()),
                    replication_lag: seen.and_then(|r| r.lag),
                }
            })
            .collect();
        stats::RouteSnapshot {
            config: self.cfg.clone(),
            accepting: self.listening.borrow().is_some(),
            active: self.admission.active(),
            counters,
            blocked_hosts: self.admission.blocked_hosts(),
            destinations,
            connections: if with_connections {
                self.connections.snapshot()
            } else {
                Vec::new()
            },
        }
    }

    fn endpoints(&self) -> Vec<String> {
        let mut v = Vec::new();
        if let Some((h, p)) = &self.cfg.bind {
            v.push(crate::config::addr::join_host_port(h, *p));
        }
        if let Some(s) = &self.cfg.socket {
            v.push(s.display().to_string());
        }
        v
    }

    fn bind(&self) -> Result<Bound, listener::BindError> {
        let mut l = Bound::default();
        if let Some((h, p)) = &self.cfg.bind {
            l.tcp = Some(listener::bind_tcp(&self.cfg.section, h, *p)?);
        }
        if let Some(path) = &self.cfg.socket {
            l.unix = Some(listener::bind_unix(&self.cfg.section, path)?);
        }
        for e in self.endpoints() {
            tracing::info!(
                target: "routing",
                "Start accepting connections for routing {} listening on '{e}'",
                self.cfg.section
            );
        }
        Ok(l)
    }

    fn log_stop_accepting(&self) {
        for e in self.endpoints() {
            tracing::info!(
                target: "routing",
                "Stop accepting connections for routing {} listening on {e}",
                self.cfg.section
            );
        }
    }

    /// Whether the route should close its listeners: all destinations quarantined,
    /// except for first-available, which keeps listening and answers 2003.
    fn should_close(&self) -> bool {
        self.cfg.strategy != Strategy::FirstAvailable
            && self.shared.quarantine.all_quarantined(&self.keys)
    }

    fn publish(&self, bound: Option<Bound>) -> bool {
        self.listening.send_replace(bound.map(Arc::new)).is_some()
    }

    /// Binds the listeners (errors end start-up) and spawns the manager task, which
    /// closes and reopens them as destinations leave and rejoin.
    pub fn start(self: &Arc<Self>) -> Result<tokio::task::JoinHandle<()>, listener::BindError> {
        tracing::info!(
            target: "routing",
            "[{}] started: routing strategy = {}",
            self.cfg.section,
            self.cfg.strategy.name()
        );
        let bound = self.bind()?;
        self.publish(Some(bound));
        if let (Some(_), Some(m)) = (&self.cfg.roles, &self.shared.monitor) {
            let me = self.clone();
            let m = m.clone();
            tokio::spawn(async move { me.follow_roles(m).await });
        }
        let me = self.clone();
        Ok(tokio::spawn(async move { me.manage().await }))
    }

    async fn manage(self: Arc<Self>) {
        let mut changed = self.shared.quarantine.subscribe();
        let mut stop = self.shared.stop_accepting.clone();
        loop {
            if *stop.borrow() {
                break;
            }
            if self.listening.borrow().is_some() {
                tokio::select! {
                    _ = changed.changed() => {
                        if self.should_close() {
                            self.log_stop_accepting();
                            self.publish(None);
                        }
                    }
                    _ = stop.changed() => {}
                }
            } else {
                tokio::select! {
                    _ = changed.changed() => {}
                    _ = tokio::time::sleep(Duration::from_secs(1)) => {}
                    _ = stop.changed() => continue,
                }
                if !self.should_close() {
                    match self.bind() {
                        Ok(b) => {
                            self.publish(Some(b));
                        }
                        Err(e) => tracing::warn!(
                            target: "routing",
                            "[{}] {e}; retrying in 1s",
                            self.cfg.section
                        ),
                    }
                }
            }
        }
        if self.publish(None) {
            self.log_stop_accepting();
        }
        tracing::info!(target: "routing", "[{}] stopped", self.cfg.section);
    }

    /// The accept loop of one I/O worker: accepts on its own duplicates of the route's
    /// sockets while they are open; returns once the route stops accepting.
    pub async fn accept_loop(self: Arc<Self>) {
        let mut rx = self.listening.subscribe();
        loop {
            let current = rx.borrow_and_update().clone();
            let Some(bound) = current else {
                if *self.shared.stop_accepting.borrow() || rx.changed().await.is_err() {
                    return;
                }
                continue;
            };
            let dup_err = |e: std::io::Error| tracing::error!(target: "routing", "[{}] cannot use the listening socket: {e}", self.cfg.section);
            let tcp = duplicate(bound.tcp.as_ref(), TcpListener::from_std)
                .map_err(dup_err)
                .ok()
                .flatten();
            let unix = duplicate(bound.unix.as_ref(), UnixListener::from_std)
                .map_err(dup_err)
                .ok()
                .flatten();
            // Only our duplicates keep the sockets open from here on, so that they
            // close as soon as the manager and every worker let go.
            drop(bound);
            loop {
                tokio::select! {
                    r = accept_tcp(&tcp) => self.clone().spawn_tcp(r, raw(&tcp)).await,
                    r = accept_unix(&unix) => self.clone().spawn_unix(r, raw(&unix)).await,
                    res = rx.changed() => {
                        if res.is_err() {
                            return;
                        }
                        break;
                    }
                }
            }
        }
    }

    async fn spawn_tcp(
        self: Arc<Self>,
        r: std::io::Result<(tokio::net::TcpStream, std::net::SocketAddr)>,
        listener: Option<i32>,
    ) {
        match r {
            Ok((s, peer)) => {
                self.accept_worked();
                let _ = s.set_nodelay(true);
                tokio::spawn(
                    async move { self.handle(s, peer.to_string(), Some(peer.ip())).await },
                );
            }
            Err(e) => self.accept_failed(e, listener).await,
        }
    }

    async fn spawn_unix(
        self: Arc<Self>,
        r: std::io::Result<(tokio::net::UnixStream, tokio::net::unix::SocketAddr)>,
        listener: Option<i32>,
    ) {
        match r {
            Ok((s, _)) => {
                self.accept_worked();
                let peer = self
                    .cfg
                    .socket
                    .as_ref()
                    .map(|p| p.display().to_string())
                    .unwrap_or_default();
                tokio::spawn(async move { self.handle(s, peer, None).await });
            }
            Err(e) => self.accept_failed(e, listener).await,
        }
    }

    /// accept() failed. Out of descriptors, the waiting client is refused with 1040 on
    /// the spare descriptor (see [`shed`]) rather than left hanging in the backlog; any
    /// other error backs off 100 ms instead of spinning on the ready listener.
    async fn accept_failed(&self, e: std::io::Error, listener: Option<i32>) {
        let refused = shed::out_of_resources(&e)
            && listener.is_some_and(|fd| shed::refuse_one(fd, &self.too_many_frame()));
        self.out_of_service(
            &format!("accept() failed: {}", crate::logging::strerror(&e)),
            refused,
        );
        if !refused {
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    /// A client could not be served for want of resources (`what` says how it failed):
    /// logged at once the first time, then at most one ERROR line per
    /// [`accept_errors::INTERVAL`] with the count, so that exhaustion does not flood
    /// the log.
    fn out_of_service(&self, what: &str, refused: bool) {
        let report = self
            .accept_errors
            .lock()
            .ok()
            .and_then(|mut b| b.failed(Instant::now(), refused, what));
        self.accept_errors_pending.store(true, Ordering::Release);
        if let Some(r) = report {
            self.log_accept_errors(&r);
        }
    }

    /// After a working accept(): reports the failures of the last interval that no line
    /// has counted yet (cheap when there are none).
    fn accept_worked(&self) {
        if !self.accept_errors_pending.load(Ordering::Acquire) {
            return;
        }
        let Ok(mut b) = self.accept_errors.lock() else {
            return;
        };
        if let Some(r) = b.flush(Instant::now()) {
            self.log_accept_errors(&r);
        }
        self.accept_errors_pending
            .store(b.pending(), Ordering::Release);
    }

    fn log_accept_errors(&self, r: &accept_errors::Report) {
        let sec = &self.cfg.section;
        let error = &r.error;
        if r.failures == 1 {
            tracing::error!(target: "routing", "[{sec}] {error}");
        } else {
            tracing::error!(
                target: "routing",
                "[{sec}] {error} ({} times in the last {}s, {} client(s) refused with 1040)",
                r.failures,
                accept_errors::INTERVAL.as_secs().max(1),
                r.refused
            );
        }
    }

    fn too_many_frame(&self) -> Vec<u8> {
        errors::accept_error(
            self.cfg.protocol,
            errors::ER_CON_COUNT_ERROR,
            "08004",
            errors::MSG_TOO_MANY,
        )
    }

    /// Takes a route and a process slot, or logs the refusal and returns the 1040 frame.
    fn admit(&self) -> Result<admission::Permit<'_>, Vec<u8>> {
        let sec = &self.cfg.section;
        self.admission
            .admit(&self.shared.total, self.shared.max_total)
            .map_err(|refusal| {
                self.stats.refused(match refusal {
                    Refusal::Route { .. } => Refused::Limit,
                    Refusal::Total { .. } => Refused::TotalLimit,
                });
                match refusal {
                    Refusal::Route { active, max } => tracing::warn!(
                        target: "routing",
                        "[{sec}] reached max active connections for route ({active} max={max})"
                    ),
                    Refusal::Total { total, max } => tracing::warn!(
                        target: "routing",
                        "[{sec}] Total connections count={total} exceeds [DEFAULT].max_total_connections={max}"
                    ),
                }
                errors::accept_error(
                    self.cfg.protocol,
                    errors::ER_CON_COUNT_ERROR,
                    "08004",
                    errors::MSG_TOO_MANY,
                )
            })
    }

    async fn handle<S>(self: Arc<Self>, client: S, peer: String, ip: Option<IpAddr>)
    where
        S: AsyncRead + AsyncWrite + Unpin + AsRawFd + crate::relay::Stream,
    {
        let fd = client.as_raw_fd();
        let sec = &self.cfg.section;
        if ip.is_some_and(|ip| self.admission.is_blocked(ip)) {
            let frame = errors::accept_error(
                self.cfg.protocol,
                errors::ER_HOST_IS_BLOCKED,
                "HY000",
                &format!("Too many connection errors from {peer}"),
            );
            self.stats.refused(Refused::BlockedHost);
            return refuse(client, &frame).await;
        }
        let permit = match self.admit() {
            Ok(p) => p,
            Err(frame) => return refuse(client, &frame).await,
        };
        self.stats.admitted();
        tracing::debug!(target: "routing", "[{sec}] fd={fd} connection accepted at {}", self.endpoints().join(", "));

        let started = stats::now_us();
        let (server, idx) = match self.connect(fd, &peer).await {
            Ok(c) => c,
            Err(why) => {
                let frame = match why {
                    NotConnected::NoDestination => {
                        self.stats.refused(Refused::NoDestination);
                        errors::accept_error(
                            self.cfg.protocol,
                            errors::CR_CONN_HOST_ERROR,
                            "HY000",
                            errors::MSG_NO_DESTINATION,
                        )
                    }
                    NotConnected::OutOfResources => {
                        self.stats.refused(Refused::TotalLimit);
                        self.too_many_frame()
                    }
                };
                // The slot is not needed while the client reads its error.
                drop(permit);
                refuse(client, &frame).await;
                tracing::debug!(
                    target: "routing",
                    "[{sec}] fd={fd} {peer} -> (not connected): connection closed (up: 0b; down: {}b)",
                    frame.len()
                );
                return;
            }
        };
        let addr = &self.keys[idx];
        tracing::debug!(target: "routing", "[{sec}] fd={fd} connected {peer} -> {addr}");
        let _on_dest = ActiveGuard::new(&self.active[idx]);
        // Role routes: the session ends when its destination stops serving the role.
        let mut kicked = self.cfg.roles.as_ref().map(|_| self.kick[idx].subscribe());
        let reg = self
            .connections
            .register(peer.clone(), addr.clone(), started);
        let live = &reg.live;

        let mut close_all = self.shared.close_all.clone();
        let tls = self.tls.clone();
        let serve = async {
            match (tls, server) {
                (Some(tls), server) => {
                    live.connected(stats::now_us());
                    // Boxed: the terminated session's state (TLS handshake, protocol
                    // tracking, pool) is several KiB; inline, it would be in every
                    // connection's task, PASSTHROUGH ones too (a task was 6.6 KiB with
                    // it inline, 2.4 KiB with it boxed).
                    Box::pin(self.serve_terminated(client, server, idx, &peer, ip, &tls, live))
                        .await
                }
                (None, ServerSide::Fresh(server)) => {
                    self.serve_client(&client, &server, &peer, ip, live).await
                }
                // `connect` takes pooled connections only for terminating routes.
                (None, ServerSide::Pooled(..)) => Ok(()),
            }
        };
        let result = tokio::select! {
            r = serve => Some(r),
            _ = close_all.wait_for(|c| *c) => None,
            _ = roles::kicked(&mut kicked) => {
                tracing::debug!(
                    target: "routing",
                    "[{sec}] fd={fd} {peer} -> {addr}: connection closed: the destination no longer serves role {}",
                    self.cfg.roles.as_ref().map(|r| r.role.name()).unwrap_or_default()
                );
                drop(permit);
                return;
            }
        };
        let (up, down) = (live.up.bytes(), live.down.bytes());
        drop(reg);
        match result {
            Some(Ok(())) => tracing::debug!(
                target: "routing",
                "[{sec}] fd={fd} {peer} -> {addr}: connection closed (up: {up}b; down: {down}b)"
            ),
            Some(Err(e)) => tracing::debug!(
                target: "routing",
                "[{sec}] fd={fd} {peer} -> {addr}: connection closed ({})",
                crate::logging::strerror(&e)
            ),
            None => tracing::debug!(
                target: "routing",
                "[{sec}] fd={fd} {peer} -> {addr}: connection closed by shutdown"
            ),
        }
        drop(permit);
    }

    /// Forgets all handshake errors (SIGUSR1); returns the hosts that were blocked.
    pub fn clear_blocked(&self) -> Vec<IpAddr> {
        self.admission.clear_blocked()
    }

    /// Tries the destinations in the policy's order. `Err` when none connected (the
    /// ERROR line has been logged).
    async fn connect(&self, fd: i32, peer: &str) -> Result<(ServerSide, usize), NotConnected> {
        let sec = &self.cfg.section;
        let q = &self.shared.quarantine;
        let mut attempts: Vec<String> = Vec::new();
        let plan = match self.role_plan(&mut attempts) {
            Some(p) => p,
            None => self.policy.plan(|i| q.is_quarantined(&self.keys[i])),
        };
        for &idx in &plan.order {
            let key = &self.keys[idx];
            if q.is_quarantined(key) {
                tracing::debug!(target: "routing", "[{sec}] fd={fd} skip quarantined destination '{key}'");
                attempts.push(format!("connect(/* {key} */): is quarantined"));
                continue;
            }
            // A terminating route first looks for an idle server connection (plain
            // clients use one only where the server renews its nonce, else it goes
            // back unused: see session::pool_auth).
            let pooled = match self.tls.is_some() && crate::session::pooled::enabled() {
                true => crate::session::pooled::take(|k| k.destination == *key),
                false => None,
            };
            if let Some((k, p)) = pooled {
                tracing::debug!(target: "routing", "[{sec}] fd={fd} taking a pooled server connection to '{key}'");
                if let Some(sw) = self.policy.connected(&plan, idx) {
                    self.dest_stats[sw.to].switched_to();
                    tracing::warn!(
                        target: "routing",
                        "[{sec}] switched destination from '{}' to '{}'",
                        self.keys[sw.from],
                        self.keys[sw.to]
                    );
                }
                return Ok((ServerSide::Pooled(k, p), idx));
            }
            let t = std::time::Instant::now();
            match connect::connect(&self.cfg.destinations[idx], self.cfg.connect_timeout).await {
                Ok(s) => {
                    self.dest_stats[idx].connected(t.elapsed());
                    let s = ServerSide::Fresh(s);
                    q.report_success(key);
                    if let Some(sw) = self.policy.connected(&plan, idx) {
                        self.dest_stats[sw.to].switched_to();
                        tracing::warn!(
                            target: "routing",
                            "[{sec}] switched destination from '{}' to '{}'",
                            self.keys[sw.from],
                            self.keys[sw.to]
                        );
                    }
                    return Ok((s, idx));
                }
                Err(e) if e.local => {
                    // Out of descriptors: every other destination would fail the same
                    // way, and none of them is to blame.
                    tracing::debug!(target: "routing", "[{sec}] fd={fd} {peer}: {} (not quarantined: the router is out of resources)", e.text);
                    self.out_of_service(&e.text, true);
                    return Err(NotConnected::OutOfResources);
                }
                Err(e) => {
                    tracing::debug!(target: "routing", "[{sec}] fd={fd} {}", e.text);
                    q.report_failure(sec, key, &e.text);
                    attempts.push(e.text);
                }
            }
        }
        self.policy.exhausted(&plan);
        attempts.push("end of destinations: no more destinations".into());
        tracing::error!(
            target: "routing",
            "[{sec}] connecting to backend(s) for client from {peer} failed: {}",
            attempts.join(", ")
        );
        Err(NotConnected::NoDestination)
    }
}

/// Why a client got no server.
enum NotConnected {
    /// Every destination failed or is quarantined (2003).
    NoDestination,
    /// The router is out of descriptors or memory (1040).
    OutOfResources,
}

/// Counts one active connection on a destination while it lives.
struct ActiveGuard<'a>(&'a AtomicU64);

impl<'a> ActiveGuard<'a> {
    fn new(c: &'a AtomicU64) -> Self {
        c.fetch_add(1, Ordering::AcqRel);
        ActiveGuard(c)
    }
}

impl Drop for ActiveGuard<'_> {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::AcqRel);
    }
}

/// A worker's own duplicate of a listening socket, registered with its runtime.
fn duplicate<S, T>(
    listener: Option<&S>,
    register: impl FnOnce(S) -> std::io::Result<T>,
) -> std::io::Result<Option<T>>
where
    S: AsFd + From<OwnedFd>,
{
    listener
        .map(|l| {
            l.as_fd()
                .try_clone_to_owned()
                .map(S::from)
                .and_then(register)
        })
        .transpose()
}

fn raw<L: AsRawFd>(l: &Option<L>) -> Option<i32> {
    l.as_ref().map(|l| l.as_raw_fd())
}

async fn accept_tcp(
    l: &Option<TcpListener>,
) -> std::io::Result<(tokio::net::TcpStream, std::net::SocketAddr)> {
    match l {
        Some(l) => l.accept().await,
        None => std::future::pending().await,
    }
}

async fn accept_unix(
    l: &Option<UnixListener>,
) -> std::io::Result<(tokio::net::UnixStream, tokio::net::unix::SocketAddr)> {
    match l {
        Some(l) => l.accept().await,
        None => std::future::pending().await,
    }
}
