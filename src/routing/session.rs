//! One client session after its server is connected: the watched handshake (which
//! feeds `max_connect_errors`), then the plain relay; and the error-frame goodbye for
//! clients that are refused.

use std::net::IpAddr;
use std::time::Duration;

use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};

use super::Route;
use crate::config::Protocol;
use crate::protocol::errors;
use crate::protocol::handshake::{Tracker, Verdict};
use crate::relay::{self, Stream};
use crate::stats::Live;

impl Route {
    /// Handshake (watched, counted) then plain relay; the bytes moved are on `live`,
    /// also when the handshake failed (which has been logged and counted here).
    pub(super) async fn serve_client<C, S>(
        &self,
        client: &C,
        server: &S,
        peer: &str,
        ip: Option<IpAddr>,
        live: &Live,
    ) -> std::io::Result<()>
    where
        C: Stream,
        S: Stream,
    {
        let sec = &self.cfg.section;
        let mut tracker = Tracker::new(self.cfg.protocol);
        // The counter is reset before the completing packet is forwarded: a client that
        // has its answer (OK, or a wrong password's ERR) and reconnects at once must
        // find it reset.
        let reset = || {
            if let Some(ip) = ip {
                self.admission.reset(ip);
            }
        };
        let outcome = tokio::time::timeout(
            self.cfg.client_connect_timeout,
            watch_handshake(client, server, &mut tracker, live, &reset),
        )
        .await;
        let failure = match outcome {
            Ok(Ok(HandshakeEnd::Complete)) => {
                // MySQL Router's timeConnectedToServer: the session is established.
                live.connected(crate::stats::now_us());
                return relay::relay(
                    client,
                    server,
                    self.cfg.net_buffer_length,
                    &live.up,
                    &live.down,
                )
                .await;
            }
            Ok(Ok(HandshakeEnd::ServerClosed)) => return Ok(()),
            Ok(Ok(HandshakeEnd::Bad)) => {
                // Counted before the client reads its 1043, so a client that reconnects
                // at once finds its counter already up.
                tracing::info!(target: "routing", "[{sec}] {peer} sent a bad handshake packet");
                self.count_failure(ip, peer);
                // Classic: what MySQL Router sends (sequence id 2, no SQL state).
                let frame = match self.cfg.protocol {
                    Protocol::Classic => {
                        errors::classic_error(2, errors::ER_HANDSHAKE_ERROR, "Bad handshake")
                    }
                    Protocol::X => {
                        errors::x_error(errors::ER_HANDSHAKE_ERROR, "08S01", "Bad handshake")
                    }
                };
                let _ = relay::send(client, &frame).await;
                relay::shutdown_write(client);
                relay::drain(client, Duration::from_secs(2)).await;
                false
            }
            // Counted only if the client had sent something the server had not yet
            // answered: a health check (nothing sent) and a client that gave up after
            // the server's answer (e.g. caching_sha2's full-authentication request on
            // plain TCP) are not bad handshakes.
            Ok(Ok(HandshakeEnd::ClientClosed)) | Ok(Err(_)) => {
                let failed = tracker.close_is_failure();
                if failed {
                    tracing::info!(target: "routing", "[{sec}] {peer} closed connection before finishing handshake");
                }
                failed
            }
            // A server that never sent its greeting is not the client's fault.
            Err(_) if !tracker.client_turn() => {
                tracing::warn!(
                    target: "routing",
                    "[{sec}] the server for {peer} sent no greeting within client_connect_timeout ({}s)",
                    self.cfg.client_connect_timeout.as_secs()
                );
                false
            }
            Err(_) => self.handshake_timed_out(peer),
        };
        if failure {
            self.count_failure(ip, peer);
        }
        Ok(())
    }

    /// Logs a client that did not finish its handshake within `client_connect_timeout`;
    /// such a client counts as a handshake failure (returns true).
    pub(super) fn handshake_timed_out(&self, peer: &str) -> bool {
        tracing::info!(
            target: "routing",
            "[{}] {peer} did not finish the handshake within client_connect_timeout ({}s)",
            self.cfg.section,
            self.cfg.client_connect_timeout.as_secs()
        );
        true
    }

    /// Counts a failed handshake: in the route's statistics, and against the client's
    /// host (unix clients have none).
    pub(super) fn count_failure(&self, ip: Option<IpAddr>, peer: &str) {
        self.stats.handshake_failed();
        if let Some(ip) = ip {
            self.count_error(ip, peer);
        }
    }

    fn count_error(&self, ip: IpAddr, peer: &str) {
        let sec = &self.cfg.section;
        let (n, blocked) = self.admission.count_error(ip);
        tracing::info!(target: "routing", "[{sec}] incrementing error counter for host of {peer} (now {n})");
        if blocked {
            tracing::warn!(target: "routing", "[{sec}] blocking client host for {peer}");
        }
    }
}

enum HandshakeEnd {
    Complete,
    Bad,
    ClientClosed,
    ServerClosed,
}

/// Forwards bytes both ways, unchanged, while the tracker follows the handshake.
async fn watch_handshake<C, S>(
    client: &C,
    server: &S,
    tracker: &mut Tracker,
    live: &Live,
    on_complete: &(dyn Fn() + Sync),
) -> std::io::Result<HandshakeEnd>
where
    C: Stream,
    S: Stream,
{
    use relay::{recv, send};
    // Handshake packets are small; these buffers exist only during the handshake.
    let mut cbuf = vec![0u8; 2048];
    let mut sbuf = vec![0u8; 2048];
    loop {
        tokio::select! {
            r = recv(client, &mut cbuf), if tracker.client_turn() => {
                let n = r?;
                if n == 0 {
                    return Ok(HandshakeEnd::ClientClosed);
                }
                let v = tracker.on_client(&cbuf[..n]);
                if v == Verdict::Bad {
                    return Ok(HandshakeEnd::Bad);
                }
                if v == Verdict::Complete {
                    on_complete();
                }
                // Counted (and stamped) when received, before they go on: whoever sees
                // the bytes arrive must find them in `/connections`.
                live.up.moved(n);
                send(server, &cbuf[..n]).await?;
                if v == Verdict::Complete {
                    return Ok(HandshakeEnd::Complete);
                }
            }
            r = recv(server, &mut sbuf) => {
                let n = r?;
                if n == 0 {
                    return Ok(HandshakeEnd::ServerClosed);
                }
                let v = tracker.on_server(&sbuf[..n]);
                if v == Verdict::Complete {
                    on_complete();
                }
                live.down.moved(n);
                send(client, &sbuf[..n]).await?;
                if v == Verdict::Complete {
                    return Ok(HandshakeEnd::Complete);
                }
            }
        }
    }
}

/// Sends an error frame, half-closes, and waits (bounded) for the client to close, so
/// the client reads the error rather than a reset.
pub async fn refuse<S: AsyncRead + AsyncWrite + Unpin>(mut client: S, frame: &[u8]) {
    if client.write_all(frame).await.is_err() {
        return;
    }
    let _ = client.shutdown().await;
    let mut sink = [0u8; 512];
    let _ = tokio::time::timeout(Duration::from_secs(2), async {
        while let Ok(n) = client.read(&mut sink).await {
            if n == 0 {
                break;
            }
        }
    })
    .await;
}
