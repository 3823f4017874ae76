//! MySQL Router's log: line format, levels, sinks, and reopening on SIGHUP.
//!
//! Code logs with `tracing` macros; the target is MySQL Router's *domain* (`main`,
//! `routing`, ...). SYSTEM/NOTE/FATAL, which tracing lacks, are tracing events with a
//! `mysql_level` field (see [`system!`](crate::system)).
//!
//! A connection task never blocks on logging and no line is dropped: events are
//! captured (time, thread id, text) on the calling thread and handed to one writer
//! thread over an unbounded channel; only that thread touches files and sockets. That
//! thread also reopens the log file on request (SIGHUP, for logrotate).
//!
//! Why not tracing-appender (0.2): its `non_blocking` worker could sit in front of a
//! reopenable writer of ours, but its queue is bounded (128,000 lines by default): once a
//! sink stalls (a full stderr pipe, a slow disk) it drops lines (lossy, the default) or
//! blocks every thread that logs (`lossy(false)`), so a stalled log would lose lines or
//! stop connections. The test `tracing_appender_drops_or_blocks_where_ours_keeps_every_line`
//! below shows both against this writer on the same stalled pipe.

use std::fmt::Write as _;
use std::fs::{File, OpenOptions};
use std::io::Write as _;
use std::os::unix::net::UnixDatagram;
use std::path::PathBuf;
use std::sync::mpsc::{channel, Receiver, Sender};
use std::sync::{Mutex, OnceLock};
use std::time::SystemTime;

use tracing::field::{Field, Visit};
use tracing::{Event, Metadata, Subscriber};
use tracing_subscriber::layer::{Context, Layer};
use tracing_subscriber::prelude::*;

use crate::config::{LoggerConfig, SinkConfig, SinkKind};

/// MySQL Router's levels, most severe first.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Level {
    Fatal,
    System,
    Error,
    Warning,
    Info,
    Note,
    Debug,
}

impl Level {
    pub fn parse(v: &str) -> Option<Level> {
        Some(match v.to_ascii_lowercase().as_str() {
            "fatal" => Level::Fatal,
            "system" => Level::System,
            "error" => Level::Error,
            "warning" => Level::Warning,
            "info" => Level::Info,
            "note" => Level::Note,
            "debug" => Level::Debug,
            _ => return None,
        })
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Level::Fatal => "FATAL",
            Level::System => "SYSTEM",
            Level::Error => "ERROR",
            Level::Warning => "WARNING",
            Level::Info => "INFO",
            Level::Note => "NOTE",
            Level::Debug => "DEBUG",
        }
    }

    /// The most severe MySQL Router level a tracing level can carry (SYSTEM/FATAL ride on
    /// ERROR, NOTE on INFO), for the per-callsite filter.
    fn from_tracing(l: &tracing::Level) -> Level {
        match *l {
            tracing::Level::ERROR => Level::Error,
            tracing::Level::WARN => Level::Warning,
            tracing::Level::INFO => Level::Info,
            _ => Level::Debug,
        }
    }

    fn syslog_severity(self) -> u8 {
        match self {
            Level::Fatal => 2,
            Level::System | Level::Error => 3,
            Level::Warning => 4,
            Level::Info | Level::Note => 6,
            Level::Debug => 7,
        }
    }
}

/// Digits after the seconds in the timestamp.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Precision {
    Second,
    Milli,
    Micro,
    Nano,
}

impl Precision {
    pub fn parse(v: &str) -> Option<Precision> {
        Some(match v.to_ascii_lowercase().as_str() {
            "second" | "sec" | "s" => Precision::Second,
            "millisecond" | "msec" | "ms" => Precision::Milli,
            "microsecond" | "usec" | "us" => Precision::Micro,
            "nanosecond" | "nsec" | "ns" => Precision::Nano,
            _ => return None,
        })
    }
}

/// Logs a SYSTEM line (shown at every level but `fatal`).
#[macro_export]
macro_rules! system {
    (target: $t:expr, $($arg:tt)+) => {
        ::tracing::error!(target: $t, mysql_level = "system", $($arg)+)
    };
}

