//! Byte forwarding between a client and its server.
//!
//! Bytes are copied unchanged in both directions. End-of-stream on one side is passed on
//! as a half-close (`shutdown(SHUT_WR)`) to the other; the relay ends when both
//! directions are done or either side fails, and dropping the sockets closes both.
//!
//! Memory: an idle relayed connection owns no buffer. Each direction waits for
//! readiness, reads into a per-thread scratch buffer and writes to the peer at once
//! (no await in between); only bytes the peer cannot take right now are copied into a
//! heap buffer, which is freed as soon as they are written.
//!
//! Bulk: once a read fills the whole buffer (a large result set, a dump), that
//! direction switches to splice(2) through a pipe of its own, so the bytes never enter
//! user space. Request/response traffic never fills the buffer and stays on the copy
//! path, which costs no descriptors; if a pipe cannot be made, copying continues.

use std::cell::RefCell;
use std::io;
use std::os::fd::{AsFd, OwnedFd};
use std::sync::atomic::{AtomicU64, Ordering};

use nix::fcntl::{splice, OFlag, SpliceFFlags};

use tokio::io::Interest;
use tokio::net::{TcpStream, UnixStream};

/// Bytes moved in one direction and when the last ones moved, readable from other
/// threads while the relay runs (`/connections`). One writer per tally (its pump), so
/// an update is two relaxed stores on the connection's own record, no read-modify-write.
#[derive(Debug, Default)]
pub struct Tally {
    bytes: AtomicU64,
    /// Microseconds since the Unix epoch of the last bytes (0: none yet).
    last_us: AtomicU64,
}

impl Tally {
    pub fn add(&self, n: u64, now_us: u64) {
        self.bytes
            .store(self.bytes.load(Ordering::Relaxed) + n, Ordering::Relaxed);
        self.last_us.store(now_us, Ordering::Relaxed);
    }

    /// Adds bytes just moved, stamped with the wall clock.
    pub fn moved(&self, n: usize) {
        self.add(n as u64, crate::stats::now_us());
    }

    pub fn bytes(&self) -> u64 {
        self.bytes.load(Ordering::Relaxed)
    }

    pub fn last_us(&self) -> u64 {
        self.last_us.load(Ordering::Relaxed)
    }
}

/// A connected stream the relay can drive without owning a buffer.
pub trait Stream: AsFd {
    fn readable(&self) -> impl std::future::Future<Output = io::Result<()>> + Send;
    fn writable(&self) -> impl std::future::Future<Output = io::Result<()>> + Send;
    fn try_read(&self, buf: &mut [u8]) -> io::Result<usize>;
    fn try_write(&self, buf: &[u8]) -> io::Result<usize>;
    fn try_io<R>(&self, interest: Interest, f: impl FnOnce() -> io::Result<R>) -> io::Result<R>;

    /// Like `try_read`, but a short read (fewer bytes than `buf` holds) marks the socket
    /// as drained, so the next wait goes straight to epoll instead of first paying for a
    /// `read` that returns EAGAIN. Safe against races: tokio only clears readiness if no
    /// new readiness event arrived since it was observed.
    fn read_clearing(&self, buf: &mut [u8]) -> io::Result<usize> {
        let mut short = None;
        let cap = buf.len();
        let r = self.try_io(Interest::READABLE, || {
            let n = nix::unistd::read(self.as_fd(), buf).map_err(io::Error::from)?;
            if n > 0 && n < cap {
                short = Some(n);
                return Err(io::ErrorKind::WouldBlock.into());
            }
            Ok(n)
        });
        match (r, short) {
            (_, Some(n)) => Ok(n),
            (r, None) => r,
        }
    }
}

macro_rules! impl_stream {
    ($t:ty) => {
        impl Stream for $t {
            fn readable(&self) -> impl std::future::Future<Output = io::Result<()>> + Send {
                <$t>::readable(self)
            }
            fn writable(&self) -> impl std::future::Future<Output = io::Result<()>> + Send {
                <$t>::writable(self)
            }
            fn try_read(&self, buf: &mut [u8]) -> io::Result<usize> {
                <$t>::try_read(self, buf)
            }
            fn try_write(&self, buf: &[u8]) -> io::Result<usize> {
                <$t>::try_write(self, buf)
            }
            fn try_io<R>(
                &self,
                interest: Interest,
                f: impl FnOnce() -> io::Result<R>,
            ) -> io::Result<R> {
                <$t>::try_io(self, interest, f)
            }
        }
    };
}
impl_stream!(TcpStream);
impl_stream!(UnixStream);

thread_local! {
    /// Scratch space for one read; never held across an await.
    static SCRATCH: RefCell<Vec<u8>> = const { RefCell::new(Vec::new()) };
}

