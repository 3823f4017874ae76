//! Classic-protocol framing, pure and streaming: a [`Splitter`] is fed one direction's
//! bytes as they arrive (any split, any coalescing) and reports every packet once its
//! header and the first bytes of its payload are known, without buffering payloads.
//!
//! A packet is a 3-byte little-endian payload length, a 1-byte sequence id and the
//! payload. A payload of exactly [`MAX_PAYLOAD`] bytes means the *message* continues in
//! the next packet (a message that is an exact multiple ends with an empty packet);
//! only a message's first packet carries its type byte, and every packet uses up one
//! sequence id. The splitter says which packets start a message, so the state
//! machines above it ([`super::response`]) look only at message heads and a 1 GiB row
//! streams through in chunks.
//!
//! Hand-written rather than `mysql_common`'s `PacketCodec`: that codec reassembles
//! whole messages (up to `max_allowed_packet`) and owns its sequence counter, which is
//! right for a client and wrong for a forwarder that must pass chunks on as they come.

/// Largest payload of one packet; a packet this long is followed by a continuation.
pub const MAX_PAYLOAD: usize = 0xFF_FFFF;

/// How many payload bytes of a message's first packet are kept for decisions: enough
/// for an OK packet's status flags (type, two 9-byte length-encoded integers, status)
/// and for a prepare-OK.
pub const HEAD_BYTES: usize = 32;

/// One packet as seen by the splitter.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Packet {
    /// Sequence id from the header.
    pub seq: u8,
    /// Payload length of this packet (≤ [`MAX_PAYLOAD`]).
    pub len: usize,
    /// True for the first packet of a message, false for continuations.
    pub starts_message: bool,
    /// The first `min(len, HEAD_BYTES)` payload bytes (only for a message's first packet).
    head: [u8; HEAD_BYTES],
    head_len: usize,
}

impl Packet {
    /// The payload bytes kept for decisions (empty for continuation packets).
    pub fn head(&self) -> &[u8] {
        &self.head[..self.head_len]
    }

    /// The first payload byte (the message type for most messages), if any.
    pub fn first_byte(&self) -> Option<u8> {
        self.head().first().copied()
    }

    /// True when the message goes on in a following packet.
    pub fn continues(&self) -> bool {
        self.len == MAX_PAYLOAD
    }

    /// Builds a packet view from a complete payload (tests and fabricated packets).
    pub fn from_payload(seq: u8, payload: &[u8], starts_message: bool) -> Packet {
        let mut head = [0u8; HEAD_BYTES];
        let head_len = if starts_message {
            let n = payload.len().min(HEAD_BYTES);
            head[..n].copy_from_slice(&payload[..n]);
            n
        } else {
            0
        };
        Packet {
            seq,
            len: payload.len(),
            starts_message,
            head,
            head_len,
        }
    }
}

/// Streaming packet splitter for one direction of a connection.
#[derive(Debug, Clone)]
pub struct Splitter {
    hdr: [u8; 4],
    hdr_len: usize,
    /// Payload bytes of the current packet still to come.
    remaining: usize,
    current: Packet,
    /// The current packet was already reported.
    reported: bool,
    /// The previous packet was full, so the next one continues its message.
    in_message: bool,
}

impl Default for Splitter {
    fn default() -> Self {
        Splitter {
            hdr: [0; 4],
            hdr_len: 0,
            remaining: 0,
            current: Packet::from_payload(0, &[], true),
            reported: true,
            in_message: false,
        }
    }
}

impl Splitter {
    pub fn new() -> Self {
        Self::default()
    }

    /// True between packets (no partial header or payload pending).
    pub fn at_boundary(&self) -> bool {
        self.hdr_len == 0 && self.remaining == 0 && self.reported
    }

    /// True when the last complete packet was full, i.e. its message is not finished.
    pub fn mid_message(&self) -> bool {
        self.in_message
    }

    /// Feeds bytes in arrival order. Calls `f` once per packet, as soon as its header
    /// and its head bytes (or its whole payload, if shorter) have arrived. Returns the
    /// number of bytes consumed: all of `data`, unless `f` returned `false`, in which
    /// case feeding stops after that packet (as much of it as `data` holds), so the
    /// caller may switch framing, e.g. to TLS, and hand the rest elsewhere.
    pub fn feed(&mut self, data: &[u8], mut f: impl FnMut(&Packet) -> bool) -> usize {
        let mut pos = 0;
        while pos < data.len() {
            if self.hdr_len < 4 {
                let take = (4 - self.hdr_len).min(data.len() - pos);
                self.hdr[self.hdr_len..self.hdr_len + take].copy_from_slice(&data[pos..pos + take]);
                self.hdr_len += take;
                pos += take;
                if self.hdr_len < 4 {
                    break;
                }
                let len = le24(&self.hdr);
                self.current = Packet {
                    seq: self.hdr[3],
                    len,
                    starts_message: !self.in_message,
                    head: [0; HEAD_BYTES],
                    head_len: 0,
                };
                self.remaining = len;
                self.reported = false;
            }
            let want = if self.current.starts_message {
                self.current.len.min(HEAD_BYTES)
            } else {
                0
            };
            let have = self.current.head_len;
            let take_head = (want - have).min(data.len() - pos);
            self.current.head[have..have + take_head].copy_from_slice(&data[pos..pos + take_head]);
            self.current.head_len += take_head;
            // Skip payload bytes beyond the head without looking at them.
            let take = self.remaining.min(data.len() - pos);
            let skip = take.max(take_head);
            self.remaining -= skip;
            pos += skip;
            if self.current.head_len < want {
                break;
            }
            let mut go_on = true;
            if !self.reported {
                self.reported = true;
                go_on = f(&self.current);
            }
            if self.remaining == 0 {
                self.hdr_len = 0;
                self.in_message = self.current.continues();
            }
            if !go_on {
                break;
            }
        }
        pos
    }
}