/// Logs a NOTE line (between INFO and DEBUG). It is a tracing INFO event, so that the
/// cheap per-callsite filter lets it through whenever NOTE could be wanted; the layer
/// then applies the NOTE level itself.
#[macro_export]
macro_rules! note {
    (target: $t:expr, $($arg:tt)+) => {
        ::tracing::info!(target: $t, mysql_level = "note", $($arg)+)
    };
}

/// One captured event.
struct Record {
    time: SystemTime,
    level: Level,
    domain: &'static str,
    thread: u64,
    message: String,
}

enum Msg {
    Line(Record),
    Reopen(Sender<Result<(), String>>),
    Flush(Sender<()>),
}

static SENDER: OnceLock<Mutex<Option<Sender<Msg>>>> = OnceLock::new();

fn sender() -> Option<Sender<Msg>> {
    SENDER
        .get()
        .and_then(|m| m.lock().ok().and_then(|s| s.clone()))
}

fn thread_id() -> u64 {
    // SAFETY: pthread_self has no preconditions and cannot fail.
    unsafe { libc::pthread_self() as u64 }
}

/// Broken-down local time of `t`.
fn local_tm(t: SystemTime) -> libc::tm {
    let secs = t
        .duration_since(SystemTime::UNIX_EPOCH)
        .unwrap_or_default()
        .as_secs() as libc::time_t;
    // SAFETY: tm is plain data; localtime_r only writes into it.
    let mut tm: libc::tm = unsafe { std::mem::zeroed() };
    unsafe { libc::localtime_r(&secs, &mut tm) };
    tm
}

/// Formats `YYYY-MM-DD HH:MM:SS[.frac]` in local time.
pub fn format_time(t: SystemTime, p: Precision, out: &mut String) {
    let d = t.duration_since(SystemTime::UNIX_EPOCH).unwrap_or_default();
    let tm = local_tm(t);
    let _ = write!(
        out,
        "{:04}-{:02}-{:02} {:02}:{:02}:{:02}",
        tm.tm_year + 1900,
        tm.tm_mon + 1,
        tm.tm_mday,
        tm.tm_hour,
        tm.tm_min,
        tm.tm_sec
    );
    let n = d.subsec_nanos();
    let _ = match p {
        Precision::Second => Ok(()),
        Precision::Milli => write!(out, ".{:03}", n / 1_000_000),
        Precision::Micro => write!(out, ".{:06}", n / 1_000),
        Precision::Nano => write!(out, ".{n:09}"),
    };
}

/// `Mmm dd hh:mm:ss` in local time, as syslog(3) writes it.
fn syslog_time(t: SystemTime) -> String {
    const MONTHS: [&str; 12] = [
        "Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec",
    ];
    let tm = local_tm(t);
    format!(
        "{} {:>2} {:02}:{:02}:{:02}",
        MONTHS[tm.tm_mon.clamp(0, 11) as usize],
        tm.tm_mday,
        tm.tm_hour,
        tm.tm_min,
        tm.tm_sec
    )
}

/// A complete log line (with newline) as MySQL Router writes it.
fn format_line(r: &Record, p: Precision) -> String {
    let mut s = String::with_capacity(64 + r.message.len());
    format_time(r.time, p, &mut s);
    let _ = writeln!(
        s,
        " {} {} [{:x}] {}",
        r.domain,
        r.level.as_str(),
        r.thread,
        r.message
    );
    s
}

struct Visitor {
    message: String,
    level: Option<Level>,
}

impl Visit for Visitor {
    fn record_str(&mut self, field: &Field, value: &str) {
        if field.name() == "mysql_level" {
            self.level = Level::parse(value);
        } else if field.name() == "message" {
            self.message.push_str(value);
        }
    }

    fn record_debug(&mut self, field: &Field, value: &dyn std::fmt::Debug) {
        if field.name() == "message" {
            let _ = write!(self.message, "{value:?}");
        }
    }
}

struct MysqlLayer {
    max: Level,
}

