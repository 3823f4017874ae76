//! Protocol compression terminated on the client hop: the router speaks the
//! compressed protocol (zlib or zstd) with the client itself and plain classic
//! packets with the server.
//!
//! Why: a TLS client over a plain-TCP server hop sends its password in clear when the
//! server asks for full authentication inside a COM_CHANGE_USER; `change_user::Guard`
//! must see that exchange to send the password RSA-encrypted instead, and compressed
//! frames hide it. So for exactly those sessions (TLS client, plain server hop,
//! compression asked for) the router takes compression off the server hop (the
//! response it forwards asks for none) and keeps it on the client hop with this
//! adapter. All other sessions negotiate compression end to end as before. Since the
//! server hop of such a session is a plain classic session, it is pooled and shared
//! like any other (the pool key and the session's capabilities carry no compression).
//!
//! The wire format (MySQL's compressed protocol): each frame is a 7-byte header — the
//! payload's length (3 bytes), a sequence id, the uncompressed length (3 bytes, 0 when
//! the payload is stored uncompressed) — then the payload, compressed on its own
//! (zlib's `compress()` format, or one zstd frame). Frames need not align with the
//! classic packets inside them. Sequence ids: the client starts each command at 0 and
//! every frame answers with the id after the last one received, so the writer uses
//! "last read + 1" and counts up. Payloads under 50 bytes, or that do not shrink, are
//! stored (as MySQL does). Frames carry whole packets, as a server's do: a packet is
//! cut only where it is longer than a frame (mysql-connector-python reads a packet
//! across two frames at most and hung when one 100 KB row came in seven).
//!
//! Hand-written framing (about a hundred lines) on `flate2` and `zstd`, the codecs
//! MySQL's own protocol uses: `mysql_common` has a compressed codec but only for its
//! own framed client connection, not as a stream adapter.

use std::io::{self, Read, Write};
use std::pin::Pin;
use std::task::{Context, Poll};

use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};

use crate::protocol::frame::{header, le24};

/// Largest payload (compressed or raw) of one frame, and largest uncompressed length.
const MAX_FRAME: usize = 0xFF_FFFF;
/// Payloads shorter than this are stored (MySQL's MIN_COMPRESS_LENGTH).
const MIN_COMPRESS: usize = 50;
const HEADER: usize = 7;

/// The algorithm a session negotiated.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Codec {
    Zlib,
    /// zstd with the level the client asked for in its handshake response.
    Zstd(i32),
}

/// A stream speaking the compressed protocol on `inner`, plain bytes to its user.
#[derive(Debug)]
pub struct Compressed<S> {
    inner: S,
    codec: Codec,
    /// Bytes read from `inner` not yet framed.
    rbuf: Vec<u8>,
    /// Uncompressed bytes of frames read, not yet given to the reader.
    out: Vec<u8>,
    out_at: usize,
    /// Bytes written by the user, not yet framed: at most the tail of one packet.
    plain: Vec<u8>,
    /// Bytes of a packet whose beginning was framed already (a packet longer than a
    /// frame) that are still to come.
    rest_of_packet: usize,
    /// Framed bytes not yet written to `inner`.
    wbuf: Vec<u8>,
    w_at: usize,
    /// Sequence id of the next frame written.
    next_seq: u8,
}

impl<S> Compressed<S> {
    pub fn new(inner: S, codec: Codec) -> Self {
        Compressed {
            inner,
            codec,
            rbuf: Vec::new(),
            out: Vec::new(),
            out_at: 0,
            plain: Vec::new(),
            rest_of_packet: 0,
            wbuf: Vec::new(),
            w_at: 0,
            next_seq: 0,
        }
    }

