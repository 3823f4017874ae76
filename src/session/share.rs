//! Connection sharing (`connection_sharing = 1` on a TLS-terminating route with a
//! `[connection_pool]`; TLS clients, and plain clients of servers that renew their
//! nonce, as `pool_auth` says): a session's server connection goes back to the pool while
//! the client is idle, and its next command runs on a pooled connection of the same
//! destination and account with the session restored.
//!
//! The session is driven command by command: the router reads each client command
//! whole (one packet), classifies it (`share_state`), makes sure a server connection is
//! linked, forwards the command unchanged and relays the response unchanged while an
//! [`Exchange`] follows it to its end (text, binary, multi-result, LOCAL INFILE,
//! COM_STMT_FETCH). Only then — a *safe point*: whole response seen, no partial packet,
//! no pipelined client bytes, status flags saying no transaction and autocommit on, the
//! session neither pinned nor held (`share_state`) — and after the client has stayed
//! idle for `connection_sharing_delay`, is the connection unlinked:
//!
//! * **Stash**: it is parked as it is (no reset), tagged with its account and with this
//!   session as owner (`pooled::stash`). While unlinked, the router keeps watching
//!   nothing of it; the pool's liveness check drops it if the server closes it.
//! * **Relink** (the next command): the session's own connection if it is still parked
//!   (nothing to restore); else the warmest parked connection of the same destination,
//!   server TLS, capabilities and **account** (user name), on which the router sends
//!   COM_RESET_CONNECTION (no re-authentication: same account), COM_INIT_DB for the
//!   schema, one `SET` restoring the login's character set and every recorded session
//!   variable, and, after a result set, a generated SELECT of the same row count so
//!   that `FOUND_ROWS()` and `ROW_COUNT()` answer as before. If none is parked the
//!   session waits (up to the route's `connect_timeout`) for one to be parked on its
//!   worker; then, or when restoring fails on three connections, the client gets error
//!   2013 and the session ends. When the server refuses a restore step (the session's
//!   schema was dropped meanwhile), the reset connection goes back to the pool and only
//!   that session ends, with 2013 naming the server's answer.
//!
//! Why the same account only: the router never knows a password (see `pool_auth`), so
//! it cannot log a session in on a fresh connection or COM_CHANGE_USER to another
//! account. A shared session therefore never opens a server connection after its
//! login: sessions of one account share the connections their logins opened, minus
//! those the pool's bound closed. A session that pins while holding one keeps it, so
//! `max_idle_server_connections` should exceed the number of sessions of an account
//! that pin at once.
//!
//! Pools are per I/O worker (a socket stays on the runtime that registered it): a
//! session only meets the connections of its own worker.
//!
//! `CONNECTION_ID()` changes when a session moves (as with MySQL Router); `KILL`
//! with an id the client read earlier reaches whatever session is on that connection
//! now — the same limitation as MySQL Router's.

use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::time::Duration;

use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::net::TcpStream;

use super::pool::Key;
use super::pooled::{self, Parked};
use super::share_state::{self, Effect, ShareState};
use super::stream::MaybeTls;
use super::terminate::Session;
use crate::protocol::caps::{flag, status, Caps};
use crate::protocol::errors;
use crate::protocol::exchange::Exchange;
use crate::protocol::frame::le24;
use crate::protocol::frame::{Packet, MAX_PAYLOAD};
use crate::protocol::response::{Outcome, ResponseTracker, Turn};

/// Session ids of shared sessions (owners of stashed connections).
static NEXT_ID: AtomicU64 = AtomicU64::new(1);

/// What the route decides for its shared sessions.
#[derive(Debug, Clone, Copy)]
pub struct Params {
    /// `connection_sharing_delay`.
    pub delay: Duration,
    /// How long a session waits for an idle connection of its account.
    pub wait: Duration,
    /// `net_buffer_length`.
    pub buffer: usize,
}

const CR_SERVER_LOST: u16 = 2013;

/// Client bytes read ahead, split into packets on demand.
struct ClientIn {
    buf: Vec<u8>,
    tmp: Vec<u8>,
}

impl ClientIn {
    fn new(size: usize) -> Self {
        ClientIn {
            buf: Vec::new(),
            tmp: vec![0u8; size.max(16 * 1024)],
        }
    }