impl<S: Subscriber> Layer<S> for MysqlLayer {
    fn enabled(&self, metadata: &Metadata<'_>, _ctx: Context<'_, S>) -> bool {
        Level::from_tracing(metadata.level()) <= self.max
    }

    fn on_event(&self, event: &Event<'_>, _ctx: Context<'_, S>) {
        let meta = event.metadata();
        let mut v = Visitor {
            message: String::new(),
            level: None,
        };
        event.record(&mut v);
        let level = v.level.unwrap_or_else(|| Level::from_tracing(meta.level()));
        if level > self.max {
            return;
        }
        let rec = Record {
            time: SystemTime::now(),
            level,
            domain: meta.target(),
            thread: thread_id(),
            message: v.message,
        };
        if let Some(tx) = sender() {
            let _ = tx.send(Msg::Line(rec));
        }
    }
}

enum Output {
    Stdout,
    Stderr,
    Null,
    File { path: PathBuf, file: File },
    Syslog(Option<UnixDatagram>),
}

struct Sink {
    cfg: SinkConfig,
    out: Output,
}

/// Mode of a log file the router creates: it can hold client addresses, so not
/// world-readable (Oracle's router leaves it to the umask, usually 0644). logrotate's
/// `create 0640` in packaging/mysqlrouter.logrotate must say the same.
pub const LOG_FILE_MODE: u32 = 0o640;

fn open_append(path: &PathBuf) -> Result<File, String> {
    use std::os::unix::fs::OpenOptionsExt;
    OpenOptions::new()
        .create(true)
        .append(true)
        .mode(LOG_FILE_MODE)
        .open(path)
        .map_err(|e| {
            format!(
                "Cannot open log file '{}': {}",
                path.display(),
                strerror(&e)
            )
        })
}

fn open_sink(cfg: &SinkConfig) -> Result<Output, String> {
    Ok(match &cfg.kind {
        SinkKind::Console(d) if d == "/dev/stdout" => Output::Stdout,
        SinkKind::Console(d) if d == "/dev/null" => Output::Null,
        SinkKind::Console(_) => Output::Stderr,
        SinkKind::File(path) => Output::File {
            path: path.clone(),
            file: open_append(path)?,
        },
        SinkKind::Syslog => Output::Syslog(UnixDatagram::unbound().ok()),
    })
}

impl Sink {
    fn write(&mut self, r: &Record) {
        if r.level > self.cfg.level {
            return;
        }
        match &mut self.out {
            Output::Null => {}
            Output::Stdout => {
                let _ = std::io::stdout().write_all(format_line(r, self.cfg.precision).as_bytes());
            }
            Output::Stderr => {
                let _ = std::io::stderr().write_all(format_line(r, self.cfg.precision).as_bytes());
            }
            Output::File { file, .. } => {
                let _ = file.write_all(format_line(r, self.cfg.precision).as_bytes());
            }
            Output::Syslog(sock) => {
                if let Some(sock) = sock {
                    // What glibc's syslog(3) sends: `<PRI>Mmm dd hh:mm:ss TAG[PID]: MSG`,
                    // facility daemon (3).
                    let pri = 3 * 8 + r.level.syslog_severity();
                    let msg = format!(
                        "<{pri}>{} mysqlrouter[{}]: {} {} {}",
                        syslog_time(r.time),
                        std::process::id(),
                        r.domain,
                        r.level.as_str(),
                        r.message
                    );
                    let _ = sock.send_to(msg.as_bytes(), "/dev/log");
                }
            }
        }
    }

    fn reopen(&mut self) -> Result<(), String> {
        if let Output::File { path, file } = &mut self.out {
            *file = open_append(path)?;
        }
        Ok(())
    }
}

fn writer_loop(rx: Receiver<Msg>, mut sinks: Vec<Sink>) {
    for msg in rx {
        match msg {
            Msg::Line(r) => sinks.iter_mut().for_each(|s| s.write(&r)),
            Msg::Reopen(reply) => {
                let res = sinks.iter_mut().try_for_each(Sink::reopen);
                let _ = reply.send(res);
            }
            Msg::Flush(reply) => {
                let _ = reply.send(());
            }
        }
    }
}

