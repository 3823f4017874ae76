//! Start-up, the running router, and shutdown, in MySQL Router's order:
//! user switch → config → logging → signal handlers → pid file → I/O threads →
//! listeners → READY → (signals) → stop accepting → drain → pid file removed.
//!
//! Errors before logging is up are printed raw on stderr (`Error: ...`); later ones are
//! log lines, and also printed on stderr when the log does not go to the console, so a
//! failed `systemctl start` always shows its reason.

use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::{Duration, Instant};

use tokio::sync::watch;

use crate::cli::RunArgs;
use crate::config::{self, Config, SinkKind};
use crate::logging::{self, Level};
use crate::monitor::Monitor;
use crate::process;
use crate::quarantine::Quarantine;
use crate::routing::{Route, Shared};
use crate::system;

fn raw_error(msg: impl std::fmt::Display) -> i32 {
    eprintln!("Error: {msg}");
    1
}

/// Runs the router; returns the exit status.
pub fn run(args: RunArgs) -> i32 {
    process::raise_fd_limit();
    // MySQL Router switches user before reading the configuration files.
    if let Some(u) = &args.user {
        if let Err(e) = process::switch_user(u) {
            return raw_error(e);
        }
    }
    let files = match config::files::resolve(args.config.as_deref(), &args.extra) {
        Ok(f) => f,
        Err(e) => return raw_error(e),
    };
    let config = match config::load(&files, &args.overrides) {
        Ok(c) => c,
        Err(e) => return raw_error(e),
    };
    if args.user.is_none() {
        if let Some(u) = &config.default.user {
            if let Err(e) = process::switch_user(u) {
                return raw_error(e);
            }
        }
    }
    // After the user switch, which resets the "dumpable" flag.
    if args.core_file {
        process::enable_core_file();
    }
    if let Err(e) = logging::init(&config.logger) {
        return raw_error(e);
    }
    let console = config
        .logger
        .sinks
        .iter()
        .any(|s| matches!(&s.kind, SinkKind::Console(d) if d == "/dev/stderr"));
    let fail = |msg: String| -> i32 {
        tracing::error!(target: "main", "Error: {msg}");
        if !console {
            eprintln!("Error: {msg}");
        }
        1
    };

    system!(target: "main", "Starting 'MySQL Router', version: {}", crate::version_string());
    for n in &config.notices {
        log_notice(n.domain, n.level, &n.message);
    }
    // The main runtime runs signals, the quarantine probes and the route managers;
    // connections run on the I/O workers (see `serve`).
    let runtime = match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    {
        Ok(r) => r,
        Err(e) => return finish(fail(format!("cannot start the I/O runtime: {e}")), "error"),
    };
    // Signal handlers before the pid file: whoever reads the pid may signal at once.
    let signals = match install_signals() {
        Ok(s) => s,
        Err(e) => {
            return finish(
                fail(format!("cannot install signal handlers: {e}")),
                "error",
            )
        }
    };
    let pid_file = match process::pid_file_path(
        args.pid_file.as_deref(),
        config.default.pid_file.as_deref(),
        &config.default.runtime_folder,
    ) {
        Ok(p) => p,
        Err(e) => return finish(fail(e), "error"),
    };
    if let Some(p) = &pid_file {
        if let Err(e) = process::write_pid_file(p) {
            return finish(fail(e), "error");
        }
    }
    let (code, reason) = runtime.block_on(serve(config, signals, &fail));
    if let Some(p) = &pid_file {
        process::remove_pid_file(p);
    }
    runtime.shutdown_timeout(Duration::from_secs(1));
    finish(code, &reason)
}

/// Logs the Stopping line (unless already logged: `reason` empty) and flushes the log.
fn finish(code: i32, reason: &str) -> i32 {
    if !reason.is_empty() {
        log_stopping(reason);
    }
    logging::flush();
    code
}

fn log_stopping(reason: &str) {
    system!(
        target: "main",
        "Stopping 'MySQL Router', version: {}, reason: {reason}",
        crate::version_string()
    );
}

fn log_notice(domain: &'static str, level: Level, msg: &str) {
    // tracing needs the target at compile time per call site; the few domains used by
    // notices are listed here.
    macro_rules! at {
        ($t:literal) => {
            match level {
                Level::Warning => tracing::warn!(target: $t, "{msg}"),
                Level::Info | Level::Note => tracing::info!(target: $t, "{msg}"),
                Level::Debug => tracing::debug!(target: $t, "{msg}"),
                _ => tracing::error!(target: $t, "{msg}"),
            }
        };
    }
    match domain {
        "routing" => at!("routing"),
        "routing_plugin" => at!("routing_plugin"),
        "monitor" => at!("monitor"),
        _ => at!("main"),
    }
}

/// What a signal asks of the running router.
enum SigEvent {
    /// SIGTERM/SIGINT, with the reason for the Stopping line.
    Stop(String),
    /// SIGHUP: reopen the log file.
    Reopen,
    /// SIGUSR1: unblock client hosts.
    Unblock,
}