enum Step {
    /// Read n bytes and wrote them all.
    Done(usize),
    /// Read some bytes; the tail the peer did not take is returned.
    Partial(Vec<u8>),
    Eof,
    WouldBlock,
}

/// One read from `from` and one write to `to`, with no await in between; the bytes
/// read are added to `total`.
fn step<F: Stream, T: Stream>(from: &F, to: &T, size: usize, total: &Tally) -> io::Result<Step> {
    SCRATCH.with(|s| {
        let mut buf = s.borrow_mut();
        if buf.len() < size {
            buf.resize(size, 0);
        }
        let n = match from.read_clearing(&mut buf[..size]) {
            Ok(0) => return Ok(Step::Eof),
            Ok(n) => n,
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => return Ok(Step::WouldBlock),
            Err(e) => return Err(e),
        };
        // Counted when read, before they are written: whoever receives them must find
        // them (and the time stamp) in `/connections` already.
        total.moved(n);
        let mut written = 0;
        while written < n {
            match to.try_write(&buf[written..n]) {
                Ok(0) => return Err(io::ErrorKind::WriteZero.into()),
                Ok(w) => written += w,
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
                    return Ok(Step::Partial(buf[written..n].to_vec()))
                }
                Err(e) => return Err(e),
            }
        }
        Ok(Step::Done(n))
    })
}

async fn write_all<T: Stream>(to: &T, mut data: &[u8]) -> io::Result<()> {
    while !data.is_empty() {
        to.writable().await?;
        match to.try_write(data) {
            Ok(0) => return Err(io::ErrorKind::WriteZero.into()),
            Ok(n) => data = &data[n..],
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => {}
            Err(e) => return Err(e),
        }
    }
    Ok(())
}

/// Half-closes `to` (no more bytes from us).
pub fn shutdown_write<T: Stream>(to: &T) {
    let _ = nix::sys::socket::shutdown(
        std::os::fd::AsRawFd::as_raw_fd(&to.as_fd()),
        nix::sys::socket::Shutdown::Write,
    );
}

/// The pipe a bulk direction splices through (created on first bulk read).
struct Pipe {
    r: OwnedFd,
    w: OwnedFd,
}

impl Pipe {
    fn new() -> Option<Pipe> {
        let (r, w) = nix::unistd::pipe2(OFlag::O_NONBLOCK | OFlag::O_CLOEXEC).ok()?;
        // Larger than the 64 KiB default where allowed; the default works too.
        let _ = nix::fcntl::fcntl(&w, nix::fcntl::FcntlArg::F_SETPIPE_SZ(PIPE_SIZE as i32));
        Some(Pipe { r, w })
    }
}

const PIPE_SIZE: usize = 1 << 20;

fn splice_flags() -> SpliceFFlags {
    SpliceFFlags::SPLICE_F_NONBLOCK | SpliceFFlags::SPLICE_F_MOVE
}

/// `from` → `to` with splice(2) until end-of-stream. The pipe is always drained before
/// the next splice from the socket, so EAGAIN from the socket side means "no data".
async fn splice_pump<F: Stream, T: Stream>(
    from: &F,
    to: &T,
    pipe: Pipe,
    total: &Tally,
) -> io::Result<()> {
    loop {
        let r = from.try_io(Interest::READABLE, || {
            splice(from.as_fd(), None, &pipe.w, None, PIPE_SIZE, splice_flags())
                .map_err(io::Error::from)
        });
        let mut buffered = match r {
            Ok(0) => {
                shutdown_write(to);
                return Ok(());
            }
            Ok(n) => n,
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
                from.readable().await?;
                continue;
            }
            Err(e) => return Err(e),
        };
        total.moved(buffered);
        while buffered > 0 {
            let w = to.try_io(Interest::WRITABLE, || {
                splice(&pipe.r, None, to.as_fd(), None, buffered, splice_flags())
                    .map_err(io::Error::from)
            });
            match w {
                Ok(0) => return Err(io::ErrorKind::WriteZero.into()),
                Ok(n) => buffered -= n,
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => to.writable().await?,
                Err(e) => return Err(e),
            }
        }
    }
}

/// Copies `from` → `to` until end-of-stream, then half-closes `to`. Bytes moved are
/// added to `total` as they go, so they are known even if the relay stops early.
pub async fn pump<F: Stream, T: Stream>(
    from: &F,
    to: &T,
    size: usize,
    total: &Tally,
) -> io::Result<()> {
    loop {
        match step(from, to, size, total)? {
            Step::Done(n) => {
                if n == size {
                    if let Some(pipe) = Pipe::new() {
                        return splice_pump(from, to, pipe, total).await;
                    }
                }
            }
            Step::Partial(rest) => {
                write_all(to, &rest).await?;
            }
            Step::Eof => {
                shutdown_write(to);
                return Ok(());
            }
            Step::WouldBlock => from.readable().await?,
        }
    }
}