    /// One read (cancel-safe: nothing is consumed unless it completes).
    async fn read_more<R: AsyncRead + Unpin>(&mut self, r: &mut R) -> usize {
        match r.read(&mut self.tmp).await {
            Ok(n) => {
                self.buf.extend_from_slice(&self.tmp[..n]);
                n
            }
            Err(_) => 0,
        }
    }

    /// Length (header included) of the first packet when it is all buffered.
    fn packet_len(&self) -> Option<usize> {
        let h = self.buf.get(..4)?;
        let n = 4 + le24(h);
        (self.buf.len() >= n).then_some(n)
    }
}

/// A linked server connection and what follows its bytes.
struct Link {
    server: MaybeTls<TcpStream>,
    greeting: Vec<u8>,
    ex: Exchange,
    /// The exchange could not follow the bytes.
    lost: bool,
}

impl Link {
    fn new(server: MaybeTls<TcpStream>, greeting: Vec<u8>, caps: u64) -> Self {
        Link {
            server,
            greeting,
            ex: Exchange::new(Caps(caps), status::AUTOCOMMIT),
            lost: false,
        }
    }

    /// A safe point where the connection holds nothing of a transaction.
    fn sharable(&self) -> bool {
        let st = self.ex.status();
        !self.lost
            && self.ex.at_safe_point()
            && !self.ex.streaming()
            && !self.ex.server_spoke_unasked()
            && st & status::IN_TRANS == 0
            && st & status::AUTOCOMMIT != 0
            && st & status::CURSOR_EXISTS == 0
    }
}

/// How the session ended.
enum End {
    /// The client quit (COM_QUIT or end of stream) at a safe point.
    Quit,
    /// Everything else: close what is left.
    Closed,
    /// COM_CHANGE_USER on a plain server hop: handed to the guarded relay.
    HandOff,
}

/// What [`run`] leaves to its caller.
pub enum Ran<C> {
    /// The session is over.
    Done,
    /// The client sent COM_CHANGE_USER while linked to a connection over a plain
    /// server hop. Sharing ends for good with it (see [`share_state`]); the rest of
    /// the session, starting with `pending` (that command and whatever the client sent
    /// after it), goes through the change-user guard (`session::change_user`) so that a
    /// password the client sends in clear reaches the server RSA-encrypted.
    HandOff {
        client: MaybeTls<C>,
        server: TcpStream,
        /// The greeting of the connection (its nonce is what the server checks).
        greeting: Vec<u8>,
        pending: Vec<u8>,
    },
}