    /// Appends one frame holding `data` (at most `MAX_FRAME` bytes) to `wbuf`.
    fn frame(&mut self, data: &[u8]) -> io::Result<()> {
        let packed = if data.len() < MIN_COMPRESS {
            None
        } else {
            Some(compress(self.codec, data)?).filter(|c| c.len() < data.len())
        };
        let (payload, ulen) = match &packed {
            Some(c) => (c.as_slice(), data.len()),
            None => (data, 0),
        };
        self.wbuf
            .extend_from_slice(&header(payload.len(), self.next_seq));
        self.wbuf.extend_from_slice(&u24(ulen));
        self.wbuf.extend_from_slice(payload);
        self.next_seq = self.next_seq.wrapping_add(1);
        Ok(())
    }

    /// Frames what `plain` holds of whole classic packets, as a server does: a frame
    /// carries whole packets (several small ones together), and a packet longer than
    /// a frame is cut only at the frame's limit. Clients count on it: one that reads a
    /// packet across two frames at most (mysql-connector-python) hangs when a packet is
    /// spread over more. With `all`, the tail too (the stream is ending).
    fn frame_plain(&mut self, all: bool) -> io::Result<()> {
        let header_at = |plain: &[u8], at: usize| plain.get(at..at + 4).map(|h| 4 + le24(h));
        loop {
            // The packet at the front: the rest of one begun in an earlier frame, or one
            // whose header is here (0: none yet).
            let front = match self.rest_of_packet {
                0 => header_at(&self.plain, 0).unwrap_or(0),
                rest => rest,
            };
            let mut end = 0;
            if front > MAX_FRAME {
                // Longer than a frame: cut at the frame's limit once that much is here.
                if self.plain.len() >= MAX_FRAME {
                    end = MAX_FRAME;
                }
            } else {
                // Whole packets, as many as one frame holds.
                let mut next = front;
                while next > 0 && end + next <= self.plain.len().min(MAX_FRAME) {
                    end += next;
                    next = header_at(&self.plain, end).unwrap_or(0);
                }
            }
            if end == 0 && all {
                end = self.plain.len().min(MAX_FRAME);
            }
            if end == 0 {
                return Ok(());
            }
            let chunk: Vec<u8> = self.plain.drain(..end).collect();
            self.rest_of_packet = front.saturating_sub(end);
            self.frame(&chunk)?;
        }
    }

    /// Takes one whole frame off `rbuf` into `out`, if there is one.
    fn unframe(&mut self) -> io::Result<bool> {
        if self.rbuf.len() < HEADER {
            return Ok(false);
        }
        let clen = le24(&self.rbuf[0..3]);
        let seq = self.rbuf[3];
        let ulen = le24(&self.rbuf[4..7]);
        if self.rbuf.len() < HEADER + clen {
            return Ok(false);
        }
        let payload = &self.rbuf[HEADER..HEADER + clen];
        self.out = if ulen == 0 {
            payload.to_vec()
        } else {
            decompress(self.codec, payload, ulen)?
        };
        self.out_at = 0;
        self.rbuf.drain(..HEADER + clen);
        self.next_seq = seq.wrapping_add(1);
        Ok(true)
    }
}

fn u24(n: usize) -> [u8; 3] {
    let b = (n as u32).to_le_bytes();
    [b[0], b[1], b[2]]
}

fn bad(why: &str) -> io::Error {
    io::Error::new(io::ErrorKind::InvalidData, why.to_string())
}

pub fn compress(codec: Codec, data: &[u8]) -> io::Result<Vec<u8>> {
    match codec {
        Codec::Zlib => {
            let mut e = flate2::write::ZlibEncoder::new(
                Vec::with_capacity(data.len() / 2),
                flate2::Compression::default(),
            );
            e.write_all(data)?;
            e.finish()
        }
        Codec::Zstd(level) => zstd::bulk::compress(data, level),
    }
}

