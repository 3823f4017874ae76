//! Watching a classic-protocol handshake pass through, to tell "completed" from
//! "failed" for `max_connect_errors`. Pure: fed with the bytes each side sent, in
//! order; it never changes them.
//!
//! The rule implemented (documented in the README):
//! * The server speaks first. If its first packet is an ERR (e.g. its own 1040), the
//!   handshake is over and it is *not* the client's fault.
//! * The client's first packet must be a HandshakeResponse41 or an SSLRequest: sequence
//!   id 1, at least 32 bytes of payload, `CLIENT_PROTOCOL_41` set. Anything else is a
//!   bad handshake (the router answers 1043 `Bad handshake`).
//! * After a HandshakeResponse, auth-switch (`0xFE`) and more-data (`0x01`) exchanges
//!   may follow in both directions; the server's OK (`0x00`) or ERR (`0xFF`) completes
//!   the handshake (a wrong password is the server's verdict, not a protocol error).
//! * After an SSLRequest, TLS starts and packets are no longer visible: the handshake
//!   counts as completed once both sides have sent TLS bytes.
//! * A client that closes after the server has answered its login (auth-switch,
//!   more-data such as caching_sha2's `01 04` "full authentication" request, OK or ERR)
//!   has had the server's verdict: it gave up on its own (e.g. `ERROR 2061
//!   Authentication requires secure connection`), which is not a bad handshake.
//!
//! For `protocol = x` (frames: 4-byte length, 1-byte type) the client speaks first:
//! * before authentication the client may only send capability, authentication and
//!   close frames (types 1–7) of at most 1 MiB; anything else is a bad handshake;
//! * the server's `SESS_AUTHENTICATE_OK` completes the handshake, and so does its ERROR
//!   after the client started authenticating (the server's verdict); a client's
//!   `CON_CLOSE` is a clean goodbye, not an error;
//! * after `CON_CAPABILITIES_SET` and the server's OK, a TLS record from the client
//!   means TLS has started: completed once both sides have sent TLS bytes;
//! * a client that closes after the server answered one of its frames (capabilities,
//!   OK, ERROR, authentication continue) has had an answer: e.g. a client that refuses
//!   to authenticate on an unencrypted connection once it learnt the server's
//!   capabilities. Not a bad handshake either.

use crate::config::Protocol;
use crate::protocol::frame::le24;