/// Runs a shared session after its login until either side ends it.
pub async fn run<C>(
    mut client: MaybeTls<C>,
    server: MaybeTls<TcpStream>,
    session: &Session,
    params: Params,
) -> Ran<C>
where
    C: AsyncRead + AsyncWrite + Unpin,
{
    let id = NEXT_ID.fetch_add(1, Relaxed);
    let key = session.key.clone();
    let account = session.user.clone();
    let caps = session.caps;
    let mut state = ShareState::new(session.schema.clone(), session.charset);
    // Never unlinked before the first command: a client that pins at once (a
    // temporary table, a user variable) keeps the connection its login opened.
    state.hold = Some("the login");
    let mut link = Some(Link::new(server, session.greeting.clone(), caps));
    let mut unlinked = false;
    let mut cin = ClientIn::new(params.buffer);
    let mut sbuf = vec![0u8; params.buffer.max(16 * 1024)];

    let end = 'session: loop {
        // 1. Wait for a whole client packet; unlink when idle long enough.
        let n = loop {
            if let Some(n) = cin.packet_len() {
                break n;
            }
            enum Idle {
                Client(usize),
                Server,
                Unlink,
            }
            let idle = match link.as_mut() {
                Some(l)
                    if params.delay.is_zero()
                        && state.blocked_by().is_none()
                        && l.sharable()
                        && cin.buf.is_empty() =>
                {
                    // connection_sharing_delay = 0: at once, not after a timer tick.
                    Idle::Unlink
                }
                Some(l) => {
                    let may_unlink =
                        state.blocked_by().is_none() && l.sharable() && cin.buf.is_empty();
                    tokio::select! {
                        r = cin.read_more(&mut client) => Idle::Client(r),
                        r = l.server.read(&mut sbuf) => {
                            // The server spoke while the client was idle (KILL,
                            // shutdown, wait_timeout): pass it on and end.
                            if let Ok(k) = r {
                                if k > 0 && client.write_all(&sbuf[..k]).await.is_ok() {
                                    let _ = client.flush().await;
                                }
                            }
                            Idle::Server
                        }
                        _ = tokio::time::sleep(params.delay), if may_unlink => Idle::Unlink,
                    }
                }
                None => Idle::Client(cin.read_more(&mut client).await),
            };
            match idle {
                Idle::Client(0) => {
                    let quit = link
                        .as_ref()
                        .is_none_or(|l| l.sharable() && cin.buf.is_empty());
                    break 'session if quit { End::Quit } else { End::Closed };
                }
                Idle::Client(_) => {}
                Idle::Server => break 'session End::Closed,
                Idle::Unlink => {
                    if let Some(l) = link.take() {
                        pooled::stash(
                            key.clone(),
                            Parked {
                                server: l.server,
                                greeting: l.greeting,
                                account: account.clone(),
                                owner: id,
                                schema: known_schema(&state),
                            },
                        );
                        pooled::demand(&key, &account, 1);
                        unlinked = true;
                        tracing::debug!(target: "routing", "connection sharing: session {id} unlinked from its server connection to '{}'", key.destination);
                    }
                }
            }
        };

        // 2. The command.
        let payload_len = n - 4;
        let seq = cin.buf[3];
        if seq == 0 && payload_len == 1 && cin.buf[4] == 0x01 {
            cin.buf.drain(..n);
            break End::Quit;
        }
        let effect = if seq != 0 {
            Effect::Pin("a packet out of sequence")
        } else {
            share_state::classify(&cin.buf[4..n], payload_len < MAX_PAYLOAD, caps)
        };
        let is_query = cin.buf.get(4) == Some(&0x03);

        // 3. A server connection.
        if link.is_none() {
            // A session without a schema whose command sets one may take a connection
            // that has a schema: the restore sets the new one first.
            let next_schema = match &effect {
                Effect::Schema(s) if state.schema.is_empty() => Some(s.as_slice()),
                _ => None,
            };
            match relink(&key, &account, id, caps, &state, next_schema, params.wait).await {
                Ok(l) => {
                    link = Some(l);
                    pooled::demand(&key, &account, -1);
                    unlinked = false;
                }
                Err(why) => {
                    let e = errors::classic_error41(
                        1,
                        CR_SERVER_LOST,
                        "HY000",
                        &format!("Lost connection to MySQL server during query (connection sharing: {why})"),
                    );
                    let _ = client.write_all(&e).await;
                    let _ = client.flush().await;
                    tracing::warn!(target: "routing", "connection sharing: session {id} to '{}' closed: {why}", key.destination);
                    break End::Closed;
                }
            }
        }
        let Some(l) = link.as_mut() else {
            break End::Closed;
        };
        if cin.buf.get(4) == Some(&0x11) && matches!(l.server, MaybeTls::Plain(_)) {
            break End::HandOff;
        }

        // 4. Forward the command, then relay until the response ended.
        if forward_client(l, &cin.buf[..n]).await.is_err() {
            break End::Closed;
        }
        cin.buf.drain(..n);
        loop {
            if l.lost {
                break;
            }
            let turn_done = l.ex.at_safe_point();
            if turn_done {
                break;
            }
            let client_turn = l.ex.client_may_send();
            if client_turn {
                if let Some(n) = cin.packet_len() {
                    if forward_client(l, &cin.buf[..n]).await.is_err() {
                        break 'session End::Closed;
                    }
                    cin.buf.drain(..n);
                    continue;
                }
            }
            tokio::select! {
                r = l.server.read(&mut sbuf) => {
                    let k = match r {
                        Ok(k) if k > 0 => k,
                        _ => break 'session End::Closed,
                    };
                    if l.ex.on_server(&sbuf[..k]).is_err() {
                        l.lost = true;
                    }
                    if client.write_all(&sbuf[..k]).await.is_err() || client.flush().await.is_err() {
                        break 'session End::Closed;
                    }
                }
                r = cin.read_more(&mut client), if client_turn => {
                    if r == 0 {
                        break 'session End::Closed;
                    }
                }
            }
        }
        if l.lost {
            // The exchange lost the thread: relay the rest plainly on this connection.
            state.pinned = Some("a protocol exchange the router could not follow");
            if !cin.buf.is_empty() {
                if l.server.write_all(&cin.buf).await.is_err() {
                    break End::Closed;
                }
                cin.buf.clear();
            }
            let Some(l) = link.take() else {
                break End::Closed;
            };
            super::terminate::relay(client, l.server, params.buffer).await;
            return Ran::Done;
        }

        // 5. What the response means for sharing.
        let outcome = l.ex.last_outcome();
        let ok = !matches!(outcome, Some(Outcome::Err));
        state.apply(effect, ok);
        share_state::judge(&mut state, is_query, outcome, l.ex.response(), l.ex.caps());
        if l.ex.server_spoke_unasked() {
            break End::Closed;
        }
    };

    if unlinked {
        pooled::demand(&key, &account, -1);
    }
    match (end, link) {
        (
            End::HandOff,
            Some(Link {
                server: MaybeTls::Plain(server),
                greeting,
                ..
            }),
        ) => {
            tracing::debug!(target: "routing", "connection sharing: session {id} sent COM_CHANGE_USER: sharing ends, the change-user guard takes the session");
            return Ran::HandOff {
                client,
                server,
                greeting,
                pending: std::mem::take(&mut cin.buf),
            };
        }
        (End::Quit, Some(l)) if l.sharable() => {
            let _ = tokio::time::timeout(Duration::from_secs(1), client.shutdown()).await;
            // After COM_CHANGE_USER the connection is not the login account's: park it
            // untagged (new clients log in on it; no shared session takes it).
            let account = if state.user_changed {
                Vec::new()
            } else {
                account
            };
            let schema = known_schema(&state);
            pooled::park(key, l.server, l.greeting, account, schema).await;
        }
        (_, Some(mut l)) => {
            let _ = l.server.shutdown().await;
            let _ = client.shutdown().await;
        }
        (_, None) => {
            let _ = client.shutdown().await;
            // The session ends unlinked: its stashed connection (left at a safe point)
            // is reset and parked like any other, no longer owned by anyone.
            if let Some(p) = pooled::take_own(&key, &account, id) {
                pooled::park(key, p.server, p.greeting, account, p.schema).await;
            }
        }
    }
    Ran::Done
}