/// Decompresses one frame's payload, which must give exactly `ulen` bytes (a frame
/// that inflates to more is refused before it is all inflated).
pub fn decompress(codec: Codec, payload: &[u8], ulen: usize) -> io::Result<Vec<u8>> {
    let out = match codec {
        Codec::Zlib => {
            let mut out = Vec::with_capacity(ulen);
            flate2::read::ZlibDecoder::new(payload)
                .take(ulen as u64 + 1)
                .read_to_end(&mut out)
                .map_err(|e| bad(&format!("compressed frame: {e}")))?;
            out
        }
        Codec::Zstd(_) => zstd::bulk::decompress(payload, ulen)
            .map_err(|e| bad(&format!("compressed frame: {e}")))?,
    };
    if out.len() != ulen {
        return Err(bad("compressed frame: wrong uncompressed length"));
    }
    Ok(out)
}

impl<S: AsyncRead + Unpin> AsyncRead for Compressed<S> {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let me = self.get_mut();
        loop {
            if me.out_at < me.out.len() {
                let n = (me.out.len() - me.out_at).min(buf.remaining());
                buf.put_slice(&me.out[me.out_at..me.out_at + n]);
                me.out_at += n;
                return Poll::Ready(Ok(()));
            }
            if me.unframe()? {
                continue;
            }
            let mut chunk = [0u8; 16 * 1024];
            let mut rb = ReadBuf::new(&mut chunk);
            match Pin::new(&mut me.inner).poll_read(cx, &mut rb) {
                Poll::Pending => return Poll::Pending,
                Poll::Ready(Err(e)) => return Poll::Ready(Err(e)),
                Poll::Ready(Ok(())) if rb.filled().is_empty() => {
                    return Poll::Ready(if me.rbuf.is_empty() {
                        Ok(())
                    } else {
                        Err(io::Error::new(
                            io::ErrorKind::UnexpectedEof,
                            "end of stream inside a compressed frame",
                        ))
                    });
                }
                Poll::Ready(Ok(())) => me.rbuf.extend_from_slice(rb.filled()),
            }
        }
    }
}

impl<S: AsyncWrite + Unpin> Compressed<S> {
    /// Writes out `wbuf`; `Pending` while `inner` cannot take it all.
    fn poll_drain(&mut self, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        while self.w_at < self.wbuf.len() {
            match Pin::new(&mut self.inner).poll_write(cx, &self.wbuf[self.w_at..]) {
                Poll::Ready(Ok(0)) => return Poll::Ready(Err(io::ErrorKind::WriteZero.into())),
                Poll::Ready(Ok(n)) => self.w_at += n,
                Poll::Ready(Err(e)) => return Poll::Ready(Err(e)),
                Poll::Pending => return Poll::Pending,
            }
        }
        self.wbuf.clear();
        self.w_at = 0;
        Poll::Ready(Ok(()))
    }
}