const CLIENT_PROTOCOL_41: u32 = 0x0200;
const CLIENT_SSL: u32 = 0x0800;
/// HandshakeResponse41 fixed part: caps(4) + max packet(4) + charset(1) + filler(23).
const MIN_RESPONSE: usize = 32;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verdict {
    Continue,
    Complete,
    /// The client sent something that is not a handshake.
    Bad,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum State {
    Greeting,
    ClientResponse,
    AuthResult,
    /// After SSLRequest: (client sent TLS bytes, server sent TLS bytes).
    Tls(bool, bool),
    /// X protocol, before authentication completed.
    X(XState),
    Done(Verdict),
}

/// Splits one direction's bytes into packets and keeps the first payload bytes of
/// the current packet.
#[derive(Debug, Default, Clone)]
struct Framer {
    hdr: [u8; 4],
    hdr_len: usize,
    remaining: usize,
    len: usize,
    prefix: [u8; 4],
    prefix_len: usize,
}

/// A packet whose header and first payload bytes are known.
#[derive(Debug, Clone, Copy)]
struct Head {
    len: usize,
    seq: u8,
    prefix: [u8; 4],
    prefix_len: usize,
}

impl Framer {
    /// Feeds bytes; calls `f` once per packet, as soon as `min(4, len)` payload bytes
    /// are known. Stops early when `f` returns false.
    fn feed(&mut self, mut data: &[u8], mut f: impl FnMut(Head) -> bool) {
        while !data.is_empty() {
            if self.hdr_len < 4 {
                let take = (4 - self.hdr_len).min(data.len());
                self.hdr[self.hdr_len..self.hdr_len + take].copy_from_slice(&data[..take]);
                self.hdr_len += take;
                data = &data[take..];
                if self.hdr_len < 4 {
                    return;
                }
                self.len = le24(&self.hdr);
                self.remaining = self.len;
                self.prefix_len = 0;
                if self.len == 0 && !self.emit(&mut f) {
                    return;
                }
                if self.len == 0 {
                    self.hdr_len = 0;
                    continue;
                }
            }
            let take = self.remaining.min(data.len());
            let want = self.len.min(4);
            let mut stop = false;
            if self.prefix_len < want {
                let p = (want - self.prefix_len).min(take);
                self.prefix[self.prefix_len..self.prefix_len + p].copy_from_slice(&data[..p]);
                self.prefix_len += p;
                stop = self.prefix_len == want && !self.emit(&mut f);
            }
            self.remaining -= take;
            data = &data[take..];
            if self.remaining == 0 {
                self.hdr_len = 0;
            }
            if stop {
                return;
            }
        }
    }

    fn emit(&self, f: &mut impl FnMut(Head) -> bool) -> bool {
        f(Head {
            len: self.len,
            seq: self.hdr[3],
            prefix: self.prefix,
            prefix_len: self.prefix_len,
        })
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
struct XState {
    /// The client has sent at least one frame header.
    client_spoke: bool,
    auth_started: bool,
    caps_set: bool,
    /// The server said OK after CON_CAPABILITIES_SET: TLS may start.
    tls_possible: bool,
}

/// X-protocol client message types allowed before authentication completes.
const X_CLIENT_PRE_AUTH: std::ops::RangeInclusive<u8> = 1..=7;
const X_CON_CAPABILITIES_SET: u8 = 2;
const X_CON_CLOSE: u8 = 3;
const X_SESS_AUTHENTICATE_START: u8 = 4;
const X_SERVER_OK: u8 = 0;
const X_SERVER_ERROR: u8 = 1;
const X_CON_CAPABILITIES: u8 = 2;
const X_SESS_AUTHENTICATE_CONTINUE: u8 = 3;
const X_SESS_AUTHENTICATE_OK: u8 = 4;
const X_MAX_PRE_AUTH_FRAME: usize = 1 << 20;

/// Splits X-protocol bytes into frames (length, type); payloads are skipped.
#[derive(Debug, Default, Clone)]
struct XFramer {
    hdr: [u8; 5],
    hdr_len: usize,
    remaining: usize,
}

impl XFramer {
    fn at_boundary(&self) -> bool {
        self.hdr_len == 0 && self.remaining == 0
    }

    /// Calls `f(length, type)` per frame header; stops early when `f` returns false.
    fn feed(&mut self, mut data: &[u8], mut f: impl FnMut(usize, u8) -> bool) {
        while !data.is_empty() {
            if self.remaining > 0 {
                let take = self.remaining.min(data.len());
                self.remaining -= take;
                data = &data[take..];
                continue;
            }
            let take = (5 - self.hdr_len).min(data.len());
            self.hdr[self.hdr_len..self.hdr_len + take].copy_from_slice(&data[..take]);
            self.hdr_len += take;
            data = &data[take..];
            if self.hdr_len < 5 {
                return;
            }
            let len =
                u32::from_le_bytes([self.hdr[0], self.hdr[1], self.hdr[2], self.hdr[3]]) as usize;
            self.hdr_len = 0;
            // The length counts the type byte, already read.
            self.remaining = len.saturating_sub(1);
            if !f(len, self.hdr[4]) {
                return;
            }
        }
    }
}

#[derive(Debug, Clone)]
pub struct Tracker {
    state: State,
    client: Framer,
    server: Framer,
    x_client: XFramer,
    x_server: XFramer,
    client_bytes: u64,
    /// The server has answered the client's login (classic) or one of its frames (X).
    answered: bool,
}

impl Tracker {
    pub fn new(protocol: Protocol) -> Self {
        Tracker {
            state: match protocol {
                Protocol::Classic => State::Greeting,
                Protocol::X => State::X(XState::default()),
            },
            client: Framer::default(),
            server: Framer::default(),
            x_client: XFramer::default(),
            x_server: XFramer::default(),
            client_bytes: 0,
            answered: false,
        }
    }

    pub fn verdict(&self) -> Verdict {
        match self.state {
            State::Done(v) => v,
            _ => Verdict::Continue,
        }
    }

    /// Whether client bytes may be read now: in the classic protocol not before the
    /// server's greeting has passed (bytes a client sends early wait in its socket, as
    /// with any server).
    pub fn client_turn(&self) -> bool {
        self.state != State::Greeting
    }

    /// Whether the client has sent anything (a client that sent nothing and left is
    /// not counted as a connection error).
    pub fn client_sent(&self) -> bool {
        self.client_bytes > 0
    }

    /// Whether a client that closes now (before the handshake completed) failed its
    /// handshake: it sent something, and the server has not answered it yet. A client
    /// that sent nothing is a health check; one that closes after the server answered
    /// its login has had the server's verdict and gave up on its own.
    pub fn close_is_failure(&self) -> bool {
        self.client_sent() && !self.answered
    }

    pub fn on_server(&mut self, data: &[u8]) -> Verdict {
        match self.state {
            State::Tls(c, _) => {
                self.state = if c {
                    State::Done(Verdict::Complete)
                } else {
                    State::Tls(c, true)
                };
            }
            State::X(mut x) => {
                let mut done = false;
                let mut answered = self.answered;
                self.x_server.feed(data, |_, ty| {
                    // Notices (e.g. the server's hello) are not answers.
                    answered |= x.client_spoke
                        && matches!(
                            ty,
                            X_SERVER_OK
                                | X_SERVER_ERROR
                                | X_CON_CAPABILITIES
                                | X_SESS_AUTHENTICATE_CONTINUE
                        );
                    if ty == X_SESS_AUTHENTICATE_OK || (ty == X_SERVER_ERROR && x.auth_started) {
                        done = true;
                    } else if ty == X_SERVER_OK && x.caps_set {
                        x.tls_possible = true;
                    }
                    !done
                });
                self.answered = answered;
                self.state = if done {
                    State::Done(Verdict::Complete)
                } else {
                    State::X(x)
                };
            }
            State::Done(_) => {}
            _ => {
                let mut state = self.state;
                let mut answered = self.answered;
                self.server.feed(data, |h| {
                    let first = h.prefix.first().copied().filter(|_| h.prefix_len > 0);
                    // Any packet after the client's response answers its login.
                    answered |= state == State::AuthResult;
                    state = match (state, first) {
                        (State::Greeting, Some(0xff)) => State::Done(Verdict::Complete),
                        (State::Greeting, _) => State::ClientResponse,
                        (State::AuthResult, Some(0x00)) | (State::AuthResult, Some(0xff)) => {
                            State::Done(Verdict::Complete)
                        }
                        (s, _) => s,
                    };
                    !matches!(state, State::Done(_))
                });
                self.answered = answered;
                self.state = state;
            }
        }
        self.verdict()
    }

    pub fn on_client(&mut self, data: &[u8]) -> Verdict {
        self.client_bytes += data.len() as u64;
        match self.state {
            State::Tls(_, s) => {
                self.state = if s {
                    State::Done(Verdict::Complete)
                } else {
                    State::Tls(true, s)
                };
            }
            State::X(mut x) => {
                // A TLS record (16 03 ..) where a frame would start, after the server
                // accepted CON_CAPABILITIES_SET: TLS has begun.
                if x.tls_possible
                    && self.x_client.at_boundary()
                    && data.len() >= 2
                    && data[0] == 0x16
                    && data[1] == 0x03
                {
                    self.state = State::Tls(true, false);
                    return self.verdict();
                }
                let mut verdict = None;
                self.x_client.feed(data, |len, ty| {
                    x.client_spoke = true;
                    if !X_CLIENT_PRE_AUTH.contains(&ty) || len == 0 || len > X_MAX_PRE_AUTH_FRAME {
                        verdict = Some(Verdict::Bad);
                    } else if ty == X_CON_CLOSE {
                        verdict = Some(Verdict::Complete);
                    } else if ty == X_SESS_AUTHENTICATE_START {
                        x.auth_started = true;
                    } else if ty == X_CON_CAPABILITIES_SET {
                        x.caps_set = true;
                    }
                    verdict.is_none()
                });
                self.state = match verdict {
                    Some(v) => State::Done(v),
                    None => State::X(x),
                };
            }
            State::Done(_) => {}
            _ => {
                let mut state = self.state;
                let mut pending_tls = false;
                self.client.feed(data, |h| {
                    if matches!(state, State::ClientResponse | State::Greeting) {
                        let caps = u32::from_le_bytes(h.prefix);
                        let ok = h.seq == 1
                            && h.len >= MIN_RESPONSE
                            && h.prefix_len == 4
                            && caps & CLIENT_PROTOCOL_41 != 0;
                        state = if !ok {
                            State::Done(Verdict::Bad)
                        } else if caps & CLIENT_SSL != 0 && h.len == MIN_RESPONSE {
                            pending_tls = true;
                            State::Tls(false, false)
                        } else {
                            State::AuthResult
                        };
                        return false;
                    }
                    true
                });
                // TLS bytes may follow the SSLRequest in the same read.
                if pending_tls {
                    let consumed = 4 + MIN_RESPONSE;
                    if data.len() > consumed {
                        state = State::Tls(true, false);
                    }
                }
                self.state = state;
            }
        }
        self.verdict()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn packet(seq: u8, payload: &[u8]) -> Vec<u8> {
        let mut p = (payload.len() as u32).to_le_bytes()[..3].to_vec();
        p.push(seq);
        p.extend_from_slice(payload);
        p
    }

    fn response(caps: u32, extra: usize) -> Vec<u8> {
        let mut p = caps.to_le_bytes().to_vec();
        p.extend_from_slice(&[0; 28]);
        p.extend(std::iter::repeat_n(b'x', extra));
        packet(1, &p)
    }

    const GREETING: &[u8] = b"\x0a5.5.5-10.11.6-MariaDB\0";

    #[test]
    fn native_password_ok() {
        let mut t = Tracker::new(Protocol::Classic);
        assert_eq!(t.on_server(&packet(0, GREETING)), Verdict::Continue);
        assert_eq!(
            t.on_client(&response(0x0200 | 0x8000, 20)),
            Verdict::Continue
        );
        assert_eq!(
            t.on_server(&packet(2, &[0, 0, 0, 2, 0, 0, 0])),
            Verdict::Complete
        );
    }

    #[test]
    fn auth_switch_and_more_data_then_err() {
        let mut t = Tracker::new(Protocol::Classic);
        t.on_server(&packet(0, GREETING));
        t.on_client(&response(0x0200, 10));
        assert_eq!(
            t.on_server(&packet(2, b"\xfemysql_native_password\0abc")),
            Verdict::Continue
        );
        assert_eq!(t.on_client(&packet(3, &[1; 20])), Verdict::Continue);
        assert_eq!(t.on_server(&packet(4, &[0x01, 0x04])), Verdict::Continue);
        assert_eq!(t.on_client(&packet(5, b"secret\0")), Verdict::Continue);
        assert_eq!(
            t.on_server(&packet(6, b"\xff\x15\x04#28000Access denied")),
            Verdict::Complete
        );
    }

    #[test]
    fn byte_by_byte() {
        let mut t = Tracker::new(Protocol::Classic);
        for b in packet(0, GREETING) {
            t.on_server(&[b]);
        }
        for b in response(0x0200, 5) {
            assert_eq!(t.on_client(&[b]), Verdict::Continue);
        }
        let ok = packet(2, &[0, 0, 0]);
        let (last, head) = ok.split_last().unwrap(); // ok: test code
        for b in head {
            assert_eq!(t.on_server(&[*b]), Verdict::Continue);
        }
        assert_eq!(t.on_server(&[*last]), Verdict::Complete);
    }

    #[test]
    fn garbage_and_short_packets_are_bad() {
        let mut t = Tracker::new(Protocol::Classic);
        t.on_server(&packet(0, GREETING));
        assert_eq!(t.on_client(b"\x08\x00\x00\x01garbage!"), Verdict::Bad);
        let mut t = Tracker::new(Protocol::Classic);
        t.on_server(&packet(0, GREETING));
        assert_eq!(
            t.on_client(&response(0, 0)),
            Verdict::Bad,
            "no CLIENT_PROTOCOL_41"
        );
        let mut t = Tracker::new(Protocol::Classic);
        t.on_server(&packet(0, GREETING));
        let mut r = response(0x0200, 0);
        r[3] = 7;
        assert_eq!(t.on_client(&r), Verdict::Bad, "wrong sequence id");
        let mut t = Tracker::new(Protocol::Classic);
        assert_eq!(
            t.on_client(b"GET / HTTP/1.0\r\n"),
            Verdict::Bad,
            "before greeting"
        );
    }

    #[test]
    fn partial_response_is_not_complete() {
        let mut t = Tracker::new(Protocol::Classic);
        t.on_server(&packet(0, GREETING));
        let r = response(0x0200, 10);
        assert_eq!(t.on_client(&r[..10]), Verdict::Continue);
        assert!(t.client_sent());
    }

    #[test]
    fn server_error_greeting_completes() {
        let mut t = Tracker::new(Protocol::Classic);
        assert_eq!(
            t.on_server(&packet(0, b"\xff\x10\x04Too many connections")),
            Verdict::Complete
        );
    }

    #[test]
    fn tls_completes_when_both_sides_talk() {
        let mut t = Tracker::new(Protocol::Classic);
        t.on_server(&packet(0, GREETING));
        assert_eq!(
            t.on_client(&response(0x0200 | 0x0800, 0)),
            Verdict::Continue
        );
        assert_eq!(t.on_client(b"\x16\x03\x01\x02\x00"), Verdict::Continue);
        assert_eq!(t.on_server(b"\x16\x03\x03\x00\x7a"), Verdict::Complete);
    }

    fn xframe(ty: u8, payload: &[u8]) -> Vec<u8> {
        let mut f = ((payload.len() + 1) as u32).to_le_bytes().to_vec();
        f.push(ty);
        f.extend_from_slice(payload);
        f
    }

    #[test]
    fn x_protocol_authentication() {
        let mut t = Tracker::new(Protocol::X);
        assert!(t.client_turn());
        assert_eq!(t.on_client(&xframe(1, b"")), Verdict::Continue); // CapabilitiesGet
        assert_eq!(t.on_server(&xframe(2, b"caps")), Verdict::Continue);
        assert_eq!(t.on_client(&xframe(4, b"\x0a\x05PLAIN")), Verdict::Continue);
        // A notice does not complete it; AuthenticateOk does, even byte by byte.
        assert_eq!(t.on_server(&xframe(11, b"n")), Verdict::Continue);
        let ok = xframe(4, b"");
        for b in &ok[..4] {
            assert_eq!(t.on_server(&[*b]), Verdict::Continue);
        }
        assert_eq!(t.on_server(&ok[4..]), Verdict::Complete);
    }

    #[test]
    fn x_protocol_failures_and_goodbye() {
        let mut t = Tracker::new(Protocol::X);
        assert_eq!(t.on_client(b"GET / HTTP/1.1\r\n"), Verdict::Bad);
        let mut t = Tracker::new(Protocol::X);
        assert_eq!(
            t.on_client(&xframe(12, b"SELECT 1")),
            Verdict::Bad,
            "SQL before auth"
        );
        let mut t = Tracker::new(Protocol::X);
        assert_eq!(
            t.on_client(&xframe(3, b"")),
            Verdict::Complete,
            "CON_CLOSE is clean"
        );
        // A wrong password is the server's verdict.
        let mut t = Tracker::new(Protocol::X);
        t.on_client(&xframe(4, b"auth"));
        assert_eq!(t.on_server(&xframe(1, b"denied")), Verdict::Complete);
        // An error before authentication started does not complete it.
        let mut t = Tracker::new(Protocol::X);
        t.on_client(&xframe(1, b""));
        assert_eq!(t.on_server(&xframe(1, b"err")), Verdict::Continue);
    }

    #[test]
    fn x_protocol_tls() {
        let mut t = Tracker::new(Protocol::X);
        t.on_client(&xframe(2, b"tls=1"));
        t.on_server(&xframe(0, b""));
        assert_eq!(t.on_client(b"\x16\x03\x01\x02\x00hello"), Verdict::Continue);
        assert_eq!(t.on_server(b"\x16\x03\x03\x00\x7a"), Verdict::Complete);
    }

    /// MySQL 9.7.4's greeting as recorded (caching_sha2_password, scramble included).
    const MYSQL97_GREETING: &str = "4b0000000a392e372e342d32000b0000006579582e022f5f6700ffffff0200ffdf15000000000000000000001013070\
34e4f030a577b35190063616368696e675f736861325f70617373776f726400";

    fn hex(s: &str) -> Vec<u8> {
        (0..s.len())
            .step_by(2)
            .map(|i| u8::from_str_radix(&s[i..i + 2], 16).unwrap()) // ok: test code
            .collect()
    }

    #[test]
    fn close_after_full_auth_request_is_not_a_failure() {
        // caching_sha2_password with an empty server cache: the server asks for full
        // authentication (01 04); a client on plain TCP without the server's RSA key
        // gives up (2061) and closes.
        let mut t = Tracker::new(Protocol::Classic);
        assert_eq!(t.on_server(&hex(MYSQL97_GREETING)), Verdict::Continue);
        assert_eq!(
            t.on_client(&response(0x0200 | 0x8000, 60)),
            Verdict::Continue
        );
        assert!(
            t.close_is_failure(),
            "no answer yet: closing now is a failure"
        );
        // Fast-auth digest refused, then the full-auth request.
        assert_eq!(t.on_server(&packet(2, &[0x01, 0x04])), Verdict::Continue);
        assert!(!t.close_is_failure());
    }

    #[test]
    fn close_after_auth_switch_is_not_a_failure() {
        let mut t = Tracker::new(Protocol::Classic);
        t.on_server(&hex(MYSQL97_GREETING));
        t.on_client(&response(0x0200, 10));
        t.on_server(&packet(2, b"\xfemysql_native_password\0abc"));
        assert!(!t.close_is_failure());
        // Even if the client then sends part of its switch response.
        t.on_client(&packet(3, &[1; 20])[..8]);
        assert!(!t.close_is_failure());
    }

    #[test]
    fn close_before_the_login_is_answered_is_a_failure() {
        // Nothing sent: a health check, not counted.
        let mut t = Tracker::new(Protocol::Classic);
        t.on_server(&hex(MYSQL97_GREETING));
        assert!(!t.close_is_failure());
        // Part of a response.
        let r = response(0x0200, 10);
        t.on_client(&r[..12]);
        assert!(t.close_is_failure());
        // A whole response, unanswered.
        let mut t = Tracker::new(Protocol::Classic);
        t.on_server(&hex(MYSQL97_GREETING));
        t.on_client(&response(0x0200, 10));
        assert!(t.close_is_failure());
        // An SSLRequest, then nothing: still mid-handshake.
        let mut t = Tracker::new(Protocol::Classic);
        t.on_server(&hex(MYSQL97_GREETING));
        t.on_client(&response(0x0200 | 0x0800, 0));
        assert!(t.close_is_failure());
        // The greeting alone is not an answer (the client had said nothing).
        let mut t = Tracker::new(Protocol::Classic);
        t.on_client(&[]);
        t.on_server(&hex(MYSQL97_GREETING));
        assert!(!t.close_is_failure());
    }

    #[test]
    fn x_close_after_capabilities_is_not_a_failure() {
        let mut t = Tracker::new(Protocol::X);
        // MySQL 9.7's hello notice on connect is not an answer.
        assert_eq!(t.on_server(&hex("050000000b08051a00")), Verdict::Continue);
        assert!(!t.close_is_failure(), "nothing sent");
        t.on_client(&xframe(1, b"")); // CapabilitiesGet
        assert!(t.close_is_failure(), "asked, not answered");
        t.on_server(&xframe(2, b"tls: true"));
        assert!(!t.close_is_failure(), "capabilities answered");

        // CapabilitiesSet answered by an ERROR (e.g. TLS not possible).
        let mut t = Tracker::new(Protocol::X);
        t.on_client(&xframe(2, b"tls=1"));
        t.on_server(&xframe(1, b"Capability prepare failed for 'tls'"));
        assert_eq!(t.verdict(), Verdict::Continue);
        assert!(!t.close_is_failure());

        // A notice after a frame is still not an answer; half a frame is a failure.
        let mut t = Tracker::new(Protocol::X);
        t.on_client(&xframe(1, b""));
        t.on_server(&xframe(11, b"notice"));
        assert!(t.close_is_failure());
        let mut t = Tracker::new(Protocol::X);
        t.on_client(&xframe(2, b"tls=1")[..3]);
        assert!(t.close_is_failure());
    }
}
