//! Refusing clients when the process is out of descriptors (`EMFILE`/`ENFILE`).
//!
//! When accept() fails for lack of a descriptor, the client stays in the listen backlog:
//! it has a TCP connection, no greeting, and would wait until its own timeout. The
//! process keeps one spare descriptor (`/dev/null`) for this: it is closed, the waiting
//! client is accepted on the freed slot, sent MySQL Router's 1040 frame and closed, and
//! the spare is opened again (libev's and nginx's trick). Shedding happens only on the
//! accept error path; the spare costs one descriptor for the life of the process.

use std::fs::File;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};
use std::sync::Mutex;

use nix::sys::socket::{accept4, SockFlag};

static SPARE: Mutex<Option<File>> = Mutex::new(None);

/// Whether an accept()/connect() error means "this process is out of descriptors or
/// memory" (not the peer's fault).
pub fn out_of_resources(e: &std::io::Error) -> bool {
    matches!(
        e.raw_os_error(),
        Some(libc::EMFILE | libc::ENFILE | libc::ENOBUFS | libc::ENOMEM)
    )
}

fn open_spare() -> Option<File> {
    File::open("/dev/null").ok()
}

/// Opens the spare descriptor if the process has none (at route start, and again after
/// a shedding that could not get it back).
pub fn reserve() {
    if let Ok(mut s) = SPARE.lock() {
        if s.is_none() {
            *s = open_spare();
        }
    }
}

/// Takes one waiting client off `listener` and sends it `frame` before closing it.
/// Returns whether a client was refused this way.
pub fn refuse_one(listener: RawFd, frame: &[u8]) -> bool {
    let Ok(mut spare) = SPARE.lock() else {
        return false;
    };
    // Free one descriptor, use it, give it back.
    let Some(file) = spare.take() else {
        *spare = open_spare();
        return false;
    };
    drop(file);
    let refused = match accept4(listener, SockFlag::SOCK_CLOEXEC | SockFlag::SOCK_NONBLOCK) {
        Ok(fd) => {
            // SAFETY: accept4 returned a new descriptor that nothing else owns.
            let fd = unsafe { OwnedFd::from_raw_fd(fd) };
            // A fresh socket's send buffer takes a 43-byte frame at once; a client that
            // is already gone is simply closed.
            let _ = nix::unistd::write(&fd, frame);
            let _ = nix::sys::socket::shutdown(fd.as_raw_fd(), nix::sys::socket::Shutdown::Write);
            true
        }
        Err(_) => false,
    };
    *spare = open_spare();
    refused
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Read;
    use std::os::fd::AsRawFd;

    #[test]
    fn a_waiting_client_gets_the_frame_and_a_close() {
        reserve();
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap(); // ok: test code
        l.set_nonblocking(true).unwrap(); // ok: test code
        let mut c = std::net::TcpStream::connect(l.local_addr().unwrap()).unwrap(); // ok: test code
        c.set_read_timeout(Some(std::time::Duration::from_secs(5)))
            .unwrap(); // ok: test code
                       // The connection may take a moment to reach the accept queue.
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(5);
        while !refuse_one(l.as_raw_fd(), b"bye") {
            assert!(std::time::Instant::now() < deadline, "nothing accepted");
            std::thread::sleep(std::time::Duration::from_millis(10));
        }
        let mut got = Vec::new();
        c.read_to_end(&mut got).unwrap(); // ok: test code
        assert_eq!(got, b"bye");
        // Nothing waiting: nothing refused, and the spare is back.
        assert!(!refuse_one(l.as_raw_fd(), b"bye"));
        assert!(SPARE.lock().unwrap().is_some()); // ok: test code
    }

    #[test]
    fn resource_errors_are_recognised() {
        for code in [libc::EMFILE, libc::ENFILE, libc::ENOBUFS, libc::ENOMEM] {
            assert!(out_of_resources(&std::io::Error::from_raw_os_error(code)));
        }
        assert!(!out_of_resources(&std::io::Error::from_raw_os_error(
            libc::ECONNREFUSED
        )));
    }
}
