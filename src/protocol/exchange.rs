//! Following a classic-protocol session after its handshake: the client's commands
//! and the server's responses, as bytes pass in both directions. Pure; it never
//! changes a byte. It answers what pooling, sharing and read/write splitting ask before
//! they touch a server connection: is the session at a safe point (no command in
//! flight, no partial packet either way), is a transaction open, did the session send
//! something that binds it to its server connection for good.
//!
//! Built on [`super::frame::Splitter`] (one per direction) and a
//! [`super::response::ResponseTracker`] per command.

use super::caps::{status, Caps};
use super::frame::{Packet, Splitter};
use super::response::{is_progress_report, Outcome, ProtocolError, ResponseTracker, Turn};

/// One session's command/response exchange, seen from the middle.
#[derive(Debug, Clone)]
pub struct Exchange {
    caps: Caps,
    client: Splitter,
    server: Splitter,
    current: Option<ResponseTracker>,
    /// Status flags of the last response that carried them.
    status: u16,
    commands: u64,
    /// A stream command (binlog dump, clone) was sent.
    streaming: bool,
    /// The server spoke while no command was in flight (an ERR before it closes:
    /// KILL, shutdown, wait_timeout).
    server_spoke_unasked: bool,
    /// The current response so far: its first and last messages' first packets and
    /// how many messages it had (sharing reads counters and row counts from them).
    response: ResponseShape,
}

/// The outline of the current (or last) response.
#[derive(Debug, Clone, Copy, Default)]
pub struct ResponseShape {
    pub first: Option<Packet>,
    pub last: Option<Packet>,
    pub messages: u64,
}

impl Exchange {
    /// Starts after the handshake of a hop that negotiated `caps`; `status` is the
    /// status of the handshake's final OK.
    pub fn new(caps: Caps, status: u16) -> Self {
        Exchange {
            caps,
            client: Splitter::new(),
            server: Splitter::new(),
            current: None,
            status,
            commands: 0,
            streaming: false,
            server_spoke_unasked: false,
            response: ResponseShape::default(),
        }
    }

    /// Bytes the client sent, in order.
    pub fn on_client(&mut self, data: &[u8]) -> Result<(), ProtocolError> {
        let mut result = Ok(());
        let (caps, current, commands, streaming, response) = (
            self.caps,
            &mut self.current,
            &mut self.commands,
            &mut self.streaming,
            &mut self.response,
        );
        self.client.feed(data, |p| {
            let before = *commands;
            result = client_packet(caps, current, commands, streaming, p);
            if *commands != before {
                *response = ResponseShape::default();
            }
            result.is_ok()
        });
        result
    }

    /// Bytes the server sent, in order.
    pub fn on_server(&mut self, data: &[u8]) -> Result<(), ProtocolError> {
        let mut result = Ok(());
        let (caps, current, status, unasked, response) = (
            self.caps,
            &mut self.current,
            &mut self.status,
            &mut self.server_spoke_unasked,
            &mut self.response,
        );
        self.server.feed(data, |p| {
            result = match current {
                // A MariaDB progress report is no part of the response's shape.
                Some(t)
                    if p.starts_message
                        && is_progress_report(caps, p)
                        && t.turn() == Turn::Server =>
                {
                    t.server_packet(p)
                }
                Some(t) if !matches!(t.turn(), Turn::Done(_)) => {
                    // Cheap per packet: a count; the heads are copied once each.
                    response.messages += p.starts_message as u64;
                    if response.first.is_none() {
                        response.first = Some(*p);
                    }
                    let r = t.server_packet(p);
                    if let Turn::Done(o) = t.turn() {
                        response.last = Some(*p);
                        if let Outcome::Ok { status: s } = o {
                            *status = s;
                        }
                    }
                    r
                }
                _ => {
                    *unasked = true;
                    Ok(())
                }
            };
            result.is_ok()
        });
        result
    }