impl<S: AsyncWrite + Unpin> AsyncWrite for Compressed<S> {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        data: &[u8],
    ) -> Poll<io::Result<usize>> {
        let me = self.get_mut();
        if data.is_empty() {
            return Poll::Ready(Ok(0));
        }
        // One frame in flight at most: back-pressure comes from `inner`.
        if let Poll::Ready(Err(e)) = me.poll_drain(cx) {
            return Poll::Ready(Err(e));
        }
        if !me.wbuf.is_empty() {
            return Poll::Pending;
        }
        me.plain.extend_from_slice(data);
        me.frame_plain(false)?;
        // Start sending now; what `inner` does not take yet goes out on the next
        // write or flush.
        if let Poll::Ready(Err(e)) = me.poll_drain(cx) {
            return Poll::Ready(Err(e));
        }
        Poll::Ready(Ok(data.len()))
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let me = self.get_mut();
        match me.poll_drain(cx) {
            Poll::Ready(Ok(())) => Pin::new(&mut me.inner).poll_flush(cx),
            other => other,
        }
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let me = self.get_mut();
        if me.wbuf.is_empty() {
            me.frame_plain(true)?;
        }
        match me.poll_drain(cx) {
            Poll::Ready(Ok(())) => Pin::new(&mut me.inner).poll_shutdown(cx),
            other => other,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    fn frames(codec: Codec, data: &[u8], seq: u8) -> Vec<u8> {
        let mut c = Compressed::new(tokio::io::empty(), codec);
        c.next_seq = seq;
        for chunk in data.chunks(MAX_FRAME) {
            c.frame(chunk).unwrap(); // ok: test code
        }
        c.wbuf
    }

    #[tokio::test]
    async fn what_is_written_reads_back_in_both_codecs() {
        for codec in [Codec::Zlib, Codec::Zstd(3)] {
            let (a, b) = tokio::io::duplex(1 << 16);
            let mut w = Compressed::new(a, codec);
            let mut r = Compressed::new(b, codec);
            let big: Vec<u8> = (0..200_000u32)
                .flat_map(|i| (i % 251).to_le_bytes())
                .collect();
            let t = tokio::spawn(async move {
                w.write_all(b"short").await.unwrap(); // ok: test code
                w.write_all(&big).await.unwrap(); // ok: test code
                w.flush().await.unwrap(); // ok: test code
                w.shutdown().await.unwrap(); // ok: test code
                big
            });
            let mut got = Vec::new();
            r.read_to_end(&mut got).await.unwrap(); // ok: test code
            let big = t.await.unwrap(); // ok: test code
            assert_eq!(&got[..5], b"short");
            assert_eq!(&got[5..], &big[..], "{codec:?}");
        }
    }

    #[test]
    fn small_payloads_are_stored_and_large_ones_compressed() {
        let f = frames(Codec::Zlib, b"tiny", 4);
        assert_eq!(f, [4, 0, 0, 4, 0, 0, 0, b't', b'i', b'n', b'y']);
        let big = vec![b'a'; 10_000];
        let f = frames(Codec::Zstd(3), &big, 0);
        assert_eq!(le24(&f[4..7]), 10_000);
        assert!(le24(&f[0..3]) < 200);
    }

    #[tokio::test]
    async fn the_writer_answers_with_the_id_after_the_last_frame_read() {
        let (client, router) = tokio::io::duplex(1 << 16);
        let mut client = client;
        let mut r = Compressed::new(router, Codec::Zlib);
        client
            .write_all(&frames(Codec::Zlib, b"\x01\x00\x00\x00\x0e", 0))
            .await
            .unwrap(); // ok: test code
        let mut b = [0u8; 5];
        r.read_exact(&mut b).await.unwrap(); // ok: test code
        assert_eq!(b, *b"\x01\x00\x00\x00\x0e");
        r.write_all(b"\x07\x00\x00\x01\x00\x00\x00\x02\x00\x00\x00")
            .await
            .unwrap(); // ok: test code
        r.flush().await.unwrap(); // ok: test code
        let mut h = [0u8; 7 + 11];
        client.read_exact(&mut h).await.unwrap(); // ok: test code
        assert_eq!(h[3], 1, "the reply's compressed sequence id");
        // A frame split across reads and several frames in one read.
        let mut two = frames(Codec::Zlib, &[9u8; 300], 0);
        two.extend(frames(Codec::Zlib, b"xyz", 1));
        client.write_all(&two[..5]).await.unwrap(); // ok: test code
        client.write_all(&two[5..]).await.unwrap(); // ok: test code
        let mut got = vec![0u8; 303];
        r.read_exact(&mut got).await.unwrap(); // ok: test code
        assert_eq!(&got[300..], b"xyz");
        r.write_all(b"\x01\x00\x00\x01\x00").await.unwrap(); // ok: test code
        r.flush().await.unwrap(); // ok: test code
        let mut h = [0u8; 7 + 5];
        client.read_exact(&mut h).await.unwrap(); // ok: test code
        assert_eq!(h[3], 2);
    }

    /// Packets of `sizes` (payload lengths), as a server sends them.
    fn packets(sizes: &[usize]) -> Vec<u8> {
        let mut v = Vec::new();
        for (i, &n) in sizes.iter().enumerate() {
            v.extend_from_slice(&u24(n));
            v.push(i as u8);
            v.extend(std::iter::repeat_n(b'p', n));
        }
        v
    }

    /// The payloads of the frames `c` wrote, uncompressed.
    fn written(c: &Compressed<tokio::io::Empty>) -> Vec<Vec<u8>> {
        let mut out = Vec::new();
        let mut w = &c.wbuf[..];
        while w.len() >= HEADER {
            let (clen, ulen) = (le24(&w[0..3]), le24(&w[4..7]));
            let p = &w[HEADER..HEADER + clen];
            out.push(if ulen == 0 {
                p.to_vec()
            } else {
                decompress(c.codec, p, ulen).unwrap() // ok: test code
            });
            w = &w[HEADER + clen..];
        }
        out
    }

    /// How many frames each packet of `frames` (concatenated) touches.
    fn frames_per_packet(frames: &[Vec<u8>]) -> Vec<usize> {
        let mut bounds = vec![0];
        for f in frames {
            bounds.push(bounds.last().unwrap() + f.len()); // ok: test code
        }
        let all = frames.concat();
        let (mut at, mut out) = (0, Vec::new());
        while at < all.len() {
            let end = at + 4 + le24(&all[at..at + 3]);
            out.push(
                bounds
                    .windows(2)
                    .filter(|w| w[0] < end && at < w[1])
                    .count(),
            );
            at = end;
        }
        out
    }

    #[test]
    fn frames_carry_whole_packets_however_the_writes_fall() {
        // Small packets written in pieces: framed only once whole, several together.
        let mut c = Compressed::new(tokio::io::empty(), Codec::Zlib);
        let data = packets(&[10, 100_000, 3]);
        for piece in data.chunks(16_384) {
            c.plain.extend_from_slice(piece);
            c.frame_plain(false).unwrap(); // ok: test code
        }
        let frames = written(&c);
        assert_eq!(frames.concat(), data);
        assert_eq!(frames_per_packet(&frames), [1, 1, 1]);
        // A packet longer than a frame: cut at the frame's limit, so it spans two
        // frames and no more; the packets after it start afresh.
        let mut c = Compressed::new(tokio::io::empty(), Codec::Zlib);
        let data = packets(&[MAX_FRAME, 20_000_000 - MAX_FRAME, 5]);
        for piece in data.chunks(1 << 20) {
            c.plain.extend_from_slice(piece);
            c.frame_plain(false).unwrap(); // ok: test code
        }
        let frames = written(&c);
        assert_eq!(frames.concat(), data);
        assert_eq!(frames[0].len(), MAX_FRAME);
        assert_eq!(frames_per_packet(&frames), [2, 1, 1]);
        // An unfinished packet waits for its end, unless the stream ends.
        let mut c = Compressed::new(tokio::io::empty(), Codec::Zlib);
        c.plain.extend_from_slice(&packets(&[100])[..50]);
        c.frame_plain(false).unwrap(); // ok: test code
        assert!(c.wbuf.is_empty());
        c.frame_plain(true).unwrap(); // ok: test code
        assert_eq!(written(&c).concat().len(), 50);
    }

    #[tokio::test]
    async fn bad_frames_are_errors_not_panics() {
        for junk in [
            // Claims 100 bytes uncompressed, payload is no zlib stream.
            vec![3, 0, 0, 0, 100, 0, 0, 1, 2, 3],
            // Inflates to more than it says.
            {
                let c = compress(Codec::Zlib, &[7u8; 1000]).unwrap(); // ok: test code
                let mut f = u24(c.len()).to_vec();
                f.push(0);
                f.extend(u24(10));
                f.extend(c);
                f
            },
            // Ends inside a frame.
            vec![50, 0, 0, 0, 0, 0, 0, 1, 2],
        ] {
            let (mut a, b) = tokio::io::duplex(1 << 16);
            a.write_all(&junk).await.unwrap(); // ok: test code
            drop(a);
            let mut r = Compressed::new(b, Codec::Zlib);
            let mut out = Vec::new();
            assert!(r.read_to_end(&mut out).await.is_err(), "{junk:?}");
        }
    }
}