/// Creates the logging folder (last component only, like MySQL Router) and opens the
/// sinks. Errors are MySQL Router's texts; nothing is logged yet when they happen.
pub fn init(cfg: &LoggerConfig) -> Result<(), String> {
    if let Some(folder) = &cfg.folder {
        let uses_file = cfg
            .sinks
            .iter()
            .any(|s| matches!(s.kind, SinkKind::File(_)));
        if uses_file && !folder.is_dir() {
            use std::os::unix::fs::DirBuilderExt;
            std::fs::DirBuilder::new()
                .mode(0o700)
                .create(folder)
                .map_err(|e| {
                    format!(
                        "Error when creating dir '{}': {}: {}",
                        folder.display(),
                        e.raw_os_error().unwrap_or(0),
                        strerror(&e)
                    )
                })?;
        }
    }
    let mut sinks = Vec::new();
    for s in &cfg.sinks {
        sinks.push(Sink {
            cfg: s.clone(),
            out: open_sink(s)?,
        });
    }
    let (tx, rx) = channel();
    std::thread::Builder::new()
        .name("log-writer".into())
        .spawn(move || writer_loop(rx, sinks))
        .map_err(|e| format!("cannot start the log writer: {e}"))?;
    let slot = SENDER.get_or_init(|| Mutex::new(None));
    if let Ok(mut s) = slot.lock() {
        *s = Some(tx);
    }
    let layer = MysqlLayer {
        max: cfg.max_level(),
    };
    // A second init (tests) keeps the first subscriber; the writer is replaced.
    let _ = tracing_subscriber::registry().with(layer).try_init();
    Ok(())
}

/// Reopens file sinks (SIGHUP). An error means the log cannot be written any more.
pub fn reopen() -> Result<(), String> {
    let Some(tx) = sender() else { return Ok(()) };
    let (rtx, rrx) = channel();
    if tx.send(Msg::Reopen(rtx)).is_err() {
        return Err("log writer is gone".into());
    }
    rrx.recv()
        .unwrap_or_else(|_| Err("log writer is gone".into()))
}

/// Waits until every line logged so far has been written.
pub fn flush() {
    if let Some(tx) = sender() {
        let (rtx, rrx) = channel();
        if tx.send(Msg::Flush(rtx)).is_ok() {
            let _ = rrx.recv_timeout(std::time::Duration::from_secs(5));
        }
    }
}