type Signals = tokio::sync::mpsc::UnboundedReceiver<SigEvent>;

/// Takes over TERM, INT, HUP and USR1 on a dedicated thread (as MySQL Router does with
/// sigwait) and forwards them to the main runtime.
fn install_signals() -> std::io::Result<Signals> {
    use signal_hook::consts::{SIGHUP, SIGINT, SIGTERM, SIGUSR1};
    use signal_hook::iterator::exfiltrator::WithOrigin;
    use signal_hook::iterator::SignalsInfo;
    let mut signals = SignalsInfo::<WithOrigin>::new([SIGTERM, SIGINT, SIGHUP, SIGUSR1])?;
    let (tx, rx) = tokio::sync::mpsc::unbounded_channel();
    std::thread::Builder::new()
        .name("signals".into())
        .spawn(move || {
            for info in signals.forever() {
                let event = match info.signal {
                    SIGHUP => SigEvent::Reopen,
                    SIGUSR1 => SigEvent::Unblock,
                    sig => SigEvent::Stop(stop_reason(sig, info.process.map(|p| (p.pid, p.uid)))),
                };
                if tx.send(event).is_err() {
                    break;
                }
            }
        })?;
    Ok(rx)
}

/// `REQUESTED (Signal Terminated sent by UID: 0 and PID: 123)`, MySQL Router's text.
fn stop_reason(sig: i32, origin: Option<(i32, u32)>) -> String {
    // SAFETY: strsignal returns a pointer to a static or thread-local string.
    let name = unsafe {
        let p = libc::strsignal(sig);
        if p.is_null() {
            format!("{sig}")
        } else {
            std::ffi::CStr::from_ptr(p).to_string_lossy().into_owned()
        }
    };
    match origin {
        Some((pid, uid)) => format!("REQUESTED (Signal {name} sent by UID: {uid} and PID: {pid})"),
        None => format!("REQUESTED (Signal {name})"),
    }
}

/// Runs all routes until a stop signal; returns (exit status, stop reason).
async fn serve(
    config: Config,
    mut signals: Signals,
    fail: &dyn Fn(String) -> i32,
) -> (i32, String) {
    let (stop_tx, stop_rx) = watch::channel(false);
    let (close_tx, close_rx) = watch::channel(false);
    let quarantine = Arc::new(Quarantine::new(
        config.destination_status.error_quarantine_threshold,
        config.destination_status.error_quarantine_interval,
    ));
    // The monitor watches the destinations of the routes that follow roles.
    let monitor = config.monitor.clone().map(|m| {
        let dests: Vec<config::Destination> = config
            .routes
            .iter()
            .filter(|r| r.roles.is_some())
            .flat_map(|r| r.destinations.iter().cloned())
            .collect();
        Monitor::new(m, &dests)
    });
    let shared = Arc::new(Shared {
        monitor: monitor.clone(),
        quarantine: quarantine.clone(),
        total: Default::default(),
        max_total: config.default.max_total_connections,
        stop_accepting: stop_rx.clone(),
        close_all: close_rx,
    });
    let mut routes: Vec<Arc<Route>> = Vec::new();
    crate::session::pooled::configure(config.pool);
    for r in &config.routes {
        let tls = if r.tls.terminates() {
            match crate::session::tls::build(&r.tls) {
                Ok(c) => {
                    for w in &c.warnings {
                        tracing::warn!(target: "routing", "{w}");
                    }
                    Some(Arc::new(c))
                }
                Err(e) => return (fail(format!("{}: {e}", r.section)), "error".into()),
            }
        } else {
            None
        };
        routes.push(Route::new(r.clone(), shared.clone(), tls));
    }
    // The HTTP server first, as MySQL Router initialises its http plugins before the
    // routes start; its errors (password file, certificate, port) end start-up.
    let http = match &config.http {
        None => None,
        Some(h) => {
            let view = Arc::new(crate::routing::view::View {
                routes: routes.clone(),
                shared: shared.clone(),
                started: std::time::SystemTime::now(),
                pool: config.pool,
            });
            match crate::http::start(h, view, router_info()) {
                Ok(s) => Some(s),
                Err(e) => return (fail(e.to_string()), "error".into()),
            }
        }
    };
    // Workers first (they wait for the routes' sockets), as MySQL Router starts its io
    // threads before the routes.
    let (exit_tx, exit_rx) = watch::channel(false);
    let workers = match start_workers(config.io_threads, &routes, exit_rx) {
        Ok(w) => w,
        Err(e) => {
            return (
                fail(format!("cannot start I/O threads: {e}")),
                "error".into(),
            )
        }
    };
    let mut tasks = Vec::new();
    for r in &routes {
        match r.start() {
            Ok(h) => tasks.push(h),
            Err(e) => {
                let _ = stop_tx.send(true);
                for t in tasks {
                    let _ = t.await;
                }
                let _ = exit_tx.send(true);
                join_workers(workers).await;
                return (fail(e.to_string()), "error".into());
            }
        }
    }
    let probe = {
        let q = quarantine.clone();
        let stop = stop_rx.clone();
        tokio::spawn(async move { q.probe_loop(stop).await })
    };
    let monitor_tasks = monitor
        .as_ref()
        .map(|m| m.spawn(stop_rx.clone()))
        .unwrap_or_default();
    process::notify("READY=1\nSTATUS=running\n");

    let (code, reason) = loop {
        match signals.recv().await {
            None => break (fail("the signal thread ended".into()), "error".to_string()),
            Some(SigEvent::Stop(reason)) => {
                log_stopping(&reason);
                break (0, String::new());
            }
            Some(SigEvent::Reopen) => {
                if let Err(e) = logging::reopen() {
                    break (
                        fail(format!("reopening the log file failed: {e}")),
                        "error".to_string(),
                    );
                }
                tracing::info!(target: "main", "log file reopened (SIGHUP)");
            }
            Some(SigEvent::Unblock) => unblock_all(&routes),
        }
    };

    process::notify("STOPPING=1\nSTATUS=Router shutdown in progress\n");
    let _ = stop_tx.send(true);
    for t in tasks {
        let _ = t.await;
    }
    let _ = probe.await;
    // The monitor's connections end with COM_QUIT before the process exits.
    for t in monitor_tasks {
        let _ = t.await;
    }
    drain(&shared, config.default.shutdown_timeout, close_tx).await;
    let _ = exit_tx.send(true);
    join_workers(workers).await;
    if let Some(h) = http {
        let _ = tokio::task::spawn_blocking(move || h.stop()).await;
    }
    (code, reason)
}

