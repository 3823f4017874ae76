//! The relay of a session whose server connection may be pooled: bytes are copied
//! unchanged, as in `terminate::relay`, while an [`Exchange`] follows the commands
//! and responses; when the client sends COM_QUIT (or closes) at a safe point — no
//! command in flight, no partial packet either way, no stream command — the COM_QUIT
//! is not forwarded and the server connection is handed back for parking.

use std::sync::atomic::{AtomicBool, Ordering::Relaxed};
use std::sync::Mutex;
use std::time::Duration;

use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};

use super::stream::MaybeTls;
use crate::protocol::caps::{status, Caps};
use crate::protocol::exchange::Exchange;

const COM_QUIT: [u8; 5] = [1, 0, 0, 0, 0x01];

/// How the client's direction ended.
enum Up {
    /// COM_QUIT or end of stream at a safe point: the server connection is reusable.
    Reusable,
    /// End of stream or error elsewhere: pass the end on.
    Ended,
}

/// Relays until either side ends; returns, when the client left at a safe point, the
/// server connection (nothing of the client's goodbye sent).
pub async fn relay<C, S>(
    client: MaybeTls<C>,
    server: MaybeTls<S>,
    caps: u64,
    buffer: usize,
) -> Option<MaybeTls<S>>
where
    C: AsyncRead + AsyncWrite + Unpin,
    S: AsyncRead + AsyncWrite + Unpin,
{
    let exchange = Mutex::new(Exchange::new(Caps(caps), status::AUTOCOMMIT));
    // Set when the exchange could not follow the bytes: never reuse then.
    let lost = AtomicBool::new(false);
    let (mut cr, mut cw) = tokio::io::split(client);
    let (mut sr, mut sw) = tokio::io::split(server);

    let outcome = {
        let up = async {
            let mut buf = vec![0u8; buffer];
            loop {
                let k = match cr.read(&mut buf).await {
                    Ok(0) | Err(_) => {
                        let safe = ex_lock(&exchange).at_safe_point();
                        return if safe { Up::Reusable } else { Up::Ended };
                    }
                    Ok(k) => k,
                };
                let chunk = &buf[..k];
                let quit = ex_lock(&exchange).at_safe_point() && chunk.starts_with(&COM_QUIT);
                if quit {
                    return Up::Reusable;
                }
                if ex_lock(&exchange).on_client(chunk).is_err() {
                    lost.store(true, Relaxed);
                }
                if sw.write_all(chunk).await.is_err() || sw.flush().await.is_err() {
                    return Up::Ended;
                }
            }
        };
        let down = async {
            let mut buf = vec![0u8; buffer];
            loop {
                let k = match sr.read(&mut buf).await {
                    Ok(0) | Err(_) => break,
                    Ok(k) => k,
                };
                if ex_lock(&exchange).on_server(&buf[..k]).is_err() {
                    lost.store(true, Relaxed);
                }
                if cw.write_all(&buf[..k]).await.is_err() || cw.flush().await.is_err() {
                    break;
                }
            }
            let _ = cw.shutdown().await;
        };
        tokio::pin!(up, down);
        tokio::select! {
            _ = &mut down => None,
            u = &mut up => Some(u),
        }
    };
    let reusable = matches!(outcome, Some(Up::Reusable));
    let ex = exchange.into_inner().unwrap_or_else(|p| p.into_inner());
    let keep = reusable
        && !lost.load(Relaxed)
        && ex.at_safe_point()
        && !ex.streaming()
        && !ex.server_spoke_unasked();
    let client = cr.unsplit(cw);
    let server = sr.unsplit(sw);
    if keep {
        let mut client = client;
        let _ = tokio::time::timeout(Duration::from_secs(1), client.shutdown()).await;
        return Some(server);
    }
    if outcome.is_some() {
        // The client ended first: pass its end on and let the server's last bytes
        // reach it (bounded), as the plain relay does.
        let mut server = server;
        let mut client = client;
        let _ = server.shutdown().await;
        let _ = tokio::time::timeout(Duration::from_secs(5), async {
            let mut buf = vec![0u8; 16 * 1024];
            while let Ok(k) = server.read(&mut buf).await {
                if k == 0 || client.write_all(&buf[..k]).await.is_err() {
                    break;
                }
            }
        })
        .await;
        let _ = client.shutdown().await;
    }
    None
}

/// The exchange, also after a panic elsewhere poisoned the lock (it holds no invariant
/// a panic could break halfway: each call is one pure update).
fn ex_lock(m: &Mutex<Exchange>) -> std::sync::MutexGuard<'_, Exchange> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}