/// The 3-byte little-endian length at the start of `b`: a packet header's payload
/// length, or either length of a compressed frame's header. `b` holds at least 3 bytes.
pub fn le24(b: &[u8]) -> usize {
    u32::from_le_bytes([b[0], b[1], b[2], 0]) as usize
}

/// Writes a packet header for a payload of `len` bytes (`len` ≤ [`MAX_PAYLOAD`]).
pub fn header(len: usize, seq: u8) -> [u8; 4] {
    debug_assert!(len <= MAX_PAYLOAD);
    let l = (len as u32).to_le_bytes();
    [l[0], l[1], l[2], seq]
}

/// Reads a length-encoded integer at the start of `b`: `(value, bytes used)`, or
/// `None` when `b` is too short or starts with a byte that is not an integer prefix
/// (`0xFB` NULL, `0xFF`).
pub fn lenenc_int(b: &[u8]) -> Option<(u64, usize)> {
    let first = *b.first()?;
    let n = match first {
        0..=0xFA => return Some((u64::from(first), 1)),
        0xFC => 2,
        0xFD => 3,
        0xFE => 8,
        _ => return None,
    };
    let bytes = b.get(1..1 + n)?;
    let mut v = [0u8; 8];
    v[..n].copy_from_slice(bytes);
    Some((u64::from_le_bytes(v), 1 + n))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn packet(seq: u8, payload: &[u8]) -> Vec<u8> {
        let mut v = header(payload.len(), seq).to_vec();
        v.extend_from_slice(payload);
        v
    }

    fn collect(s: &mut Splitter, data: &[u8]) -> Vec<Packet> {
        let mut out = Vec::new();
        let n = s.feed(data, |p| {
            out.push(*p);
            true
        });
        assert_eq!(n, data.len());
        out
    }

    #[test]
    fn reports_each_packet_with_its_head_whatever_the_split() {
        let mut stream = packet(1, &[0x00, 0, 0, 2, 0, 0, 0]);
        stream.extend(packet(2, &[0xFF; 40]));
        stream.extend(packet(3, &[]));
        for split in 0..=stream.len() {
            let mut s = Splitter::new();
            let mut got = collect(&mut s, &stream[..split]);
            got.extend(collect(&mut s, &stream[split..]));
            assert_eq!(got.len(), 3, "split at {split}");
            assert_eq!(got[0].head(), &[0x00, 0, 0, 2, 0, 0, 0]);
            assert_eq!(got[1].len, 40);
            assert_eq!(got[1].head(), &[0xFF; HEAD_BYTES]);
            assert_eq!((got[2].seq, got[2].len), (3, 0));
            assert!(s.at_boundary());
        }
    }

    #[test]
    fn byte_by_byte_is_the_same_as_all_at_once() {
        let mut stream = packet(0, b"\x03SELECT 1");
        stream.extend(packet(1, &[7; 100]));
        let mut a = Splitter::new();
        let all = collect(&mut a, &stream);
        let mut b = Splitter::new();
        let mut one = Vec::new();
        for byte in &stream {
            one.extend(collect(&mut b, std::slice::from_ref(byte)));
        }
        assert_eq!(all, one);
    }

    #[test]
    fn a_full_packet_is_continued_by_the_next() {
        let big = vec![0xFEu8; MAX_PAYLOAD];
        let mut stream = packet(5, &big);
        stream.extend(packet(6, b"tail"));
        stream.extend(packet(7, &[0x00, 0, 0, 2, 0]));
        let mut s = Splitter::new();
        let got = collect(&mut s, &stream);
        assert_eq!(got.len(), 3);
        assert!(got[0].starts_message && got[0].continues());
        assert!(!got[1].starts_message);
        assert!(got[1].head().is_empty(), "continuations carry no head");
        assert!(got[2].starts_message);
        assert_eq!(got[2].first_byte(), Some(0x00));
    }

    #[test]
    fn an_exact_multiple_ends_with_an_empty_packet() {
        let mut stream = packet(0, &vec![1u8; MAX_PAYLOAD]);
        stream.extend(packet(1, &[]));
        stream.extend(packet(2, &[0x0E]));
        let mut s = Splitter::new();
        let got = collect(&mut s, &stream);
        assert_eq!(
            got.iter().map(|p| p.starts_message).collect::<Vec<_>>(),
            [true, false, true]
        );
        assert!(!s.mid_message());
    }

    #[test]
    fn feeding_stops_after_the_packet_the_callback_refuses() {
        let mut stream = packet(1, &[0x20; 36]);
        stream.extend_from_slice(b"\x16\x03\x01TLS bytes");
        let mut s = Splitter::new();
        let mut seen = 0;
        let used = s.feed(&stream, |_| {
            seen += 1;
            false
        });
        assert_eq!(seen, 1);
        assert_eq!(
            used, 40,
            "the TLS bytes after the packet are left to the caller"
        );
        assert!(s.at_boundary());
    }

    #[test]
    fn lenenc_integers() {
        assert_eq!(lenenc_int(&[0xFA]), Some((250, 1)));
        assert_eq!(lenenc_int(&[0xFC, 0x01, 0x02]), Some((0x0201, 3)));
        assert_eq!(lenenc_int(&[0xFD, 1, 2, 3]), Some((0x030201, 4)));
        assert_eq!(lenenc_int(&[0xFE, 1, 0, 0, 0, 0, 0, 0, 0]), Some((1, 9)));
        assert_eq!(lenenc_int(&[0xFE, 1]), None);
        assert_eq!(lenenc_int(&[0xFB]), None);
        assert_eq!(lenenc_int(&[]), None);
    }
}
