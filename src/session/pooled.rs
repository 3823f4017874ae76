//! The idle server connections of this process: one [`Pool`] per I/O worker thread
//! (a connection stays on the runtime whose reactor registered its socket), bounded
//! together by `[connection_pool] max_idle_server_connections` (a [`Budget`]).
//!
//! * Parking ([`park`]): after a client quit at a safe point of a TLS-terminated
//!   session, its server connection gets COM_RESET_CONNECTION (rolls back, drops
//!   temporary tables, user variables, prepared statements, locks, resets session
//!   variables); only when the server answers OK is it parked, with the server's
//!   original greeting (a later client is greeted with it).
//! * Taking ([`take`]): the warmest connection of the key that has not outstayed
//!   `idle_timeout` and whose socket is still quiet; a socket that is readable (the
//!   server's ERR before it closes: KILL, wait_timeout, shutdown) or closed is dropped,
//!   never handed out.
//! * A sweeper task per worker drops expired and dead connections every second, so
//!   neither the server nor the budget keeps them.
//! * Sharing ([`stash`], [`take_for`], [`wait_for`]; see `session::share`): an idle
//!   shared session's connection is parked *without* a reset, tagged with its account
//!   and its owner; the owner takes it back as it is, another session of the same
//!   account takes it and resets it. Since the router cannot log a session in again
//!   without its password, a worker keeps, for every account with unlinked sessions,
//!   its idle connections of that account: they are not expired by `idle_timeout`, not
//!   handed to new clients of another account, and the account's last one is kept
//!   even over `max_idle_server_connections`.

use std::cell::RefCell;
use std::collections::HashMap;
use std::os::fd::{AsRawFd, RawFd};
use std::sync::{Arc, OnceLock};
use std::time::{Duration, Instant};

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

use super::pool::{Budget, Key, Pool};
use super::stream::MaybeTls;
use crate::config::pool::PoolConfig;
use crate::protocol::frame::le24;
use crate::stats::pool::STATS as STATS_HOOK;

/// A parked server connection: authenticated, reset, idle.
#[derive(Debug)]
pub struct Parked {
    pub server: MaybeTls<TcpStream>,
    /// The greeting the server sent when the connection was opened (its thread id and
    /// the nonce it checks COM_CHANGE_USER against).
    pub greeting: Vec<u8>,
    /// The account (user name) the connection is logged in as; empty when unknown
    /// (never taken by a shared session then).
    pub account: Vec<u8>,
    /// The shared session whose state the connection holds (0: reset, nobody's).
    pub owner: u64,
    /// The connection's default schema when the router knows it (empty: none), `None`
    /// when it does not. COM_RESET_CONNECTION keeps a connection's schema and no
    /// statement clears one, so a shared session without a schema may only move to a
    /// connection known to have none ([`take_for`]).
    pub schema: Option<Vec<u8>>,
}

impl Parked {
    /// Known to have no default schema.
    pub fn schema_less(&self) -> bool {
        self.schema.as_deref() == Some(&[][..])
    }
}

struct Global {
    cfg: PoolConfig,
    budget: Budget,
}

static GLOBAL: OnceLock<Global> = OnceLock::new();

thread_local! {
    static POOL: RefCell<Option<Pool<Parked>>> = const { RefCell::new(None) };
    /// Unlinked shared sessions of this worker per (key, account): their accounts'
    /// idle connections are kept for them.
    static DEMAND: RefCell<HashMap<(Key, Vec<u8>), usize>> = RefCell::new(HashMap::new());
    /// Woken whenever a connection is parked on this worker (sessions waiting for one).
    static PARKED: Arc<tokio::sync::Notify> = Arc::new(tokio::sync::Notify::new());
}

/// Whether unlinked sessions of this worker wait for connections of `account` under `key`.
fn in_demand(key: &Key, account: &[u8]) -> bool {
    !account.is_empty()
        && DEMAND.with(|d| {
            d.borrow()
                .get(&(key.clone(), account.to_vec()))
                .is_some_and(|&n| n > 0)
        })
}