/// `/router/status`: who we are.
fn router_info() -> crate::http::RouterInfo {
    let hostname = std::fs::read_to_string("/proc/sys/kernel/hostname")
        .map(|h| h.trim().to_string())
        .unwrap_or_default();
    crate::http::RouterInfo {
        process_id: std::process::id(),
        product_edition: crate::PROJECT_NAME.into(),
        version: env!("CARGO_PKG_VERSION").into(),
        hostname,
        started_us: crate::stats::now_us(),
    }
}

/// SIGUSR1: forget the handshake errors of every route, logging each unblocked host.
fn unblock_all(routes: &[Arc<Route>]) {
    let mut total = 0;
    for r in routes {
        let hosts = r.clear_blocked();
        total += hosts.len();
        for h in hosts {
            tracing::warn!(target: "routing", "[{}] unblocked client host {h} (SIGUSR1)", r.cfg.section);
        }
    }
    tracing::warn!(
        target: "main",
        "SIGUSR1: cleared connection error counters of all routes, {total} blocked host(s) unblocked"
    );
}

/// Lets active connections finish for up to `timeout`, then tells them to close and
/// waits (2 s at most) until they have.
async fn drain(shared: &Shared, timeout: Duration, close: watch::Sender<bool>) {
    let active = || shared.total.load(Ordering::Acquire);
    if active() > 0 && !timeout.is_zero() {
        tracing::info!(
            target: "main",
            "waiting up to {} for {} active connection(s) to finish",
            humantime::format_duration(timeout),
            active()
        );
    }
    let deadline = Instant::now() + timeout;
    while active() > 0 && Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    if active() > 0 {
        tracing::info!(target: "main", "closing {} active connection(s)", active());
    }
    let _ = close.send(true);
    let hard = Instant::now() + Duration::from_secs(2);
    while active() > 0 && Instant::now() < hard {
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

async fn join_workers(workers: Vec<std::thread::JoinHandle<()>>) {
    for w in workers {
        let _ = tokio::task::spawn_blocking(move || w.join()).await;
    }
}

/// One thread with a single-threaded runtime per worker: each accepts on every route
/// and runs its connections to the end, so a connection's two sockets, its task and
/// its wake-ups stay on one core. Workers stop when `exit` turns true.
fn start_workers(
    threads: usize,
    routes: &[Arc<Route>],
    exit: watch::Receiver<bool>,
) -> std::io::Result<Vec<std::thread::JoinHandle<()>>> {
    let n = if threads == 0 {
        std::thread::available_parallelism()
            .map(|n| n.get())
            .unwrap_or(1)
    } else {
        threads
    };
    tracing::info!(target: "io", "starting {n} io-threads, using backend 'linux_epoll'");
    let mut handles = Vec::with_capacity(n);
    for i in 0..n {
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()?;
        let routes: Vec<Arc<Route>> = routes.to_vec();
        let mut exit = exit.clone();
        handles.push(
            std::thread::Builder::new()
                .name(format!("io-{i}"))
                .spawn(move || {
                    rt.block_on(async move {
                        for r in routes {
                            tokio::spawn(r.accept_loop());
                        }
                        let _ = exit.wait_for(|e| *e).await;
                    });
                    rt.shutdown_timeout(Duration::from_millis(100));
                })?,
        );
    }
    Ok(handles)
}
