//! Byte forwarding between a client and its server.
//!
//! Bytes are copied unchanged in both directions. End-of-stream on one side is passed on
//! as a half-close (`shutdown(SHUT_WR)`) to the other, and the relay ends when both
//! directions are done or either side fails; dropping the streams then closes both.

use tokio::io::{AsyncRead, AsyncWrite};

/// Bytes moved by one relay.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct Counts {
    /// client → server
    pub up: u64,
    /// server → client
    pub down: u64,
}

/// Relays until both directions are finished. A reset or error on either side ends
/// the relay; the error is returned with what was counted so far unknown (0).
pub async fn relay<C, S>(client: &mut C, server: &mut S, buf: usize) -> std::io::Result<Counts>
where
    C: AsyncRead + AsyncWrite + Unpin + ?Sized,
    S: AsyncRead + AsyncWrite + Unpin + ?Sized,
{
    let (up, down) = tokio::io::copy_bidirectional_with_sizes(client, server, buf, buf).await?;
    Ok(Counts { up, down })
}
