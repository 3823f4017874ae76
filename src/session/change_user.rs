//! COM_CHANGE_USER on a plain-TCP server hop behind a TLS client: the client trusts its
//! encrypted hop and sends its password in clear when the server asks for full
//! authentication (caching_sha2_password's "perform full authentication", an auth
//! switch to sha256_password, or sha256_password named in the COM_CHANGE_USER
//! itself). The login does the RSA exchange in `terminate`; a [`Guard`] around the
//! server stream does the same for every COM_CHANGE_USER after it: it asks the server
//! for its public key in place of the clear password, sends the password encrypted
//! (password XOR nonce, RSA-OAEP, as a client without TLS would) and renumbers the
//! server's remaining packets of that exchange by the two it added.
//!
//! Outside a change-user exchange the guard only follows the client's packet headers
//! (no copy of payloads): bytes go through unchanged, one write per client write. It is
//! used on uncompressed server hops only: a TLS client over a plain server hop that
//! asks for compression gets it from the router on its own hop (`compress`), the server
//! hop has none. A client that sends a COM_CHANGE_USER before the previous command's
//! response ended (pipelining) is not supported: the guard takes the server's next
//! packets as the change-user exchange.

use std::io;
use std::pin::Pin;
use std::task::{Context, Poll};

use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};

use crate::protocol::caps::flag;
use crate::protocol::frame::{header, le24, MAX_PAYLOAD};

const COM_CHANGE_USER: u8 = 0x11;
const CACHING_SHA2: &[u8] = b"caching_sha2_password";
const SHA256: &[u8] = b"sha256_password";
/// Largest packet the guard gathers whole (a COM_CHANGE_USER with attributes, a
/// password, a public key, an auth switch: all well below).
const MAX_GATHERED: usize = 1 << 20;

/// A change-user exchange in progress.
#[derive(Debug)]
struct Auth {
    plugin: Vec<u8>,
    nonce: Vec<u8>,
    /// The client's next packet is its password in clear: ask the server for its key
    /// with this byte (0x02 caching_sha2, 0x01 sha256_password) instead.
    clear_next: Option<u8>,
    /// The password, held until the server's key arrives.
    password: Option<Vec<u8>>,
    /// Packets the router added towards the server (the key request and the
    /// encrypted password) that the client does not know of.
    offset: u8,
}

/// The client's direction: header-following outside exchanges, gathering inside.
#[derive(Debug, Default)]
struct Up {
    /// Payload bytes of the current packet still to pass unchanged.
    remaining: usize,
    /// The previous packet was full: the next one continues its message.
    in_message: bool,
    /// A packet being gathered whole (header included), for a decision.
    gather: Option<Vec<u8>>,
}

/// The server stream of a session, guarded as the module docs say.
#[derive(Debug)]
pub struct Guard<S> {
    inner: S,
    caps: u64,
    /// The nonce of the connection's greeting (COM_CHANGE_USER scrambles against it).
    nonce: Vec<u8>,
    up: Up,
    auth: Option<Auth>,
    /// Bytes for the server made by the guard, written before anything else.
    pending: Vec<u8>,
    /// Server bytes read during an exchange, not yet whole packets.
    raw: Vec<u8>,
    /// Server bytes ready for the client.
    out: Vec<u8>,
    out_at: usize,
}

fn bad(why: String) -> io::Error {
    io::Error::new(io::ErrorKind::InvalidData, why)
}

impl<S> Guard<S> {
    /// Guards `inner`, the server stream of a session whose client and server agreed
    /// on `caps`; `nonce` is the 20-byte nonce of the server's greeting.
    pub fn new(inner: S, caps: u64, nonce: Vec<u8>) -> Self {
        Guard {
            inner,
            caps,
            nonce,
            up: Up::default(),
            auth: None,
            pending: Vec::new(),
            raw: Vec::new(),
            out: Vec::new(),
            out_at: 0,
        }
    }

    /// The stream, for parking in the pool (only at a safe point, where the guard
    /// holds nothing).
    pub fn into_inner(self) -> S {
        self.inner
    }

    /// Whether a packet with this sequence id and first payload byte must be gathered.
    fn wants(&self, seq: u8, first: Option<u8>) -> bool {
        match &self.auth {
            None => !self.up.in_message && seq == 0 && first == Some(COM_CHANGE_USER),
            Some(a) => a.clear_next.is_some(),
        }
    }

