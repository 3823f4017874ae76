//! One client session on a route that terminates TLS: the router's own handshake
//! (`session::terminate`), counted for `max_connect_errors` by the same rules as a
//! watched PASSTHROUGH handshake, then the relay between the two hops' streams.

use std::net::IpAddr;

use tokio::io::{AsyncRead, AsyncWrite};

use super::Route;
use crate::config::addr::split_host_port;
use crate::protocol::caps::flag;
use crate::session::change_user::Guard;
use crate::session::compress::Compressed;
use crate::session::stream::{Counted, MaybeTls, Prefixed};
use crate::session::terminate::Session;
use crate::session::terminate::{self, End, ServerSide};
use crate::session::tls::Contexts;
use crate::session::{pool_relay, pooled, share};
use crate::stats::connections::Live;
use tokio::net::TcpStream;

impl Route {
    /// Handshake (terminated, counted for `max_connect_errors`) then relay; the bytes
    /// the client sends and receives reach `live` as they move.
    #[allow(clippy::too_many_arguments)]
    pub(super) async fn serve_terminated<C>(
        &self,
        client: C,
        server: ServerSide,
        idx: usize,
        peer: &str,
        ip: Option<IpAddr>,
        tls: &Contexts,
        live: &Live,
    ) -> std::io::Result<()>
    where
        C: AsyncRead + AsyncWrite + Unpin,
    {
        let sec = &self.cfg.section;
        let addr = self.keys[idx].as_str();
        let host = split_host_port(addr)
            .map(|(h, _)| h)
            .unwrap_or(addr)
            .to_string();
        let client = Counted::new(client, &live.up, &live.down);
        let end = tokio::time::timeout(
            self.cfg.client_connect_timeout,
            terminate::handshake(
                client,
                server,
                || async {
                    super::connect::connect(&self.cfg.destinations[idx], self.cfg.connect_timeout)
                        .await
                        .ok()
                },
                addr,
                &host,
                &self.cfg.tls,
                tls,
            ),
        )
        .await;
        let failed = match end {
            Ok(End::Authenticated {
                client,
                server,
                server_refused,
                session,
            }) => {
                if let Some(ip) = ip {
                    self.admission.reset(ip);
                }
                if server_refused {
                    return Ok(());
                }
                if session.reused {
                    crate::stats::pool::STATS.reused();
                    tracing::debug!(target: "routing", "[{sec}] {peer} -> {addr}: reusing a pooled server connection");
                } else if pooled::enabled() {
                    crate::stats::pool::STATS.opened();
                }
                let buffer = self.cfg.net_buffer_length;
                match session.client_compression {
                    // The router speaks compression with the client, none with the
                    // (plain) server: the change-user guard sees every exchange.
                    Some(codec) => {
                        let client = MaybeTls::Plain(Compressed::new(client, codec));
                        self.after_login(client, server, session, buffer).await
                    }
                    None => self.after_login(client, server, session, buffer).await,
                }
                return Ok(());
            }
            Ok(End::Bad(why)) => {
                tracing::info!(target: "routing", "[{sec}] {peer} sent a bad handshake packet: {why}");
                true
            }
            Ok(End::ClientClosed { sent }) => {
                if sent {
                    tracing::info!(target: "routing", "[{sec}] {peer} closed connection before finishing handshake");
                }
                sent
            }
            Ok(End::ServerFailed(why)) => {
                tracing::warn!(target: "routing", "[{sec}] handshake with the server for {peer} failed: {why}");
                false
            }
            Ok(End::Refused(why)) => {
                tracing::info!(target: "routing", "[{sec}] {peer} refused: {why}");
                false
            }
            Err(_) => self.handshake_timed_out(peer),
        };
        if failed {
            self.count_failure(ip, peer);
        }
        Ok(())
    }

    /// The session after its login: shared, pooled or plainly relayed, with the
    /// change-user guard where the client is TLS and the server hop plain. `client` is
    /// the client's stream as the session speaks it (compression undone).
    async fn after_login<C>(
        &self,
        client: MaybeTls<C>,
        server: MaybeTls<TcpStream>,
        session: Session,
        buffer: usize,
    ) where
        C: AsyncRead + AsyncWrite + Unpin,
    {
        let sec = &self.cfg.section;
        let sharing = self.cfg.connection_sharing
            && crate::config::route::sharing_ignored(sec, &self.cfg.tls).is_none()
            && pooled::enabled()
            && session.poolable()
            // A plain client saw its connection's nonce in clear: shared only on
            // a server that renews it (MySQL), as for parking (session::pool_auth).
            && (session.client_tls || session.renews_nonce)
            && !session.user.is_empty();
        if !sharing {
            return relay_unshared(client, server, session, buffer).await;
        }
        let params = share::Params {
            delay: self.cfg.connection_sharing_delay,
            wait: self
                .cfg
                .connect_timeout
                .max(std::time::Duration::from_secs(1)),
            buffer,
        };
        match share::run(client, server, &session, params).await {
            share::Ran::Done => {}
            share::Ran::HandOff {
                client,
                server,
                greeting,
                pending,
            } => {
                // COM_CHANGE_USER on a plain server hop: the rest of the session
                // unshared (through the change-user guard for a TLS client).
                let client = MaybeTls::Plain(Prefixed::new(pending, client));
                let session = Session {
                    greeting,
                    ..session
                };
                relay_unshared(client, MaybeTls::Plain(server), session, buffer).await;
            }
        }
    }
}

/// An unshared session after its login. A TLS client over a plain server hop gets the
/// change-user guard, so that its COM_CHANGE_USERs have the login's RSA treatment
/// (`session::change_user`); a plain client never sends its password in clear (it
/// encrypts with the server's key itself) and needs none.
async fn relay_unshared<C>(
    client: MaybeTls<C>,
    server: MaybeTls<TcpStream>,
    session: Session,
    buffer: usize,
) where
    C: AsyncRead + AsyncWrite + Unpin,
{
    let guard = session.client_tls && session.caps & (flag::COMPRESS | flag::ZSTD_COMPRESSION) == 0;
    match server {
        MaybeTls::Plain(tcp) if guard => {
            let nonce = terminate::greeting_nonce(&session.greeting).unwrap_or_default();
            let guarded = MaybeTls::Plain(Guard::new(tcp, session.caps, nonce));
            relay_session(client, guarded, session, buffer, |s| match s {
                MaybeTls::Plain(g) => Some(MaybeTls::Plain(g.into_inner())),
                _ => None,
            })
            .await
        }
        server => relay_session(client, server, session, buffer, Some).await,
    }
}

/// The relay after a login: pooled (the server connection parked when the client quits
/// at a safe point) when the pool is on and the session allows it, plain otherwise.
/// `unwrap` gives back the parkable stream of a guarded one.
async fn relay_session<C, S>(
    client: MaybeTls<C>,
    server: MaybeTls<S>,
    session: Session,
    buffer: usize,
    unwrap: impl FnOnce(MaybeTls<S>) -> Option<MaybeTls<TcpStream>>,
) where
    C: AsyncRead + AsyncWrite + Unpin,
    S: AsyncRead + AsyncWrite + Unpin,
{
    if !(pooled::enabled() && session.poolable()) {
        return terminate::relay(client, server, buffer).await;
    }
    let reusable = pool_relay::relay(client, server, session.caps, buffer).await;
    if let Some(server) = reusable.and_then(unwrap) {
        // Untagged: the client may have changed user (COM_CHANGE_USER) on it; only new
        // logins take it, never a shared session (see session::share).
        pooled::park(session.key, server, session.greeting, Vec::new(), None).await;
    }
}