/// The schema a session's connection has when the session ends, if the router knows
/// it: not after a pin (a procedure, a prepared or multi-statement may have changed
/// it unseen) nor after COM_CHANGE_USER.
fn known_schema(state: &ShareState) -> Option<Vec<u8>> {
    (state.pinned.is_none() && !state.user_changed).then(|| state.schema.clone())
}

async fn forward_client(l: &mut Link, bytes: &[u8]) -> std::io::Result<()> {
    if l.ex.on_client(bytes).is_err() {
        l.lost = true;
    }
    l.server.write_all(bytes).await?;
    l.server.flush().await?;
    Ok(())
}

/// A parked connection for the session: its own as it is, or another of its
/// account, reset and restored (up to three tries when connections fail); `Err`
/// says why the session cannot go on.
///
/// A session without a schema takes only a connection without one (a reset keeps a
/// connection's schema and nothing clears it), unless its next command sets one
/// (`next_schema`): then a connection with a schema is restored with that one (a
/// refusal — no such schema — ends the session, as any refused restore does).
async fn relink(
    key: &Key,
    account: &[u8],
    id: u64,
    caps: u64,
    state: &ShareState,
    next_schema: Option<&[u8]>,
    wait: Duration,
) -> Result<Link, String> {
    let schema_less = state.schema.is_empty() && next_schema.is_none();
    for _ in 0..3 {
        let Some((mut parked, own)) = pooled::wait_for(key, account, id, schema_less, wait).await
        else {
            return Err(format!(
                "no server connection of this account became free within {} s",
                wait.as_secs()
            ));
        };
        if own {
            tracing::debug!(target: "routing", "connection sharing: session {id} took its own server connection back");
            return Ok(Link::new(parked.server, parked.greeting, caps));
        }
        let limit = wait.max(Duration::from_secs(1));
        let schema = match next_schema {
            Some(next) if !parked.schema_less() => next,
            _ => &state.schema,
        };
        match tokio::time::timeout(limit, restore(&mut parked.server, caps, state, schema)).await {
            Ok(Ok(())) => {
                tracing::debug!(target: "routing", "connection sharing: session {id} moved to another server connection to '{}'", key.destination);
                return Ok(Link::new(parked.server, parked.greeting, caps));
            }
            Ok(Err(Restore::Refused(why))) => {
                // The server refused the session's state (its schema was dropped, a
                // variable's value is no longer accepted): the connection is fine,
                // reset, and goes back; the session cannot be restored anywhere.
                // Which restore step failed decides its schema: unknown.
                pooled::stash(
                    key.clone(),
                    Parked {
                        owner: 0,
                        schema: None,
                        ..parked
                    },
                );
                return Err(format!("the session could not be restored: {why}"));
            }
            Ok(Err(Restore::Failed(why))) => {
                tracing::info!(target: "routing", "connection sharing: restoring session {id} on a server connection to '{}' failed ({why}); trying another", key.destination);
            }
            Err(_) => {
                tracing::info!(target: "routing", "connection sharing: restoring session {id} on a server connection to '{}' timed out; trying another", key.destination);
            }
        }
        let mut s = parked.server;
        let _ = s.shutdown().await;
    }
    Err("restoring the session failed on three server connections".into())
}