/// `strerror` text without Rust's " (os error N)" suffix.
pub fn strerror(e: &std::io::Error) -> String {
    match e.raw_os_error() {
        Some(code) => nix::errno::Errno::from_raw(code).desc().to_string(),
        None => e.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn line_format() {
        let r = Record {
            time: SystemTime::UNIX_EPOCH + std::time::Duration::from_millis(1_500),
            level: Level::Warning,
            domain: "routing",
            thread: 0x7f3a2b5fe700,
            message: "hello".into(),
        };
        let line = format_line(&r, Precision::Milli);
        // local time varies by TZ; check the shape.
        let (ts, rest) = line.split_at(23);
        assert_eq!(ts.len(), 23);
        assert!(ts.ends_with(".500"), "{ts}");
        assert_eq!(rest, " routing WARNING [7f3a2b5fe700] hello\n");
    }

    #[test]
    fn level_order_and_parse() {
        assert!(Level::System < Level::Warning && Level::Warning < Level::Debug);
        assert_eq!(Level::parse("NoTe"), Some(Level::Note));
        assert_eq!(Precision::parse("usec"), Some(Precision::Micro));
        assert_eq!(Precision::parse("x"), None);
    }

    /// A pipe nobody reads yet: writes to it block once its buffer (64 KiB) is full, as a
    /// stalled stderr or a slow disk would.
    fn stalled_pipe() -> (File, File) {
        let (r, w) = nix::unistd::pipe().unwrap(); // ok: test code
        (File::from(r), File::from(w))
    }

    /// Reads the pipe to its end on another thread and counts the lines.
    fn drain(r: File) -> std::thread::JoinHandle<usize> {
        std::thread::spawn(move || {
            use std::io::BufRead;
            std::io::BufReader::new(r).lines().count()
        })
    }

    /// More lines than tracing-appender's default queue (128,000) holds.
    const BURST: usize = 200_000;

    fn record(i: usize) -> Record {
        Record {
            time: SystemTime::now(),
            level: Level::Info,
            domain: "routing",
            thread: 1,
            message: format!("[routing:rw] fd=12 connection {i} closed (up: 120b; down: 330b)"),
        }
    }

    /// Why this module has its own writer: with the sink stalled, tracing-appender either
    /// loses lines or blocks the thread that logs; ours returns at once and writes every
    /// line once the sink drains.
    #[test]
    fn tracing_appender_drops_or_blocks_where_ours_keeps_every_line() {
        use std::sync::atomic::{AtomicUsize, Ordering};
        use std::sync::Arc;
        use std::time::{Duration, Instant};

        // Ours: the writer thread as `init` starts it, the calling side as `on_event` does.
        let (r, w) = stalled_pipe();
        let (tx, rx) = channel();
        let sink = Sink {
            cfg: SinkConfig {
                kind: SinkKind::File(PathBuf::from("/dev/null")),
                level: Level::Debug,
                precision: Precision::Second,
            },
            out: Output::File {
                path: PathBuf::from("/dev/null"),
                file: w,
            },
        };
        let writer = std::thread::spawn(move || writer_loop(rx, vec![sink]));
        let (done_tx, done_rx) = channel();
        std::thread::spawn(move || {
            for i in 0..BURST {
                let _ = tx.send(Msg::Line(record(i)));
            }
            let _ = done_tx.send(());
        });
        assert!(
            done_rx.recv_timeout(Duration::from_secs(60)).is_ok(),
            "logging blocked while the sink was stalled"
        );
        let reader = drain(r);
        writer.join().unwrap(); // ok: test code
        assert_eq!(reader.join().unwrap(), BURST, "ours lost lines"); // ok: test code

        // tracing-appender, default (lossy): the calls return, the lines over its queue are lost.
        let (r, w) = stalled_pipe();
        let (mut nb, guard) = tracing_appender::non_blocking(w);
        let dropped = nb.error_counter();
        for i in 0..BURST {
            let _ = nb.write_all(format_line(&record(i), Precision::Second).as_bytes());
        }
        let reader = drain(r);
        drop(nb);
        drop(guard);
        let written = reader.join().unwrap(); // ok: test code
        assert!(written < BURST, "tracing-appender kept all {written} lines");
        assert_eq!(written + dropped.dropped_lines(), BURST);

        // tracing-appender, lossy(false): the thread that logs blocks until the sink drains.
        let (r, w) = stalled_pipe();
        let (mut nb, guard) = tracing_appender::non_blocking::NonBlockingBuilder::default()
            .lossy(false)
            .finish(w);
        let sent = Arc::new(AtomicUsize::new(0));
        let counter = Arc::clone(&sent);
        let logger = std::thread::spawn(move || {
            for i in 0..BURST {
                let _ = nb.write_all(format_line(&record(i), Precision::Second).as_bytes());
                counter.fetch_add(1, Ordering::Relaxed);
            }
        });
        // Blocked = no progress for half a second, short of the burst.
        let deadline = Instant::now() + Duration::from_secs(60);
        let mut last = usize::MAX;
        loop {
            std::thread::sleep(Duration::from_millis(500));
            let now = sent.load(Ordering::Relaxed);
            if now == last || Instant::now() > deadline {
                break;
            }
            last = now;
        }
        let stuck_at = sent.load(Ordering::Relaxed);
        assert!(stuck_at < BURST, "the logging thread never blocked");
        assert!(!logger.is_finished());
        let reader = drain(r);
        logger.join().unwrap(); // ok: test code
        drop(guard);
        assert_eq!(reader.join().unwrap(), BURST); // ok: test code
    }
}