    /// How many bytes at the start of `buf` pass unchanged (up to the first packet to
    /// gather, or to one whose first byte is not there yet). Does not change state.
    fn passable(&self, buf: &[u8]) -> usize {
        let mut at = self.up.remaining.min(buf.len());
        let mut in_message = self.up.in_message;
        while at < buf.len() {
            let rest = &buf[at..];
            if rest.len() < 4 {
                return at;
            }
            let len = le24(rest);
            let first = rest.get(4).copied();
            if len > 0 && first.is_none() {
                return at;
            }
            let wants = match &self.auth {
                None => !in_message && rest[3] == 0 && first == Some(COM_CHANGE_USER),
                Some(a) => a.clear_next.is_some(),
            };
            if wants {
                return at;
            }
            in_message = len == MAX_PAYLOAD;
            at = at.saturating_add(4 + len).min(buf.len());
        }
        at
    }

    /// Advances the header-following over the first `k` bytes of `buf` (which
    /// `passable` allowed), written unchanged. A write that ended inside a packet
    /// header takes the header's rest too (queued in `pending`), so that headers are
    /// always followed whole; returns how many bytes of `buf` were taken.
    fn advance(&mut self, buf: &[u8], k: usize) -> usize {
        let mut at = 0;
        while at < k {
            if self.up.remaining > 0 {
                let n = self.up.remaining.min(k - at);
                self.up.remaining -= n;
                at += n;
                continue;
            }
            // `passable` stops before any packet whose header is not all in `buf`.
            let Some(h) = buf.get(at..at + 4) else {
                return at; // not reached: see above
            };
            let len = le24(h);
            if at + 4 > k {
                self.pending.extend_from_slice(&buf[k..at + 4]);
            }
            self.up.in_message = len == MAX_PAYLOAD;
            self.up.remaining = len;
            at += 4;
        }
        at
    }

    /// A whole packet gathered from the client: what to send the server instead.
    fn client_packet(&mut self, packet: Vec<u8>) -> io::Result<()> {
        let seq = packet[3];
        let payload = &packet[4..];
        if let Some(a) = self.auth.as_mut() {
            if let Some(ask) = a.clear_next.take() {
                a.password = Some(payload.to_vec());
                self.pending.extend_from_slice(&header(1, seq));
                self.pending.push(ask);
                return Ok(());
            }
            self.pending.extend_from_slice(&packet);
            return Ok(());
        }
        // COM_CHANGE_USER.
        let (plugin, rewritten, password) = change_user_plugin(payload, self.caps);
        self.auth = Some(Auth {
            plugin,
            nonce: self.nonce.clone(),
            clear_next: None,
            password,
            offset: 0,
        });
        match rewritten {
            Some(p) => {
                self.pending.extend_from_slice(&header(p.len(), seq));
                self.pending.extend_from_slice(&p);
            }
            None => self.pending.extend_from_slice(&packet),
        }
        Ok(())
    }

    /// Whole server packets of the exchange from `raw` into `out` (or, for the
    /// server's public key, an encrypted password into `pending`).
    fn server_packets(&mut self) -> io::Result<()> {
        while let Some(auth) = self.auth.as_mut() {
            if self.raw.len() < 4 {
                return Ok(());
            }
            let len = le24(&self.raw);
            if len > MAX_GATHERED {
                return Err(bad("oversized packet in a change-user exchange".into()));
            }
            if self.raw.len() < 4 + len {
                return Ok(());
            }
            let seq = self.raw[3];
            let packet: Vec<u8> = self.raw.drain(..4 + len).collect();
            let payload = &packet[4..];
            if let Some(password) = auth.password.take() {
                if let Some(pem) = payload
                    .strip_prefix(&[0x01])
                    .filter(|p| p.starts_with(b"-----BEGIN"))
                {
                    let enc =
                        super::rsa::encrypt_password(pem, &password, &auth.nonce).map_err(bad)?;
                    self.pending
                        .extend_from_slice(&header(enc.len(), seq.wrapping_add(1)));
                    self.pending.extend_from_slice(&enc);
                    auth.offset = auth.offset.wrapping_add(2);
                    continue;
                }
                // No key (an ERR, say): the password is dropped, never sent.
            }
            match payload.first() {
                Some(0xFE) => {
                    let body = &payload[1..];
                    if let Some(nul) = body.iter().position(|&b| b == 0) {
                        auth.plugin = body[..nul].to_vec();
                        let data = &body[nul + 1..];
                        auth.nonce = data.strip_suffix(&[0]).unwrap_or(data).to_vec();
                        if auth.plugin == SHA256 {
                            auth.clear_next = Some(0x01);
                        }
                    }
                }
                Some(0x01) if payload == [0x01, 0x04] && auth.plugin == CACHING_SHA2 => {
                    auth.clear_next = Some(0x02);
                }
                _ => {}
            }
            let done = matches!(payload.first(), Some(0x00) | Some(0xFF));
            self.out
                .extend_from_slice(&header(len, seq.wrapping_sub(auth.offset)));
            self.out.extend_from_slice(payload);
            if done {
                self.auth = None;
                // Anything after the verdict is not ours to look at.
                self.out.append(&mut self.raw);
            }
        }
        Ok(())
    }
}