/// Why a restore did not complete.
enum Restore {
    /// The server answered a restore step with an error.
    Refused(String),
    /// The connection failed (I/O, protocol).
    Failed(String),
}

/// Resets a connection of the same account and restores the session's state on it,
/// with `schema` (the session's, or the one its next command sets).
async fn restore(
    server: &mut MaybeTls<TcpStream>,
    caps: u64,
    state: &ShareState,
    schema: &[u8],
) -> Result<(), Restore> {
    command(server, caps, &[0x1f]).await?;
    if !schema.is_empty() {
        let mut p = vec![0x02];
        p.extend_from_slice(schema);
        command(server, caps, &p).await?;
    }
    let mut set = vec![0x03];
    if caps & flag::QUERY_ATTRIBUTES != 0 {
        set.extend_from_slice(&[0, 1]);
    }
    let with_attrs = set.len();
    set.extend_from_slice(state.restore_sql().as_bytes());
    command(server, caps, &set).await?;
    if let Some(n) = state.last_rows {
        set.truncate(with_attrs);
        set.extend_from_slice(share_state::rows_sql(n).as_bytes());
        command(server, caps, &set).await?;
    }
    Ok(())
}

/// Sends one command and reads its whole response; `Err` unless it ends in OK.
async fn command(
    server: &mut MaybeTls<TcpStream>,
    caps: u64,
    payload: &[u8],
) -> Result<(), Restore> {
    let io = |e: std::io::Error| Restore::Failed(e.to_string());
    let mut pkt = crate::protocol::frame::header(payload.len(), 0).to_vec();
    pkt.extend_from_slice(payload);
    server.write_all(&pkt).await.map_err(io)?;
    server.flush().await.map_err(io)?;
    let mut t = ResponseTracker::start(&Packet::from_payload(0, payload, true), Caps(caps))
        .map_err(|e| Restore::Failed(format!("{e:?}")))?;
    let mut buf = Vec::new();
    loop {
        if let Turn::Done(o) = t.turn() {
            return match o {
                Outcome::Ok { .. } => Ok(()),
                Outcome::Err => Err(Restore::Refused(format!(
                    "the server answered {}",
                    err_text(&buf)
                ))),
                _ => Err(Restore::Failed("unexpected response".into())),
            };
        }
        let mut hdr = [0u8; 4];
        server.read_exact(&mut hdr).await.map_err(io)?;
        let len = le24(&hdr);
        if len >= MAX_PAYLOAD {
            return Err(Restore::Failed("a packet too large".into()));
        }
        buf.resize(len, 0);
        server.read_exact(&mut buf).await.map_err(io)?;
        t.server_packet(&Packet::from_payload(hdr[3], &buf, true))
            .map_err(|e| Restore::Failed(format!("{e:?}")))?;
    }
}

fn err_text(p: &[u8]) -> String {
    match p.first() {
        Some(0xFF) if p.len() > 3 => {
            let code = u16::from_le_bytes([p[1], p[2]]);
            let msg = p.get(9..).unwrap_or_default();
            format!("{code} {}", String::from_utf8_lossy(msg))
        }
        _ => "not OK".into(),
    }
}