/// A shared session of this worker unlinked from its server connection (`+1`) or
/// linked again / ended (`-1`).
pub fn demand(key: &Key, account: &[u8], delta: isize) {
    DEMAND.with(|d| {
        let mut d = d.borrow_mut();
        let k = (key.clone(), account.to_vec());
        let n = d.get(&k).copied().unwrap_or(0) as isize + delta;
        if n <= 0 {
            d.remove(&k);
        } else {
            d.insert(k, n as usize);
        }
    });
}

/// Sets the process's pool configuration (once, at start-up).
pub fn configure(cfg: PoolConfig) {
    let _ = GLOBAL.set(Global {
        cfg,
        budget: Budget::new(cfg.max_idle_server_connections as usize),
    });
}

/// Whether server connections are pooled at all.
pub fn enabled() -> bool {
    GLOBAL.get().is_some_and(|g| g.cfg.enabled())
}

/// Connections parked now, over all workers.
pub fn idle_count() -> usize {
    GLOBAL.get().map_or(0, |g| g.budget.used())
}

fn fd_of(s: &MaybeTls<TcpStream>) -> RawFd {
    match s {
        MaybeTls::Plain(t) => t.as_raw_fd(),
        MaybeTls::ClientTls(t) => t.get_ref().0.as_raw_fd(),
        MaybeTls::ServerTls(t) => t.get_ref().0.as_raw_fd(),
    }
}

/// An idle connection is alive when its socket has nothing to read and is not closed.
fn is_quiet(s: &MaybeTls<TcpStream>) -> bool {
    let mut b = [0u8; 1];
    // SAFETY: a valid fd owned by `s`, a 1-byte buffer we own; MSG_PEEK consumes nothing.
    let n = unsafe {
        libc::recv(
            fd_of(s),
            b.as_mut_ptr().cast(),
            1,
            libc::MSG_PEEK | libc::MSG_DONTWAIT,
        )
    };
    n < 0
        && matches!(
            std::io::Error::last_os_error().raw_os_error(),
            Some(libc::EAGAIN) | Some(libc::EINTR)
        )
}

const COM_QUIT: [u8; 5] = [1, 0, 0, 0, 0x01];
const COM_RESET_CONNECTION: [u8; 5] = [1, 0, 0, 0, 0x1f];

/// Says goodbye politely (COM_QUIT), so the server does not count an aborted client.
async fn close(mut s: MaybeTls<TcpStream>) {
    let _ = tokio::time::timeout(Duration::from_secs(1), async {
        let _ = s.write_all(&COM_QUIT).await;
        let _ = s.flush().await;
        let _ = s.shutdown().await;
    })
    .await;
}

/// Resets `server` and parks it under `key`; closes it when the pool is full or off,
/// or when the reset fails. `account` is the user it is logged in as, `schema` its
/// default schema if known (the reset keeps it).
pub async fn park(
    key: Key,
    mut server: MaybeTls<TcpStream>,
    greeting: Vec<u8>,
    account: Vec<u8>,
    schema: Option<Vec<u8>>,
) {
    let Some(g) = GLOBAL.get() else {
        return close(server).await;
    };
    // idle_timeout = 0: nothing could ever be taken, so do not park at all.
    if !g.cfg.enabled() || g.cfg.idle_timeout.is_zero() || !g.budget.try_reserve() {
        STATS_HOOK.dropped(1);
        return close(server).await;
    }
    let reset = tokio::time::timeout(Duration::from_secs(2), async {
        server.write_all(&COM_RESET_CONNECTION).await?;
        server.flush().await?;
        let mut hdr = [0u8; 5];
        server.read_exact(&mut hdr).await?;
        let len = le24(&hdr);
        // OK (header 0x00, sequence id 1; session-state data may make it long, but
        // never megabytes); anything else is not a clean reset.
        if hdr[4] != 0x00 || hdr[3] != 1 || len == 0 || len > 1 << 16 {
            return Ok::<bool, std::io::Error>(false);
        }
        let mut rest = vec![0u8; len - 1];
        server.read_exact(&mut rest).await?;
        Ok(true)
    })
    .await;
    if !matches!(reset, Ok(Ok(true))) {
        g.budget.release(1);
        STATS_HOOK.dropped(1);
        tracing::debug!(target: "routing", "connection pool: reset of a server connection to '{}' failed, closing it", key.destination);
        return close(server).await;
    }
    tracing::debug!(target: "routing", "connection pool: parked a server connection to '{}'", key.destination);
    STATS_HOOK.parked();
    put(
        key,
        Parked {
            server,
            greeting,
            account,
            owner: 0,
            schema,
        },
        g,
    );
}

