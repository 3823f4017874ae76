//! Error frames sent to a client before any capabilities are negotiated.
//!
//! Classic protocol: a pre-4.1 error packet (sequence id 0, `0xFF`, 2-byte LE code,
//! message; no `#SQLSTATE`, so clients print `HY000`). X protocol: a `Mysqlx.Error`
//! frame (severity ERROR, code, SQL state, message).

use crate::config::Protocol;

pub const ER_CON_COUNT_ERROR: u16 = 1040;
pub const ER_HOST_IS_BLOCKED: u16 = 1129;
pub const ER_HANDSHAKE_ERROR: u16 = 1043;
pub const CR_CONN_HOST_ERROR: u16 = 2003;

pub const MSG_TOO_MANY: &str = "Too many connections to MySQL Router";
pub const MSG_NO_DESTINATION: &str = "Can't connect to remote MySQL server";

/// A pre-4.1 classic error packet with the given sequence id.
pub fn classic_error(seq: u8, code: u16, msg: &str) -> Vec<u8> {
    // A packet payload is at most 2^24-1 bytes; our messages are short, but cut anyway.
    let msg = &msg.as_bytes()[..msg.len().min(0xff_ff00)];
    let len = 3 + msg.len();
    let mut p = Vec::with_capacity(4 + len);
    p.extend_from_slice(&(len as u32).to_le_bytes()[..3]);
    p.push(seq);
    p.push(0xff);
    p.extend_from_slice(&code.to_le_bytes());
    p.extend_from_slice(msg);
    p
}

/// A 4.1 classic error packet (`0xFF`, code, `#` + SQL state, message), for clients
/// that have announced `CLIENT_PROTOCOL_41`.
pub fn classic_error41(seq: u8, code: u16, sql_state: &str, msg: &str) -> Vec<u8> {
    let mut p = classic_error(seq, code, "");
    p.push(b'#');
    p.extend_from_slice(&sql_state.as_bytes()[..sql_state.len().min(5)]);
    p.extend_from_slice(&msg.as_bytes()[..msg.len().min(0xff_ff00)]);
    let len = (p.len() - 4) as u32;
    p[..3].copy_from_slice(&len.to_le_bytes()[..3]);
    p
}

fn varint(mut v: u64, out: &mut Vec<u8>) {
    while v >= 0x80 {
        out.push((v as u8) | 0x80);
        v >>= 7;
    }
    out.push(v as u8);
}

fn field_bytes(tag: u8, b: &[u8], out: &mut Vec<u8>) {
    out.push(tag);
    varint(b.len() as u64, out);
    out.extend_from_slice(b);
}

/// Server message type of `Mysqlx.Error`.
const X_SERVER_ERROR: u8 = 1;

/// A `Mysqlx.Error` frame: 4-byte LE length (type byte + payload), type, protobuf.
pub fn x_error(code: u16, sql_state: &str, msg: &str) -> Vec<u8> {
    let mut pb = Vec::with_capacity(16 + msg.len());
    pb.extend_from_slice(&[0x08, 0x00]); // severity = ERROR
    pb.push(0x10); // code
    varint(code as u64, &mut pb);
    field_bytes(0x1a, msg.as_bytes(), &mut pb); // msg = 3
    field_bytes(0x22, sql_state.as_bytes(), &mut pb); // sql_state = 4
    let mut f = Vec::with_capacity(5 + pb.len());
    f.extend_from_slice(&((pb.len() + 1) as u32).to_le_bytes());
    f.push(X_SERVER_ERROR);
    f.extend_from_slice(&pb);
    f
}

/// The frame for an error raised at accept time, in the route's protocol.
pub fn accept_error(protocol: Protocol, code: u16, sql_state: &str, msg: &str) -> Vec<u8> {
    match protocol {
        Protocol::Classic => classic_error(0, code, msg),
        Protocol::X => x_error(code, sql_state, msg),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn classic_bytes_match_oracle() {
        let p = classic_error(0, CR_CONN_HOST_ERROR, MSG_NO_DESTINATION);
        assert_eq!(&p[..7], &[0x27, 0, 0, 0, 0xff, 0xd3, 0x07]);
        assert_eq!(p.len(), 43);
        let p = classic_error(0, ER_CON_COUNT_ERROR, MSG_TOO_MANY);
        assert_eq!(&p[..7], &[0x27, 0, 0, 0, 0xff, 0x10, 0x04]);
    }

    #[test]
    fn x_frame_layout() {
        let f = x_error(1040, "08004", "hi");
        let len = u32::from_le_bytes([f[0], f[1], f[2], f[3]]) as usize;
        assert_eq!(len, f.len() - 4);
        assert_eq!(f[4], 1);
        assert_eq!(
            &f[5..],
            &[
                0x08, 0, 0x10, 0x90, 0x08, 0x1a, 2, b'h', b'i', 0x22, 5, b'0', b'8', b'0', b'0',
                b'4'
            ]
        );
    }
}
