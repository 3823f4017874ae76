//! One client session on a route that terminates TLS: the router's own handshake
//! (`session::terminate`), counted for `max_connect_errors` by the same rules as a
//! watched PASSTHROUGH handshake, then the relay between the two hops' streams.

use std::net::IpAddr;

use tokio::io::{AsyncRead, AsyncWrite};

use super::Route;
use crate::config::addr::split_host_port;
use crate::relay::Counts;
use crate::session::terminate::{self, End, ServerSide};
use crate::session::tls::Contexts;
use crate::session::{pool_relay, pooled, share};

impl Route {
    /// Handshake (terminated, counted) then relay; returns the bytes moved.
    pub(super) async fn serve_terminated<C>(
        &self,
        client: C,
        server: ServerSide,
        idx: usize,
        peer: &str,
        ip: Option<IpAddr>,
        tls: &Contexts,
    ) -> std::io::Result<Counts>
    where
        C: AsyncRead + AsyncWrite + Unpin,
    {
        let sec = &self.cfg.section;
        let addr = self.keys[idx].as_str();
        let host = split_host_port(addr)
            .map(|(h, _)| h)
            .unwrap_or(addr)
            .to_string();
        let mut counts = Counts::default();
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
                &mut counts,
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
                    return Ok(counts);
                }
                if session.reused {
                    crate::stats::pool::STATS.reused();
                    tracing::debug!(target: "routing", "[{sec}] {peer} -> {addr}: reusing a pooled server connection");
                } else if pooled::enabled() {
                    crate::stats::pool::STATS.opened();
                }
                let sharing = self.cfg.connection_sharing
                    && crate::config::route::sharing_ignored(sec, &self.cfg.tls).is_none()
                    && pooled::enabled()
                    && session.poolable()
                    // Plain clients' connections saw their nonce in clear: never shared
                    // (see session::share and README "Connection sharing").
                    && session.client_tls
                    && !session.user.is_empty();
                if sharing {
                    let params = share::Params {
                        delay: self.cfg.connection_sharing_delay,
                        wait: self
                            .cfg
                            .connect_timeout
                            .max(std::time::Duration::from_secs(1)),
                        buffer: self.cfg.net_buffer_length,
                    };
                    let rest = share::run(client, server, &session, params).await;
                    counts.up += rest.up;
                    counts.down += rest.down;
                    return Ok(counts);
                }
                if !(pooled::enabled() && session.poolable()) {
                    let rest = terminate::relay(client, server, self.cfg.net_buffer_length).await;
                    counts.up += rest.up;
                    counts.down += rest.down;
                    return Ok(counts);
                }
                let (rest, reusable) =
                    pool_relay::relay(client, server, session.caps, self.cfg.net_buffer_length)
                        .await;
                counts.up += rest.up;
                counts.down += rest.down;
                if let Some(server) = reusable {
                    // Untagged: the client may have changed user (COM_CHANGE_USER) on it; only
                    // new logins take it, never a shared session (see session::share).
                    pooled::park(session.key, server, session.greeting, Vec::new()).await;
                }
                return Ok(counts);
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
        Ok(counts)
    }
}