/// Relays until both directions are finished; a reset or error on either side ends it.
///
/// The two ends are not symmetric. A client's end-of-stream (e.g. after COM_QUIT) is
/// passed on and the server's remaining bytes still flow back. The server's
/// end-of-stream means the session is over (MySQL servers close, they do not
/// half-close): it is passed on and the relay ends, so a client that does not read
/// (an idle pooled connection) does not keep its slot and descriptors.
pub async fn relay<C: Stream, S: Stream>(
    client: &C,
    server: &S,
    size: usize,
    up: &Tally,
    down: &Tally,
) -> io::Result<()> {
    {
        let up_pump = pump(client, server, size, up);
        let down_pump = pump(server, client, size, down);
        tokio::pin!(up_pump, down_pump);
        let mut up_done = false;
        loop {
            tokio::select! {
                r = &mut up_pump, if !up_done => match r {
                    Ok(()) => up_done = true,
                    Err(e) => break Err(e),
                },
                r = &mut down_pump => break r,
            }
        }
    }
}

/// Writes all of `data` to `to` (used by the handshake phase).
pub async fn send<T: Stream>(to: &T, data: &[u8]) -> io::Result<()> {
    write_all(to, data).await
}

/// Reads what is available into `buf` after waiting for readiness (handshake phase).
pub async fn recv<F: Stream>(from: &F, buf: &mut [u8]) -> io::Result<usize> {
    loop {
        from.readable().await?;
        match from.try_read(buf) {
            Ok(n) => return Ok(n),
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => {}
            Err(e) => return Err(e),
        }
    }
}

/// Reads and discards until end-of-stream or `max` passes, so that closing afterwards
/// does not reset a connection whose peer is still reading our last bytes.
pub async fn drain<F: Stream>(from: &F, max: std::time::Duration) {
    let mut sink = [0u8; 512];
    let _ = tokio::time::timeout(max, async {
        while let Ok(n) = recv(from, &mut sink).await {
            if n == 0 {
                break;
            }
        }
    })
    .await;
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    async fn pair() -> (TcpStream, TcpStream) {
        let l = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap(); // ok: test code
        let a = TcpStream::connect(l.local_addr().unwrap()).await.unwrap(); // ok: test code
        let (b, _) = l.accept().await.unwrap(); // ok: test code
        (a, b)
    }

    #[tokio::test]
    async fn relays_both_ways_with_half_close() {
        // client_app <-> (c_side | relay | s_side) <-> server_app
        let (mut client_app, c_side) = pair().await;
        let (s_side, mut server_app) = pair().await;
        let relay = tokio::spawn(async move {
            let (up, down) = (Tally::default(), Tally::default());
            relay(&c_side, &s_side, 1024, &up, &down).await?;
            io::Result::Ok((up.bytes(), down.bytes()))
        });
        let big: Vec<u8> = (0..3_000_000u32).map(|i| (i % 251) as u8).collect();
        let big2 = big.clone();
        let writer = tokio::spawn(async move {
            client_app.write_all(&big2).await.unwrap(); // ok: test code
            client_app.shutdown().await.unwrap(); // half-close // ok: test code
            let mut back = Vec::new();
            client_app.read_to_end(&mut back).await.unwrap(); // ok: test code
            back
        });
        let mut got = Vec::new();
        server_app.read_to_end(&mut got).await.unwrap(); // EOF arrives: half-close passed on // ok: test code
        assert!(got == big);
        server_app
            .write_all(b"reply after client's FIN")
            .await
            .unwrap(); // ok: test code
        drop(server_app);
        assert_eq!(writer.await.unwrap(), b"reply after client's FIN"); // ok: test code
        let c = relay.await.unwrap().unwrap(); // ok: test code
        assert_eq!(c, (3_000_000, 24));
    }

    #[tokio::test]
    async fn server_close_ends_the_relay_even_if_the_client_stays() {
        let (mut client_app, c_side) = pair().await;
        let (s_side, mut server_app) = pair().await;
        let relay = tokio::spawn(async move {
            let (up, down) = (Tally::default(), Tally::default());
            relay(&c_side, &s_side, 1024, &up, &down).await?;
            io::Result::Ok((up.bytes(), down.bytes()))
        });
        server_app.write_all(b"bye").await.unwrap(); // ok: test code
        drop(server_app);
        let counts = tokio::time::timeout(std::time::Duration::from_secs(2), relay)
            .await
            .expect("relay ended although the client never closed") // ok: test code
            .unwrap() // ok: test code
            .unwrap(); // ok: test code
        assert_eq!(counts, (0, 3));
        let mut got = Vec::new();
        client_app.read_to_end(&mut got).await.unwrap(); // ok: test code
        assert_eq!(got, b"bye");
    }
}