    /// No command in flight and no partial packet in either direction: a server
    /// connection could be handed over here without cutting anything.
    pub fn at_safe_point(&self) -> bool {
        let idle = match &self.current {
            None => true,
            Some(t) => matches!(t.turn(), Turn::Done(_)),
        };
        idle && self.client.at_boundary()
            && self.server.at_boundary()
            && !self.client.mid_message()
            && !self.server.mid_message()
    }

    /// Whether a client packet is allowed now: at a safe point (a new command), or
    /// within an exchange where the client speaks (LOCAL INFILE, authentication).
    pub fn client_may_send(&self) -> bool {
        match &self.current {
            Some(t) if !matches!(t.turn(), Turn::Done(_)) => t.client_may_send(),
            _ => true,
        }
    }

    /// The server's last status said a transaction is open.
    pub fn in_transaction(&self) -> bool {
        self.status & status::IN_TRANS != 0
    }

    /// Status flags of the last response that carried them.
    pub fn status(&self) -> u16 {
        self.status
    }

    /// The outcome of the last complete response.
    pub fn last_outcome(&self) -> Option<Outcome> {
        match self.current.as_ref()?.turn() {
            Turn::Done(o) => Some(o),
            _ => None,
        }
    }

    /// The outline of the current or last response.
    pub fn response(&self) -> ResponseShape {
        self.response
    }

    /// The negotiated capabilities of the hop.
    pub fn caps(&self) -> Caps {
        self.caps
    }

    /// Commands the client started.
    pub fn commands(&self) -> u64 {
        self.commands
    }

    /// The session sent a command that never ends (binlog dump, clone).
    pub fn streaming(&self) -> bool {
        self.streaming
    }

    /// The server sent a packet while no command was in flight.
    pub fn server_spoke_unasked(&self) -> bool {
        self.server_spoke_unasked
    }
}

fn client_packet(
    caps: Caps,
    current: &mut Option<ResponseTracker>,
    commands: &mut u64,
    streaming: &mut bool,
    p: &Packet,
) -> Result<(), ProtocolError> {
    match current {
        Some(t) if !matches!(t.turn(), Turn::Done(_)) => t.client_packet(p),
        _ => {
            let t = ResponseTracker::start(p, caps)?;
            *commands += 1;
            *streaming |= t.is_stream();
            *current = Some(t);
            Ok(())
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::protocol::caps::flag;

    fn packet(seq: u8, payload: &[u8]) -> Vec<u8> {
        let n = payload.len() as u32;
        let mut v = vec![n as u8, (n >> 8) as u8, (n >> 16) as u8, seq];
        v.extend_from_slice(payload);
        v
    }

    /// A MariaDB progress report neither ends the response nor counts in its shape
    /// (sharing judges a response by its first and last messages).
    #[test]
    fn a_progress_report_is_no_part_of_the_response() {
        let caps = Caps(flag::PROTOCOL_41 | flag::DEPRECATE_EOF | flag::MARIADB_PROGRESS);
        let mut ex = Exchange::new(caps, status::AUTOCOMMIT);
        ex.on_client(&packet(0, b"\x03ALTER TABLE t FORCE"))
            .unwrap(); // ok: test code
        let progress = [0xFF, 0xFF, 0xFF, 1, 1, 2, 0x20, 0xA1, 0x07, 0];
        ex.on_server(&packet(1, &progress)).unwrap(); // ok: test code
        assert!(!ex.at_safe_point(), "a progress report ended the response");
        ex.on_server(&packet(2, &[0x00, 0, 0, 0x02, 0, 0, 0]))
            .unwrap(); // ok: test code
        assert!(ex.at_safe_point());
        assert!(!ex.server_spoke_unasked());
        let shape = ex.response();
        assert_eq!(shape.messages, 1);
        assert_eq!(
            shape.first.map(|p| p.head().first().copied()),
            Some(Some(0x00))
        );
        assert_eq!(ex.last_outcome(), Some(Outcome::Ok { status: 2 }));
    }
}
