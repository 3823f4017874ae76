//! OK packets as sharing reads them: the counters a client may ask about afterwards
//! (affected rows, last insert id, warnings) and the session-state information a
//! server with `CLIENT_SESSION_TRACK` appends (system variables, schema, state change,
//! GTIDs, transaction characteristics and state). Pure; never panics on any input
//! (unit tests and a proptest below): every length is checked and a malformed packet
//! is `None`.

use super::caps::{flag, status};
use super::frame::lenenc_int;

/// The fixed fields of an OK packet (or of an EOF-as-OK / classic EOF, whose
/// counters are zero).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct OkFields {
    pub affected_rows: u64,
    pub last_insert_id: u64,
    pub status: u16,
    pub warnings: u16,
}

/// Reads an OK packet's (`0x00`, or `0xFE` ending a result set with DEPRECATE_EOF)
/// counters, or a classic EOF's (`0xFE`, 5-byte payload) warnings and status.
/// `payload` may be only the packet's head (the first 23 bytes suffice).
pub fn ok_fields(payload: &[u8]) -> Option<OkFields> {
    match payload.first()? {
        0xFE if payload.len() < 7 => Some(OkFields {
            warnings: u16::from_le_bytes([*payload.get(1)?, *payload.get(2)?]),
            status: u16::from_le_bytes([*payload.get(3)?, *payload.get(4)?]),
            ..OkFields::default()
        }),
        0x00 | 0xFE => {
            let (affected_rows, a) = lenenc_int(payload.get(1..)?)?;
            let (last_insert_id, b) = lenenc_int(payload.get(1 + a..)?)?;
            let i = 1 + a + b;
            let s = payload.get(i..i + 4)?;
            Some(OkFields {
                affected_rows,
                last_insert_id,
                status: u16::from_le_bytes([s[0], s[1]]),
                warnings: u16::from_le_bytes([s[2], s[3]]),
            })
        }
        _ => None,
    }
}

/// One entry of the session-state information.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Change {
    /// SESSION_TRACK_SYSTEM_VARIABLES (0): a variable and its new value.
    SystemVariable { name: Vec<u8>, value: Vec<u8> },
    /// SESSION_TRACK_SCHEMA (1): the new default schema.
    Schema(Vec<u8>),
    /// SESSION_TRACK_STATE_CHANGE (2): "1" when session state changed.
    StateChange(bool),
    /// SESSION_TRACK_GTIDS (3): the encoding byte's payload (MySQL).
    Gtids(Vec<u8>),
    /// SESSION_TRACK_TRANSACTION_CHARACTERISTICS (4): SQL that recreates them.
    TransactionCharacteristics(Vec<u8>),
    /// SESSION_TRACK_TRANSACTION_STATE (5): the 8-character state.
    TransactionState(Vec<u8>),
    /// Any other type, kept as its raw data.
    Other(u8, Vec<u8>),
}

/// A length-encoded string at the start of `b`: the string and the bytes used.
fn lenenc_str(b: &[u8]) -> Option<(&[u8], usize)> {
    let (n, used) = lenenc_int(b)?;
    let n = usize::try_from(n).ok()?;
    let end = used.checked_add(n)?;
    Some((b.get(used..end)?, end))
}

/// The session-state information of an OK packet's full `payload` negotiated with
/// `caps`: `Some(vec![])` when the packet carries none, `None` when it is malformed.
pub fn ok_session_state(payload: &[u8], caps: u64) -> Option<Vec<Change>> {
    let f = ok_fields(payload)?;
    if payload.first() == Some(&0xFE) && payload.len() < 7 {
        return Some(Vec::new());
    }
    if caps & flag::SESSION_TRACK == 0 {
        return Some(Vec::new());
    }
    let (_, a) = lenenc_int(payload.get(1..)?)?;
    let (_, b) = lenenc_int(payload.get(1 + a..)?)?;
    let mut i = 1 + a + b + 4;
    if i >= payload.len() {
        return Some(Vec::new());
    }
    let (_, used) = lenenc_str(payload.get(i..)?)?; // info
    i += used;
    if f.status & status::SESSION_STATE_CHANGED == 0 {
        return Some(Vec::new());
    }
    let (state, _) = lenenc_str(payload.get(i..)?)?;
    decode(state)
}