/// Parks the connection of an idle shared session as it is (no reset), owned by
/// session `owner`. Over the pool's bound it is closed instead — unless it would be
/// its account's only idle connection on this worker of its kind (without a schema,
/// or with one), which unlinked sessions need: a session without a schema can only
/// take one without, and one with a schema would otherwise take those.
pub fn stash(key: Key, parked: Parked) {
    let Some(g) = GLOBAL.get() else {
        tokio::spawn(close(parked.server));
        return;
    };
    if !g.budget.try_reserve() {
        let acct = parked.account.clone();
        let schema_less = parked.schema_less();
        let others = POOL.with(|p| {
            p.borrow().as_ref().map_or(0, |p| {
                p.count(|k, c| *k == key && c.account == acct && c.schema_less() == schema_less)
            })
        });
        if others > 0 {
            tracing::debug!(target: "routing", "connection pool: full, closing a shared server connection to '{}'", key.destination);
            tokio::spawn(close(parked.server));
            return;
        }
        g.budget.force_reserve();
    }
    put(key, parked, g);
}

/// Returns a connection taken by [`take`] that was not used (nothing was sent on it).
pub fn put_back(key: Key, parked: Parked) {
    match GLOBAL.get() {
        Some(g) if g.budget.try_reserve() => put(key, parked, g),
        _ => {
            STATS_HOOK.dropped(1);
            tokio::spawn(close(parked.server));
        }
    }
}

fn put(key: Key, parked: Parked, g: &'static Global) {
    let owned = parked.owner != 0;
    let start_sweeper = POOL.with(|p| {
        let mut p = p.borrow_mut();
        let fresh = p.is_none();
        p.get_or_insert_with(|| Pool::new(g.cfg.idle_timeout))
            .park(key, parked, Instant::now());
        fresh
    });
    gauge_in(owned);
    PARKED.with(|n| n.notify_waiters());
    if start_sweeper {
        tokio::spawn(sweep(g));
    }
}

/// The REST API's gauges: a connection stashed by a shared session (it has an owner)
/// counts as stashed, any other as idle (MySQL Router's two numbers).
fn gauge_in(owned: bool) {
    match owned {
        true => STATS_HOOK.stashed(),
        false => STATS_HOOK.entered(),
    }
}

fn gauge_out(owned: bool, n: u64) {
    match owned {
        true => STATS_HOOK.unstashed(n),
        false => STATS_HOOK.left(n),
    }
}

/// The warmest live parked connection whose key satisfies `matches`, for a new
/// client (never one that unlinked shared sessions of its account wait for).
pub fn take(matches: impl Fn(&Key) -> bool) -> Option<(Key, Parked)> {
    take_where(|k, c| matches(k) && !in_demand(k, &c.account), false)
}

/// For shared session `owner` of `account` under `key`: its own parked connection
/// (`true`: its state is intact), or else the warmest one of the same account (to be
/// reset and restored). A session without a schema (`schema_less`) takes only a
/// connection known to have none; a session with one (COM_INIT_DB sets it) leaves
/// those to the others while any other connection is there.
pub fn take_for(
    key: &Key,
    account: &[u8],
    owner: u64,
    schema_less: bool,
) -> Option<(Parked, bool)> {
    if account.is_empty() {
        return None;
    }
    if let Some((_, p)) = take_where(
        |k, c| c.owner == owner && k == key && c.account == account,
        true,
    ) {
        return Some((p, true));
    }
    let mine = |k: &Key, c: &Parked| k == key && c.account == account;
    let found = match schema_less {
        true => take_where(|k, c| mine(k, c) && c.schema_less(), true),
        false => take_where(|k, c| mine(k, c) && !c.schema_less(), true)
            .or_else(|| take_where(mine, true)),
    };
    found.map(|(_, p)| (p, false))
}