/// The auth plugin a COM_CHANGE_USER names, and — for sha256_password with a password
/// in clear in it — the packet with the password replaced by a key request (0x01), and
/// the password.
fn change_user_plugin(p: &[u8], caps: u64) -> (Vec<u8>, Option<Vec<u8>>, Option<Vec<u8>>) {
    let none = (Vec::new(), None, None);
    let Some(nul) = p.get(1..).and_then(|r| r.iter().position(|&b| b == 0)) else {
        return none;
    };
    let mut i = 1 + nul + 1; // user
    let (data_start, data_end) = if caps & flag::SECURE_CONNECTION != 0 {
        let Some(&n) = p.get(i) else { return none };
        (i + 1, i + 1 + n as usize)
    } else {
        let Some(nul) = p.get(i..).and_then(|r| r.iter().position(|&b| b == 0)) else {
            return none;
        };
        (i, i + nul)
    };
    if data_end > p.len() {
        return none;
    }
    let length_byte = caps & flag::SECURE_CONNECTION != 0;
    i = data_end + usize::from(!length_byte);
    let Some(nul) = p.get(i..).and_then(|r| r.iter().position(|&b| b == 0)) else {
        return none;
    };
    i += nul + 1; // schema
    if p.len() < i + 2 || caps & flag::PLUGIN_AUTH == 0 {
        return none;
    }
    i += 2; // character set
    let rest = &p[i..];
    let plugin = rest[..rest.iter().position(|&b| b == 0).unwrap_or(rest.len())].to_vec();
    let clear = &p[data_start..data_end];
    if plugin == SHA256 && length_byte && !clear.is_empty() && clear != [0x01] {
        let mut out = p[..data_start - 1].to_vec();
        out.push(1);
        out.push(0x01);
        out.extend_from_slice(&p[data_end..]);
        return (plugin, Some(out), Some(clear.to_vec()));
    }
    (plugin, None, None)
}

impl<S: AsyncWrite + Unpin> Guard<S> {
    /// Writes what the guard made for the server; Ready(Ok) once it is all out.
    fn poll_pending(&mut self, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        while !self.pending.is_empty() {
            match Pin::new(&mut self.inner).poll_write(cx, &self.pending) {
                Poll::Ready(Ok(0)) => return Poll::Ready(Err(io::ErrorKind::WriteZero.into())),
                Poll::Ready(Ok(k)) => {
                    self.pending.drain(..k);
                }
                Poll::Ready(Err(e)) => return Poll::Ready(Err(e)),
                Poll::Pending => return Poll::Pending,
            }
        }
        Poll::Ready(Ok(()))
    }
}

impl<S: AsyncRead + AsyncWrite + Unpin> AsyncRead for Guard<S> {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        loop {
            if !this.pending.is_empty() {
                if let Poll::Ready(Err(e)) = this.poll_pending(cx) {
                    return Poll::Ready(Err(e));
                }
            }
            if this.out_at < this.out.len() {
                let n = (this.out.len() - this.out_at).min(buf.remaining());
                buf.put_slice(&this.out[this.out_at..this.out_at + n]);
                this.out_at += n;
                if this.out_at == this.out.len() {
                    this.out.clear();
                    this.out_at = 0;
                }
                return Poll::Ready(Ok(()));
            }
            if this.auth.is_none() {
                return Pin::new(&mut this.inner).poll_read(cx, buf);
            }
            let mut tmp = [0u8; 8192];
            let mut rb = ReadBuf::new(&mut tmp);
            match Pin::new(&mut this.inner).poll_read(cx, &mut rb) {
                Poll::Ready(Ok(())) if rb.filled().is_empty() => {
                    // The server ended the session: what it sent before reaches the
                    // client as it came.
                    this.auth = None;
                    this.out.append(&mut this.raw);
                    if this.out.is_empty() {
                        return Poll::Ready(Ok(()));
                    }
                }
                Poll::Ready(Ok(())) => {
                    this.raw.extend_from_slice(rb.filled());
                    this.server_packets()?;
                }
                Poll::Ready(Err(e)) => return Poll::Ready(Err(e)),
                Poll::Pending => return Poll::Pending,
            }
        }
    }
}