/// Decodes session-state information (the bytes inside its length prefix).
pub fn decode(mut b: &[u8]) -> Option<Vec<Change>> {
    let mut out = Vec::new();
    while let Some((&kind, rest)) = b.split_first() {
        let (data, used) = lenenc_str(rest)?;
        b = &rest[used..];
        out.push(match kind {
            0 => {
                let (name, n) = lenenc_str(data)?;
                let (value, _) = lenenc_str(&data[n..])?;
                Change::SystemVariable {
                    name: name.to_vec(),
                    value: value.to_vec(),
                }
            }
            1 => Change::Schema(lenenc_str(data)?.0.to_vec()),
            2 => Change::StateChange(lenenc_str(data)?.0 == b"1"),
            3 => Change::Gtids(data.get(1..)?.to_vec()),
            4 => Change::TransactionCharacteristics(lenenc_str(data)?.0.to_vec()),
            5 => Change::TransactionState(lenenc_str(data)?.0.to_vec()),
            k => Change::Other(k, data.to_vec()),
        });
    }
    Some(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn lenenc(s: &[u8]) -> Vec<u8> {
        let mut v = vec![s.len() as u8];
        v.extend_from_slice(s);
        v
    }

    fn entry(kind: u8, data: &[u8]) -> Vec<u8> {
        let mut v = vec![kind];
        v.extend(lenenc(data));
        v
    }

    #[test]
    fn decodes_every_tracker() {
        let mut sv = lenenc(b"time_zone");
        sv.extend(lenenc(b"+01:00"));
        let mut state = entry(0, &sv);
        state.extend(entry(1, &lenenc(b"db1")));
        state.extend(entry(2, &lenenc(b"1")));
        state.extend(entry(3, &[0, 3, b'a', b':', b'1']));
        state.extend(entry(4, &lenenc(b"START TRANSACTION;")));
        state.extend(entry(5, &lenenc(b"T_______")));
        state.extend(entry(9, b"xy"));
        assert_eq!(
            decode(&state).unwrap(), // ok: test code
            vec![
                Change::SystemVariable {
                    name: b"time_zone".to_vec(),
                    value: b"+01:00".to_vec()
                },
                Change::Schema(b"db1".to_vec()),
                Change::StateChange(true),
                Change::Gtids(vec![3, b'a', b':', b'1']),
                Change::TransactionCharacteristics(b"START TRANSACTION;".to_vec()),
                Change::TransactionState(b"T_______".to_vec()),
                Change::Other(9, b"xy".to_vec()),
            ]
        );
        // Truncated: a length beyond the end.
        assert_eq!(decode(&state[..state.len() - 1]), None);
    }

    #[test]
    fn reads_ok_packets_with_and_without_state() {
        // OK: 3 affected rows, insert id 300 (0xFC-encoded), SESSION_STATE_CHANGED|AUTOCOMMIT, 1 warning.
        let mut ok = vec![0x00, 3, 0xFC, 0x2C, 0x01];
        ok.extend_from_slice(&(status::SESSION_STATE_CHANGED | status::AUTOCOMMIT).to_le_bytes());
        ok.extend_from_slice(&1u16.to_le_bytes());
        ok.extend(lenenc(b""));
        ok.extend(lenenc(&entry(1, &lenenc(b"s"))));
        let f = ok_fields(&ok).unwrap(); // ok: test code
        assert_eq!((f.affected_rows, f.last_insert_id, f.warnings), (3, 300, 1));
        assert_eq!(
            ok_session_state(&ok, flag::SESSION_TRACK | flag::PROTOCOL_41).unwrap(), // ok: test code
            vec![Change::Schema(b"s".to_vec())]
        );
        assert_eq!(ok_session_state(&ok, flag::PROTOCOL_41).unwrap(), vec![]); // ok: test code

        // A classic EOF: warnings then status.
        let eof = [0xFE, 2, 0, 0x02, 0];
        let f = ok_fields(&eof).unwrap(); // ok: test code
        assert_eq!((f.warnings, f.status), (2, status::AUTOCOMMIT));
        assert_eq!(ok_fields(&[0xFF, 1, 2]), None);
        assert_eq!(ok_fields(&[0x00, 0xFC]), None);
    }

    proptest! {
        #[test]
        fn never_panics(bytes in proptest::collection::vec(any::<u8>(), 0..200), caps in any::<u64>()) {
            let _ = decode(&bytes);
            let _ = ok_fields(&bytes);
            let _ = ok_session_state(&bytes, caps);
            let mut ok = vec![0x00, 0, 0];
            ok.extend_from_slice(&status::SESSION_STATE_CHANGED.to_le_bytes());
            ok.extend_from_slice(&[0, 0]);
            ok.extend_from_slice(&bytes);
            let _ = ok_session_state(&ok, flag::SESSION_TRACK);
        }
    }
}