/// The connection stashed by session `owner` itself, if it is still parked (the
/// session is ending and gives it back to the pool).
pub fn take_own(key: &Key, account: &[u8], owner: u64) -> Option<Parked> {
    take_where(
        |k, c| c.owner == owner && k == key && c.account == account,
        true,
    )
    .map(|(_, p)| p)
}

/// Like [`take_for`], waiting up to `timeout` for a connection of the account to be
/// parked on this worker.
pub async fn wait_for(
    key: &Key,
    account: &[u8],
    owner: u64,
    schema_less: bool,
    timeout: Duration,
) -> Option<(Parked, bool)> {
    let deadline = tokio::time::Instant::now() + timeout;
    let notify = PARKED.with(|n| n.clone());
    loop {
        let parked = notify.notified();
        tokio::pin!(parked);
        parked.as_mut().enable();
        if let Some(x) = take_for(key, account, owner, schema_less) {
            return Some(x);
        }
        if tokio::time::timeout_at(deadline, parked).await.is_err() {
            return take_for(key, account, owner, schema_less);
        }
    }
}

/// `kept`: also connections past the idle timeout that the sweeper kept for sharing.
fn take_where(matches: impl Fn(&Key, &Parked) -> bool, kept: bool) -> Option<(Key, Parked)> {
    let g = GLOBAL.get()?;
    loop {
        let (key, parked) = POOL.with(|p| {
            let mut p = p.borrow_mut();
            let p = p.as_mut()?;
            match kept {
                true => p.take_kept(&matches),
                false => p.take(&matches, Instant::now()),
            }
        })?;
        g.budget.release(1);
        gauge_out(parked.owner != 0, 1);
        if is_quiet(&parked.server) {
            return Some((key, parked));
        }
        STATS_HOOK.dropped(1);
        tracing::debug!(target: "routing", "connection pool: dropped a closed server connection to '{}'", key.destination);
    }
}

/// The greeting of the warmest parked connection to `destination` (any capabilities),
/// taken out of the pool: the router greets a new client with it before it knows the
/// client's capabilities.
pub fn take_any(destination: &str, server_tls: bool) -> Option<(Key, Parked)> {
    take(|k| k.destination == destination && k.server_tls == server_tls)
}

/// Drops expired and dead connections of this worker, every second while any are
/// parked.
async fn sweep(g: &'static Global) {
    loop {
        tokio::time::sleep(
            Duration::from_secs(1).min(g.cfg.idle_timeout.max(Duration::from_millis(100))),
        )
        .await;
        let (gone, empty) = POOL.with(|p| {
            let mut p = p.borrow_mut();
            let Some(pool) = p.as_mut() else {
                return (Vec::new(), true);
            };
            let mut gone = pool.expire(Instant::now(), |k, c| in_demand(k, &c.account));
            gone.extend(pool.remove_where(|c, _| !is_quiet(&c.server)));
            (gone, pool.is_empty())
        });
        if !gone.is_empty() {
            g.budget.release(gone.len());
            let stashed = gone.iter().filter(|c| c.owner != 0).count() as u64;
            gauge_out(true, stashed);
            gauge_out(false, gone.len() as u64 - stashed);
            STATS_HOOK.dropped(gone.len() as u64);
            tracing::debug!(target: "routing", "connection pool: closed {} idle server connection(s) (idle_timeout or closed by the server)", gone.len());
        }
        for c in gone {
            close(c.server).await;
        }
        if empty {
            POOL.with(|p| {
                let mut p = p.borrow_mut();
                if p.as_ref().is_some_and(|x| x.is_empty()) {
                    *p = None;
                }
            });
            // `put` starts a new sweeper when the pool is created again.
            if POOL.with(|p| p.borrow().is_none()) {
                return;
            }
        }
    }
}