impl<S: AsyncRead + AsyncWrite + Unpin> AsyncWrite for Guard<S> {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        let this = self.get_mut();
        match this.poll_pending(cx) {
            Poll::Ready(Ok(())) => {}
            other => return other.map(|r| r.map(|()| 0)),
        }
        if buf.is_empty() {
            return Poll::Ready(Ok(0));
        }
        if let Some(g) = this.up.gather.as_mut() {
            let len = (g.len() >= 4).then(|| le24(g));
            let decided = matches!(len, Some(l) if g.len() >= 5 || l == 0);
            // Until the type byte is known take only the header and it; then the rest.
            let need = match len {
                Some(l) if decided => 4 + l - g.len(),
                _ => 5 - g.len(),
            };
            let k = need.min(buf.len());
            g.extend_from_slice(&buf[..k]);
            if g.len() < 4 || (g.len() == 4 && g[..3] != [0, 0, 0]) {
                return Poll::Ready(Ok(k));
            }
            let len = le24(g);
            let (seq, first) = (g[3], g.get(4).copied());
            let g_len = g.len();
            if !decided && !this.wants(seq, first) {
                // Not one to keep: it goes on unchanged, the rest of it passes.
                let head = this.up.gather.take().unwrap_or_default(); // ok: Some here
                this.up.in_message = len == MAX_PAYLOAD;
                this.up.remaining = len - (head.len() - 4);
                this.pending.extend_from_slice(&head);
                return Poll::Ready(Ok(k));
            }
            if len > MAX_GATHERED {
                return Poll::Ready(Err(
                    bad("oversized packet in a change-user exchange".into()),
                ));
            }
            if g_len == 4 + len {
                let packet = this.up.gather.take().unwrap_or_default(); // ok: Some here
                this.up.in_message = len == MAX_PAYLOAD;
                this.client_packet(packet)?;
                // Best effort now; the rest goes out on the next write or flush.
                if let Poll::Ready(Err(e)) = this.poll_pending(cx) {
                    return Poll::Ready(Err(e));
                }
            }
            return Poll::Ready(Ok(k));
        }
        let n = this.passable(buf);
        if n == 0 {
            // A packet to gather starts here, or one whose type byte is not here yet.
            this.up.gather = Some(Vec::with_capacity(256));
            return Pin::new(this).poll_write(cx, buf);
        }
        match Pin::new(&mut this.inner).poll_write(cx, &buf[..n]) {
            Poll::Ready(Ok(k)) => Poll::Ready(Ok(this.advance(&buf[..n], k))),
            other => other,
        }
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        match this.poll_pending(cx) {
            Poll::Ready(Ok(())) => Pin::new(&mut this.inner).poll_flush(cx),
            other => other,
        }
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        match this.poll_pending(cx) {
            Poll::Ready(Ok(())) => Pin::new(&mut this.inner).poll_shutdown(cx),
            other => other,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rsa::pkcs8::EncodePublicKey;
    use rsa::{Oaep, RsaPrivateKey};
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    const CAPS: u64 = flag::PROTOCOL_41 | flag::SECURE_CONNECTION | flag::PLUGIN_AUTH;
    const NONCE: &[u8; 20] = b"0123456789abcdefghij";

    fn packet(seq: u8, payload: &[u8]) -> Vec<u8> {
        let mut p = header(payload.len(), seq).to_vec();
        p.extend_from_slice(payload);
        p
    }

    fn change_user(plugin: &[u8], auth: &[u8]) -> Vec<u8> {
        let mut p = vec![COM_CHANGE_USER];
        p.extend_from_slice(b"bob\0");
        p.push(auth.len() as u8);
        p.extend_from_slice(auth);
        p.extend_from_slice(b"db\0");
        p.extend_from_slice(&[0x21, 0]);
        p.extend_from_slice(plugin);
        p.push(0);
        p
    }

    async fn read_packet<R: AsyncRead + Unpin>(r: &mut R) -> (u8, Vec<u8>) {
        let mut h = [0u8; 4];
        r.read_exact(&mut h).await.unwrap(); // ok: test code
        let mut p = vec![0u8; le24(&h)];
        r.read_exact(&mut p).await.unwrap(); // ok: test code
        (h[3], p)
    }

    /// Writes `bytes` through the guard one byte per write (the worst split).
    async fn trickle<W: AsyncWrite + Unpin>(w: &mut W, bytes: &[u8]) {
        for b in bytes {
            w.write_all(std::slice::from_ref(b)).await.unwrap(); // ok: test code
        }
        w.flush().await.unwrap(); // ok: test code
    }

    fn unscramble(private: &RsaPrivateKey, enc: &[u8], nonce: &[u8]) -> Vec<u8> {
        let mut plain = private.decrypt(Oaep::new::<sha1::Sha1>(), enc).unwrap(); // ok: test code
        for (i, b) in plain.iter_mut().enumerate() {
            *b ^= nonce[i % nonce.len()];
        }
        plain
    }

    #[tokio::test]
    async fn caching_sha2_full_authentication_in_change_user_is_encrypted() {
        let private = RsaPrivateKey::new(&mut rsa::rand_core::OsRng, 1024).unwrap(); // ok: test code
        let pem = private
            .to_public_key()
            .to_public_key_pem(rsa::pkcs8::LineEnding::LF)
            .unwrap(); // ok: test code
        let (router_end, mut server) = tokio::io::duplex(1 << 16);
        let mut guard = Guard::new(router_end, CAPS, NONCE.to_vec());
        // A command before: passes unchanged.
        let query = packet(0, b"\x03SELECT 1");
        trickle(&mut guard, &query).await;
        assert_eq!(
            read_packet(&mut server).await,
            (0, b"\x03SELECT 1".to_vec())
        );
        server
            .write_all(&packet(1, b"\x00\x00\x00\x02\x00\x00\x00"))
            .await
            .unwrap(); // ok: test code
        assert_eq!(read_packet(&mut guard).await.1[0], 0x00);

        let cu = change_user(CACHING_SHA2, &[7u8; 32]);
        trickle(&mut guard, &packet(0, &cu)).await;
        assert_eq!(read_packet(&mut server).await, (0, cu.clone()));
        server.write_all(&packet(1, &[0x01, 0x04])).await.unwrap(); // ok: test code
        assert_eq!(read_packet(&mut guard).await, (1, vec![0x01, 0x04]));
        // The client's password in clear becomes a key request ...
        trickle(&mut guard, &packet(2, b"s3cret\0")).await;
        assert_eq!(read_packet(&mut server).await, (2, vec![0x02]));
        let mut key = vec![0x01];
        key.extend_from_slice(pem.as_bytes());
        server.write_all(&packet(3, &key)).await.unwrap(); // ok: test code

        // ... then the password goes encrypted; the client sees the OK as the 3rd.
        let reader = tokio::spawn(async move {
            let p = read_packet(&mut guard).await;
            (p, guard)
        });
        let (seq, enc) = read_packet(&mut server).await;
        assert_eq!(seq, 4);
        assert_eq!(unscramble(&private, &enc, NONCE), b"s3cret\0");
        server
            .write_all(&packet(5, b"\x00\x00\x00\x02\x00\x00\x00"))
            .await
            .unwrap(); // ok: test code
        let ((seq, ok), mut guard) = reader.await.unwrap(); // ok: test code
        assert_eq!((seq, ok[0]), (3, 0x00));
        // After the exchange: commands pass unchanged again.
        trickle(&mut guard, &query).await;
        assert_eq!(
            read_packet(&mut server).await,
            (0, b"\x03SELECT 1".to_vec())
        );
    }

    #[tokio::test]
    async fn sha256_password_in_change_user_and_after_a_switch_is_encrypted() {
        let private = RsaPrivateKey::new(&mut rsa::rand_core::OsRng, 1024).unwrap(); // ok: test code
        let pem = private
            .to_public_key()
            .to_public_key_pem(rsa::pkcs8::LineEnding::LF)
            .unwrap(); // ok: test code
        let mut key = vec![0x01];
        key.extend_from_slice(pem.as_bytes());
        let (router_end, mut server) = tokio::io::duplex(1 << 16);
        let mut guard = Guard::new(router_end, CAPS, NONCE.to_vec());
        // Named in the COM_CHANGE_USER: the password in it is replaced by a key request.
        let cu = change_user(SHA256, b"s3cret\0");
        guard.write_all(&packet(0, &cu)).await.unwrap(); // ok: test code
        guard.flush().await.unwrap(); // ok: test code
        let (seq, sent) = read_packet(&mut server).await;
        assert_eq!((seq, sent), (0, change_user(SHA256, &[0x01])));
        server.write_all(&packet(1, &key)).await.unwrap(); // ok: test code
        let reader = tokio::spawn(async move { (read_packet(&mut guard).await, guard) });
        let (seq, enc) = read_packet(&mut server).await;
        assert_eq!(seq, 2);
        assert_eq!(unscramble(&private, &enc, NONCE), b"s3cret\0");
        server
            .write_all(&packet(3, b"\x00\x00\x00\x02\x00\x00\x00"))
            .await
            .unwrap(); // ok: test code
        let ((seq, ok), mut guard) = reader.await.unwrap(); // ok: test code
        assert_eq!((seq, ok[0]), (1, 0x00));

        // After an auth switch to sha256_password with a new nonce.
        let cu = change_user(b"mysql_native_password", &[9u8; 20]);
        guard.write_all(&packet(0, &cu)).await.unwrap(); // ok: test code
        guard.flush().await.unwrap(); // ok: test code
        assert_eq!(read_packet(&mut server).await, (0, cu));
        let nonce2 = b"ABCDEFGHIJKLMNOPQRST";
        let mut switch = vec![0xFE];
        switch.extend_from_slice(SHA256);
        switch.push(0);
        switch.extend_from_slice(nonce2);
        switch.push(0);
        server.write_all(&packet(1, &switch)).await.unwrap(); // ok: test code
        assert_eq!(read_packet(&mut guard).await, (1, switch));
        guard.write_all(&packet(2, b"other\0")).await.unwrap(); // ok: test code
        guard.flush().await.unwrap(); // ok: test code
        assert_eq!(read_packet(&mut server).await, (2, vec![0x01]));
        server.write_all(&packet(3, &key)).await.unwrap(); // ok: test code
        let reader = tokio::spawn(async move { (read_packet(&mut guard).await, guard) });
        let (seq, enc) = read_packet(&mut server).await;
        assert_eq!(seq, 4);
        assert_eq!(unscramble(&private, &enc, nonce2), b"other\0");
        server
            .write_all(&packet(5, b"\xFF\x15\x04#28000Access denied"))
            .await
            .unwrap(); // ok: test code
        let ((seq, err), _) = reader.await.unwrap(); // ok: test code
        assert_eq!((seq, err[0]), (3, 0xFF));
    }

    #[tokio::test]
    async fn large_commands_and_results_pass_unchanged_in_any_split() {
        let (router_end, mut server) = tokio::io::duplex(1 << 20);
        let mut guard = Guard::new(router_end, CAPS, NONCE.to_vec());
        // A 16 MiB + 10 message: a full packet (whose continuation starts with 0x11)
        // and its rest; then a small command.
        let mut big = vec![0x03u8];
        big.resize(MAX_PAYLOAD, b'x');
        let mut stream = packet(0, &big);
        stream.extend_from_slice(&packet(1, &[COM_CHANGE_USER; 10]));
        stream.extend_from_slice(&packet(0, b"\x0e"));
        let expect = stream.clone();
        let writer = tokio::spawn(async move {
            for chunk in stream.chunks(7_777) {
                guard.write_all(chunk).await.unwrap(); // ok: test code
            }
            guard.flush().await.unwrap(); // ok: test code
            guard
        });
        let mut got = vec![0u8; expect.len()];
        server.read_exact(&mut got).await.unwrap(); // ok: test code
        assert!(got == expect, "bytes changed");
        let mut guard = writer.await.unwrap(); // ok: test code
        server
            .write_all(&packet(1, b"\x00\x00\x00\x02\x00\x00\x00"))
            .await
            .unwrap(); // ok: test code
        assert_eq!(read_packet(&mut guard).await.0, 1);
    }
}
