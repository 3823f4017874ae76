//! Where a classic-protocol response ends, and what its last packet said: the state
//! machine a protocol-aware forwarder runs for every client command. Pure: fed the
//! [`Packet`]s the [`super::frame::Splitter`] reports for each direction, it answers
//! whose turn it is ([`Turn`]) and, once the response is complete, its [`Outcome`]
//! (status flags, hence whether a transaction is open).
//!
//! Pooling and sharing may unlink a server connection only when `turn()` is `Done` and
//! the status has no `IN_TRANS`; a cut anywhere else would hand a client half of
//! another's result. The grammar (which packets follow which) is the per-command table
//! of `../shared/notes/protocol-layer.md` §(a):
//!
//! | command | response |
//! |---|---|
//! | QUERY, STMT_EXECUTE, PROCESS_INFO, MariaDB STMT_BULK_EXECUTE | OK, ERR, LOCAL INFILE (query only), or column count, column defs [EOF], rows, terminator; `MORE_RESULTS_EXISTS` loops |
//! | STMT_PREPARE | ERR, or prepare-OK, param defs [EOF], column defs [EOF] |
//! | STMT_FETCH | rows, terminator; or ERR |
//! | FIELD_LIST | column defs, terminator; or ERR |
//! | CHANGE_USER | an auth exchange ending in OK or ERR |
//! | STATISTICS | one string packet |
//! | QUIT, STMT_SEND_LONG_DATA, STMT_CLOSE | none |
//! | BINLOG_DUMP(_GTID), CLONE | a stream: never done (the session must be pinned) |
//! | anything else | one OK, EOF or ERR |
//!
//! Sequence ids are checked: the command is 0 (each packet of a message uses one id),
//! every later packet in either direction takes the next id, wrapping 255 → 0.
//!
//! Ours rather than `mysql_common`'s: that crate decodes whole messages for a client;
//! a forwarder needs only message heads and must never hold a result in memory.

use super::caps::{flag, status, Caps};
use super::frame::{lenenc_int, Packet, MAX_PAYLOAD};

/// Command bytes (first payload byte of a client's command packet).
pub mod cmd {
    pub const QUIT: u8 = 0x01;
    pub const INIT_DB: u8 = 0x02;
    pub const QUERY: u8 = 0x03;
    pub const FIELD_LIST: u8 = 0x04;
    pub const STATISTICS: u8 = 0x09;
    pub const PROCESS_INFO: u8 = 0x0a;
    pub const PROCESS_KILL: u8 = 0x0c;
    pub const PING: u8 = 0x0e;
    pub const CHANGE_USER: u8 = 0x11;
    pub const BINLOG_DUMP: u8 = 0x12;
    pub const STMT_PREPARE: u8 = 0x16;
    pub const STMT_EXECUTE: u8 = 0x17;
    pub const STMT_SEND_LONG_DATA: u8 = 0x18;
    pub const STMT_CLOSE: u8 = 0x19;
    pub const STMT_RESET: u8 = 0x1a;
    pub const SET_OPTION: u8 = 0x1b;
    pub const STMT_FETCH: u8 = 0x1c;
    pub const BINLOG_DUMP_GTID: u8 = 0x1e;
    pub const RESET_CONNECTION: u8 = 0x1f;
    pub const CLONE: u8 = 0x20;
    /// MariaDB's bulk execute (array binding).
    pub const STMT_BULK_EXECUTE: u8 = 0xfa;
}

/// Who sends the next packet of this command's exchange.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Turn {
    /// The client (the rest of its command, LOCAL INFILE data, an auth answer).
    Client,
    /// The server (more of the response).
    Server,
    /// The exchange is over; the next client packet is a new command.
    Done(Outcome),
}

/// What a complete response said.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    /// Ended by an OK, EOF or result-set terminator with these status flags.
    Ok { status: u16 },
    /// Ended by an ERR packet (status flags unknown: keep the previous ones).
    Err,
    /// A statement was prepared.
    Prepared {
        statement_id: u32,
        columns: u16,
        params: u16,
    },
    /// No status to report (COM_STATISTICS, commands without a response).
    NoStatus,
}

impl Outcome {
    /// The status flags, when the response carried them.
    pub fn status(self) -> Option<u16> {
        match self {
            Outcome::Ok { status } => Some(status),
            _ => None,
        }
    }

    /// True when the server said a transaction is open.
    pub fn in_transaction(self) -> Option<bool> {
        self.status().map(|s| s & status::IN_TRANS != 0)
    }
}

/// A packet the grammar does not allow at this point.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ProtocolError {
    #[error("packet out of order: sequence id {got}, expected {expected}")]
    Sequence { expected: u8, got: u8 },
    #[error("unexpected packet from the {0} while the {1} was to send")]
    Turn(&'static str, &'static str),
    #[error("malformed {0} packet")]
    Malformed(&'static str),
    #[error("packet after the end of the response")]
    AfterEnd,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum State {
    /// First packet of a (next) result of a query-like command.
    First,
    Columns {
        left: u64,
    },
    ColumnsEof,
    Rows,
    /// LOCAL INFILE: the client sends file packets, ending with an empty one.
    InfileData,
    /// LOCAL INFILE done: the server answers OK or ERR (which may announce more results).
    AfterInfile,
    PrepareOk,
    PrepareParams {
        left: u16,
        columns: u16,
    },
    PrepareParamsEof {
        columns: u16,
    },
    PrepareColumns {
        left: u16,
    },
    PrepareColumnsEof,
    /// COM_STMT_FETCH: rows then a terminator, or ERR.
    Fetch,
    FieldList,
    /// Authentication (COM_CHANGE_USER): the server's turn ...
    AuthServer,
    /// ... the client's, after an auth switch ...
    AuthClient,
    /// ... or either, after more-data (caching_sha2's fast-auth success is followed by
    /// the OK; its full-auth request by the client's password).
    AuthEither,
    Single,
    Statistics,
    Stream,
    Done(Outcome),
}

/// Follows one command's exchange. Create it with the command's first packet.
#[derive(Debug, Clone)]
pub struct ResponseTracker {
    caps: Caps,
    state: State,
    /// Rows are in the binary protocol (COM_STMT_EXECUTE).
    binary: bool,
    /// COM_QUERY: a result may be a LOCAL INFILE request.
    infile_allowed: bool,
    /// Sequence id the next packet must carry.
    seq: u8,
    /// A message from the client / the server is continued in the next packet.
    client_open: bool,
    server_open: bool,
    /// The prepare-OK of a COM_STMT_PREPARE, reported when its definitions are through.
    prepared: Option<Outcome>,
}

impl ResponseTracker {
    /// Starts tracking the command whose first packet is `command` on a hop that
    /// negotiated `caps`.
    pub fn start(command: &Packet, caps: Caps) -> Result<Self, ProtocolError> {
        if command.seq != 0 {
            return Err(ProtocolError::Sequence {
                expected: 0,
                got: command.seq,
            });
        }
        let c = command
            .first_byte()
            .ok_or(ProtocolError::Malformed("command"))?;
        let state = match c {
            cmd::QUERY | cmd::PROCESS_INFO | cmd::STMT_EXECUTE | cmd::STMT_BULK_EXECUTE => {
                State::First
            }
            cmd::STMT_PREPARE => State::PrepareOk,
            cmd::STMT_FETCH => State::Fetch,
            cmd::FIELD_LIST => State::FieldList,
            cmd::CHANGE_USER => State::AuthServer,
            cmd::STATISTICS => State::Statistics,
            cmd::QUIT | cmd::STMT_SEND_LONG_DATA | cmd::STMT_CLOSE => {
                State::Done(Outcome::NoStatus)
            }
            cmd::BINLOG_DUMP | cmd::BINLOG_DUMP_GTID | cmd::CLONE => State::Stream,
            _ => State::Single,
        };
        Ok(ResponseTracker {
            caps,
            state,
            binary: matches!(c, cmd::STMT_EXECUTE | cmd::STMT_BULK_EXECUTE),
            infile_allowed: c == cmd::QUERY,
            seq: 1,
            client_open: command.continues(),
            server_open: false,
            prepared: None,
        })
    }

    /// Whose packet comes next, or the outcome once the exchange is over.
    pub fn turn(&self) -> Turn {
        if self.client_open {
            return Turn::Client;
        }
        if self.server_open {
            return Turn::Server;
        }
        match self.state {
            State::Done(o) => Turn::Done(o),
            State::InfileData | State::AuthClient => Turn::Client,
            _ => Turn::Server,
        }
    }

    /// Whether a client packet is allowed now (its turn, or either side's).
    pub fn client_may_send(&self) -> bool {
        self.client_open
            || matches!(
                self.state,
                State::InfileData | State::AuthClient | State::AuthEither
            )
    }

    /// The command streams without end (binlog dump, clone): a session that sent it
    /// belongs to its server connection for good.
    pub fn is_stream(&self) -> bool {
        self.state == State::Stream
    }

    fn check_seq(&mut self, p: &Packet) -> Result<(), ProtocolError> {
        if p.seq != self.seq {
            return Err(ProtocolError::Sequence {
                expected: self.seq,
                got: p.seq,
            });
        }
        self.seq = self.seq.wrapping_add(1);
        Ok(())
    }

    /// A packet from the client during this exchange.
    pub fn client_packet(&mut self, p: &Packet) -> Result<(), ProtocolError> {
        if !self.client_may_send() {
            return Err(match self.turn() {
                Turn::Done(_) => ProtocolError::AfterEnd,
                _ => ProtocolError::Turn("client", "server"),
            });
        }
        self.check_seq(p)?;
        let was_open = self.client_open;
        self.client_open = p.continues();
        // The file ends with an empty *message* (an empty packet after a full one only
        // ends that chunk).
        if !was_open && self.state == State::InfileData && p.len == 0 {
            self.state = State::AfterInfile;
        }
        if !self.client_open && matches!(self.state, State::AuthClient | State::AuthEither) {
            self.state = State::AuthServer;
        }
        Ok(())
    }

    /// A packet from the server during this exchange.
    pub fn server_packet(&mut self, p: &Packet) -> Result<(), ProtocolError> {
        match self.turn() {
            Turn::Server => {}
            Turn::Client if self.state == State::AuthEither => {}
            Turn::Client => return Err(ProtocolError::Turn("server", "client")),
            Turn::Done(_) => return Err(ProtocolError::AfterEnd),
        }
        self.check_seq(p)?;
        let was_open = self.server_open;
        self.server_open = p.continues();
        if was_open {
            return Ok(()); // the rest of a message whose head was already judged
        }
        if is_progress_report(self.caps, p) {
            return Ok(()); // the response proper is still to come
        }
        self.state = self.next(p)?;
        Ok(())
    }

    /// The state after a server message whose first packet is `p`.
    fn next(&mut self, p: &Packet) -> Result<State, ProtocolError> {
        let head = p.head();
        let first = head.first().copied();
        let deprecate_eof = self.caps.deprecate_eof();
        // A short packet starting 0xFE ends rows; a row can start 0xFE only as the
        // 8-byte length of a field of 16 MiB or more, so its first packet is full.
        let terminator = first == Some(0xFE) && p.len < MAX_PAYLOAD;
        Ok(match self.state {
            State::First => match first {
                Some(0xFF) => State::Done(Outcome::Err),
                Some(0x00) => self.after_status(ok_status(head)?),
                Some(0xFB) if self.infile_allowed => State::InfileData,
                _ => {
                    let bad = ProtocolError::Malformed("column count");
                    let (n, used) = lenenc_int(head).ok_or(bad.clone())?;
                    if n == 0 {
                        return Err(bad);
                    }
                    // Optional metadata (MySQL) or a metadata cache hit (MariaDB): a
                    // server that sends no column definitions sends no EOF after them.
                    let metadata =
                        !self.caps.metadata_flag_byte() || *head.get(used).ok_or(bad)? != 0;
                    if metadata {
                        State::Columns { left: n }
                    } else {
                        State::Rows
                    }
                }
            },
            State::Columns { left } if left > 1 => State::Columns { left: left - 1 },
            State::Columns { .. } if deprecate_eof => State::Rows,
            State::Columns { .. } => State::ColumnsEof,
            State::ColumnsEof => {
                let s = eof_status(head)?;
                // An execute that opened a cursor sends no rows now: COM_STMT_FETCH does.
                if self.binary && s & status::CURSOR_EXISTS != 0 {
                    State::Done(Outcome::Ok { status: s })
                } else {
                    State::Rows
                }
            }
            State::Rows => match first {
                Some(0xFF) => State::Done(Outcome::Err),
                _ if terminator => self.after_status(self.terminator_status(head)?),
                _ => State::Rows,
            },
            State::Fetch => match first {
                Some(0xFF) => State::Done(Outcome::Err),
                _ if terminator => State::Done(Outcome::Ok {
                    status: self.terminator_status(head)?,
                }),
                _ => State::Fetch,
            },
            State::AfterInfile => match first {
                Some(0xFF) => State::Done(Outcome::Err),
                Some(0x00) => self.after_status(ok_status(head)?),
                _ => return Err(ProtocolError::Malformed("LOCAL INFILE result")),
            },
            State::PrepareOk => match first {
                Some(0xFF) => State::Done(Outcome::Err),
                Some(0x00) if head.len() >= 9 => {
                    let columns = u16::from_le_bytes([head[5], head[6]]);
                    let params = u16::from_le_bytes([head[7], head[8]]);
                    self.prepared = Some(Outcome::Prepared {
                        statement_id: u32::from_le_bytes([head[1], head[2], head[3], head[4]]),
                        columns,
                        params,
                    });
                    if params > 0 {
                        State::PrepareParams {
                            left: params,
                            columns,
                        }
                    } else {
                        self.prepare_columns(columns)
                    }
                }
                _ => return Err(ProtocolError::Malformed("prepare response")),
            },
            State::PrepareParams { left, columns } if left > 1 => State::PrepareParams {
                left: left - 1,
                columns,
            },
            State::PrepareParams { columns, .. } if deprecate_eof => self.prepare_columns(columns),
            State::PrepareParams { columns, .. } => State::PrepareParamsEof { columns },
            State::PrepareParamsEof { columns } => {
                eof_status(head)?;
                self.prepare_columns(columns)
            }
            State::PrepareColumns { left } if left > 1 => State::PrepareColumns { left: left - 1 },
            State::PrepareColumns { .. } if deprecate_eof => State::Done(self.prepared_outcome()),
            State::PrepareColumns { .. } => State::PrepareColumnsEof,
            State::PrepareColumnsEof => {
                eof_status(head)?;
                State::Done(self.prepared_outcome())
            }
            State::FieldList => match first {
                Some(0xFF) => State::Done(Outcome::Err),
                _ if terminator => State::Done(Outcome::Ok {
                    status: self.terminator_status(head)?,
                }),
                _ => State::FieldList,
            },
            State::AuthServer | State::AuthEither => match first {
                Some(0xFF) => State::Done(Outcome::Err),
                Some(0x00) => State::Done(Outcome::Ok {
                    status: ok_status(head)?,
                }),
                Some(0xFE) => State::AuthClient,
                Some(0x01) => State::AuthEither,
                _ => return Err(ProtocolError::Malformed("authentication exchange")),
            },
            State::Single => match first {
                Some(0xFF) => State::Done(Outcome::Err),
                Some(0x00) => State::Done(Outcome::Ok {
                    status: ok_status(head)?,
                }),
                _ if terminator => State::Done(Outcome::Ok {
                    status: self.terminator_status(head)?,
                }),
                _ => return Err(ProtocolError::Malformed("command response")),
            },
            State::Statistics => State::Done(Outcome::NoStatus),
            State::Stream => State::Stream,
            State::InfileData | State::AuthClient | State::Done(_) => {
                return Err(ProtocolError::AfterEnd)
            }
        })
    }

    /// After an OK or a terminator: another result follows, or the response is complete.
    fn after_status(&self, s: u16) -> State {
        if s & status::MORE_RESULTS_EXISTS != 0 {
            State::First
        } else {
            State::Done(Outcome::Ok { status: s })
        }
    }

    /// The status of a result-set terminator: an EOF packet, or with
    /// `CLIENT_DEPRECATE_EOF` an OK packet whose header is `0xFE`.
    fn terminator_status(&self, head: &[u8]) -> Result<u16, ProtocolError> {
        if self.caps.deprecate_eof() {
            ok_status(head)
        } else {
            eof_status(head)
        }
    }

    fn prepare_columns(&self, columns: u16) -> State {
        if columns > 0 {
            State::PrepareColumns { left: columns }
        } else {
            State::Done(self.prepared_outcome())
        }
    }

    fn prepared_outcome(&self) -> Outcome {
        self.prepared.unwrap_or(Outcome::NoStatus)
    }
}

/// MariaDB's progress report: to a client that asked for them (`CLIENT_PROGRESS`,
/// the `mariadb` CLI does), a server running a long command (LOAD DATA, ALTER TABLE,
/// ...) sends packets shaped like an ERR with error code 0xFFFF (stage, stages,
/// progress, text) before the command's response proper. No row or column
/// definition starts 0xFF, and 0xFFFF is no error code.
pub fn is_progress_report(caps: Caps, p: &Packet) -> bool {
    caps.has(flag::MARIADB_PROGRESS) && p.head().starts_with(&[0xFF, 0xFF, 0xFF])
}

/// Status flags of an OK packet (header `0x00` or `0xFE`): after the header byte come
/// affected rows and last insert id (length-encoded), then the status.
pub fn ok_status(head: &[u8]) -> Result<u16, ProtocolError> {
    let bad = ProtocolError::Malformed("OK");
    let rest = head.get(1..).ok_or(bad.clone())?;
    let (_, a) = lenenc_int(rest).ok_or(bad.clone())?;
    let rest = &rest[a..];
    let (_, b) = lenenc_int(rest).ok_or(bad.clone())?;
    let s = rest.get(b..b + 2).ok_or(bad)?;
    Ok(u16::from_le_bytes([s[0], s[1]]))
}

/// Status flags of an EOF packet: `0xFE`, warnings (2), status (2).
pub fn eof_status(head: &[u8]) -> Result<u16, ProtocolError> {
    match head {
        [0xFE, _, _, a, b, ..] => Ok(u16::from_le_bytes([*a, *b])),
        _ => Err(ProtocolError::Malformed("EOF")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::protocol::caps::flag;
    use crate::protocol::frame::{header, Splitter};
    use proptest::prelude::*;

    const EOF41: Caps = Caps(flag::PROTOCOL_41);
    const DEPRECATE: Caps = Caps(flag::PROTOCOL_41 | flag::DEPRECATE_EOF);

    #[derive(Clone, Copy, Debug, PartialEq)]
    enum Dir {
        Client,
        Server,
    }

    fn ok(st: u16) -> Vec<u8> {
        let mut v = vec![0x00, 0x01, 0x00];
        v.extend(st.to_le_bytes());
        v.extend([0, 0]);
        v
    }
    fn ok_fe(st: u16) -> Vec<u8> {
        let mut v = ok(st);
        v[0] = 0xFE;
        v
    }
    fn eof(st: u16) -> Vec<u8> {
        let mut v = vec![0xFE, 0, 0];
        v.extend(st.to_le_bytes());
        v
    }
    fn err() -> Vec<u8> {
        let mut v = vec![0xFF, 0x28, 0x04, b'#'];
        v.extend(b"42000You have an error");
        v
    }
    fn coldef() -> Vec<u8> {
        let mut v = vec![3];
        v.extend(b"def");
        v.extend([
            0, 0, 0, 1, b'a', 1, b'a', 0x0c, 0x3f, 0, 1, 0, 0, 0, 3, 0, 0, 0, 0, 0,
        ]);
        v
    }
    fn terminator(caps: Caps, st: u16) -> Vec<u8> {
        if caps.deprecate_eof() {
            ok_fe(st)
        } else {
            eof(st)
        }
    }
    /// A text result set with `cols` columns and the given rows, ending with `st`.
    fn result_set(caps: Caps, cols: u8, rows: &[Vec<u8>], st: u16) -> Vec<Vec<u8>> {
        let mut m = vec![vec![cols]];
        m.extend((0..cols).map(|_| coldef()));
        if !caps.deprecate_eof() {
            m.push(eof(0x0002));
        }
        m.extend(rows.iter().cloned());
        m.push(terminator(caps, st));
        m
    }

    /// Encodes a script of messages into per-direction packets with sequence ids,
    /// splitting messages longer than a packet.
    fn packets(script: &[(Dir, Vec<u8>)]) -> Vec<(Dir, Vec<u8>)> {
        let mut seq = 0u8;
        let mut out = Vec::new();
        for (dir, msg) in script {
            let mut rest = &msg[..];
            loop {
                let n = rest.len().min(MAX_PAYLOAD);
                let mut p = header(n, seq).to_vec();
                p.extend_from_slice(&rest[..n]);
                out.push((*dir, p));
                seq = seq.wrapping_add(1);
                rest = &rest[n..];
                if n < MAX_PAYLOAD {
                    break;
                }
            }
        }
        out
    }

    /// Runs a script (the first message is the client's command) and returns the turn
    /// after each packet.
    fn run(caps: Caps, script: &[(Dir, Vec<u8>)]) -> Result<Vec<Turn>, ProtocolError> {
        let mut client = Splitter::new();
        let mut server = Splitter::new();
        let mut tracker: Option<ResponseTracker> = None;
        let mut turns = Vec::new();
        for (dir, bytes) in packets(script) {
            let mut seen = Vec::new();
            let splitter = if dir == Dir::Client {
                &mut client
            } else {
                &mut server
            };
            splitter.feed(&bytes, |p| {
                seen.push(*p);
                true
            });
            for p in seen {
                match (&mut tracker, dir) {
                    (None, _) => tracker = Some(ResponseTracker::start(&p, caps)?),
                    (Some(t), Dir::Client) => t.client_packet(&p)?,
                    (Some(t), Dir::Server) => t.server_packet(&p)?,
                }
                turns.push(tracker.as_ref().map(|t| t.turn()).unwrap_or(Turn::Server));
            }
        }
        Ok(turns)
    }

    fn query(sql: &str) -> (Dir, Vec<u8>) {
        let mut v = vec![cmd::QUERY];
        v.extend(sql.as_bytes());
        (Dir::Client, v)
    }
    fn server(msgs: Vec<Vec<u8>>) -> Vec<(Dir, Vec<u8>)> {
        msgs.into_iter().map(|m| (Dir::Server, m)).collect()
    }

    /// Asserts the exchange is Done exactly at its last packet with `outcome`.
    fn ends_at_last(caps: Caps, script: &[(Dir, Vec<u8>)], outcome: Outcome) {
        let turns = run(caps, script).expect("valid exchange"); // ok: test code
        let (last, before) = turns.split_last().expect("packets"); // ok: test code
        assert_eq!(*last, Turn::Done(outcome), "{turns:?}");
        assert!(
            before.iter().all(|t| !matches!(t, Turn::Done(_))),
            "done too early: {turns:?}"
        );
    }

    #[test]
    fn ok_and_err_end_a_query() {
        for caps in [EOF41, DEPRECATE] {
            let mut s = vec![query("SET @a = 1")];
            s.extend(server(vec![ok(0x0003)]));
            ends_at_last(caps, &s, Outcome::Ok { status: 0x0003 });
            let mut s = vec![query("SELEC")];
            s.extend(server(vec![err()]));
            ends_at_last(caps, &s, Outcome::Err);
        }
    }

    #[test]
    fn a_result_set_ends_at_its_terminator_in_both_grammars() {
        for caps in [EOF41, DEPRECATE] {
            let rows = vec![vec![1, b'x'], vec![0xFB], vec![0xFC, 1, 0, b'y']];
            let mut s = vec![query("SELECT a FROM t")];
            s.extend(server(result_set(caps, 2, &rows, 0x0002)));
            ends_at_last(caps, &s, Outcome::Ok { status: 0x0002 });
        }
    }

    #[test]
    fn in_transaction_comes_from_the_final_status() {
        let mut s = vec![query("BEGIN")];
        s.extend(server(vec![ok(0x0003)]));
        let turns = run(DEPRECATE, &s).unwrap(); // ok: test code
        match turns.last() {
            Some(Turn::Done(o)) => assert_eq!(o.in_transaction(), Some(true)),
            t => panic!("{t:?}"),
        }
        assert_eq!(Outcome::Err.in_transaction(), None);
    }

    #[test]
    fn more_results_keep_the_response_open() {
        for caps in [EOF41, DEPRECATE] {
            let more = status::MORE_RESULTS_EXISTS | 0x0002;
            let mut m = result_set(caps, 1, &[vec![1, b'1']], more);
            m.push(ok(more)); // an INSERT in the middle
            m.extend(result_set(caps, 1, &[], more));
            m.push(ok(0x0002)); // CALL's final OK
            let mut s = vec![query("CALL p()")];
            s.extend(server(m));
            ends_at_last(caps, &s, Outcome::Ok { status: 0x0002 });
            // An error in the middle ends the batch.
            let mut s = vec![query("SELECT 1; SELEC; SELECT 2")];
            let mut m = result_set(caps, 1, &[vec![1, b'1']], more);
            m.push(err());
            s.extend(server(m));
            ends_at_last(caps, &s, Outcome::Err);
        }
    }

    #[test]
    fn an_error_in_the_middle_of_rows_ends_the_response() {
        let mut s = vec![query("SELECT SLEEP(10) FROM t")];
        let mut m = result_set(DEPRECATE, 1, &[vec![1, b'0']], 0);
        m.pop();
        m.push(err());
        s.extend(server(m));
        ends_at_last(DEPRECATE, &s, Outcome::Err);
    }

    /// stage 1 of 2, 50.0 %, "copy": MariaDB's progress report packet.
    fn progress() -> Vec<u8> {
        let mut v = vec![0xFF, 0xFF, 0xFF, 1, 1, 2];
        v.extend(&500_000u32.to_le_bytes()[..3]);
        v.push(4);
        v.extend(b"copy");
        v
    }

    #[test]
    fn progress_reports_precede_the_response_to_a_client_that_asked_for_them() {
        let progress_caps = Caps(DEPRECATE.0 | flag::MARIADB_PROGRESS);
        // After the file of a LOAD DATA LOCAL INFILE, and before a query's OK or result set.
        let mut s = vec![query("LOAD DATA LOCAL INFILE 'f' INTO TABLE t")];
        s.push((Dir::Server, [&[0xFBu8][..], b"f"].concat()));
        s.push((Dir::Client, b"1\n".to_vec()));
        s.push((Dir::Client, vec![]));
        s.push((Dir::Server, progress()));
        s.push((Dir::Server, progress()));
        s.push((Dir::Server, ok(0x0002)));
        ends_at_last(progress_caps, &s, Outcome::Ok { status: 2 });
        let mut s = vec![query("ALTER TABLE t FORCE"), (Dir::Server, progress())];
        s.extend(server(result_set(progress_caps, 1, &[vec![1, b'7']], 2)));
        ends_at_last(progress_caps, &s, Outcome::Ok { status: 2 });
        // Without the capability, the same packet is an ERR that ends the response.
        let s = vec![query("ALTER TABLE t FORCE"), (Dir::Server, progress())];
        ends_at_last(DEPRECATE, &s, Outcome::Err);
    }

    #[test]
    fn local_infile_hands_the_turn_to_the_client_until_an_empty_packet() {
        let mut s = vec![query("LOAD DATA LOCAL INFILE 'f' INTO TABLE t")];
        s.push((Dir::Server, [&[0xFBu8][..], b"f"].concat()));
        s.push((Dir::Client, b"1\n2\n".to_vec()));
        s.push((Dir::Client, vec![]));
        s.push((Dir::Server, ok(0x0002)));
        let turns = run(DEPRECATE, &s).unwrap(); // ok: test code
        assert_eq!(
            turns,
            [
                Turn::Server,
                Turn::Client,
                Turn::Client,
                Turn::Server,
                Turn::Done(Outcome::Ok { status: 2 })
            ]
        );
        // The server must not speak while the file is coming.
        let mut bad = s[..3].to_vec();
        bad.push((Dir::Server, ok(0)));
        assert_eq!(
            run(DEPRECATE, &bad),
            Err(ProtocolError::Turn("server", "client"))
        );
    }

    #[test]
    fn a_null_first_field_is_a_row_not_a_local_infile_request() {
        let mut s = vec![query("SELECT NULL")];
        s.extend(server(result_set(EOF41, 1, &[vec![0xFB]], 0x0002)));
        ends_at_last(EOF41, &s, Outcome::Ok { status: 0x0002 });
    }

    #[test]
    fn a_row_whose_first_field_is_16_mib_is_not_a_terminator() {
        let mut row = vec![0xFE];
        row.extend(((MAX_PAYLOAD + 10) as u64).to_le_bytes());
        row.resize(row.len() + MAX_PAYLOAD + 10, b'z');
        let mut s = vec![query("SELECT REPEAT('z', 16777225)")];
        s.extend(server(result_set(DEPRECATE, 1, &[row], 0x0002)));
        ends_at_last(DEPRECATE, &s, Outcome::Ok { status: 0x0002 });
    }

    #[test]
    fn a_command_of_exactly_one_full_packet_ends_with_an_empty_one() {
        let mut sql = vec![cmd::QUERY];
        sql.resize(MAX_PAYLOAD, b' ');
        let script = vec![(Dir::Client, sql), (Dir::Server, ok(2))];
        // packets(): full packet + empty packet from the client, then the OK.
        let turns = run(EOF41, &script).unwrap(); // ok: test code
        assert_eq!(
            turns,
            [
                Turn::Client,
                Turn::Server,
                Turn::Done(Outcome::Ok { status: 2 })
            ]
        );
    }

    #[test]
    fn more_than_256_packets_wrap_the_sequence_id() {
        let rows: Vec<Vec<u8>> = (0..300).map(|_| vec![1, b'r']).collect();
        let mut s = vec![query("SELECT r FROM big")];
        s.extend(server(result_set(EOF41, 1, &rows, 0x0002)));
        ends_at_last(EOF41, &s, Outcome::Ok { status: 0x0002 });
    }

    #[test]
    fn an_out_of_order_sequence_id_is_an_error() {
        let cmd = Packet::from_payload(0, &[cmd::PING], true);
        let mut t = ResponseTracker::start(&cmd, EOF41).unwrap(); // ok: test code
        let reply = Packet::from_payload(2, &ok(2), true);
        assert_eq!(
            t.server_packet(&reply),
            Err(ProtocolError::Sequence {
                expected: 1,
                got: 2
            })
        );
        let late = Packet::from_payload(1, &[cmd::PING], true);
        assert!(ResponseTracker::start(&late, EOF41).is_err());
    }

    #[test]
    fn commands_without_a_response_are_done_at_once() {
        for c in [cmd::QUIT, cmd::STMT_CLOSE, cmd::STMT_SEND_LONG_DATA] {
            let p = Packet::from_payload(0, &[c, 1, 0, 0, 0], true);
            let mut t = ResponseTracker::start(&p, EOF41).unwrap(); // ok: test code
            assert_eq!(t.turn(), Turn::Done(Outcome::NoStatus));
            let stray = Packet::from_payload(1, &ok(2), true);
            assert_eq!(t.server_packet(&stray), Err(ProtocolError::AfterEnd));
        }
    }

    fn stmt_prepare_ok(id: u32, cols: u16, params: u16) -> Vec<u8> {
        let mut v = vec![0x00];
        v.extend(id.to_le_bytes());
        v.extend(cols.to_le_bytes());
        v.extend(params.to_le_bytes());
        v.extend([0, 0, 0]);
        v
    }

    #[test]
    fn prepare_counts_param_and_column_definitions() {
        for caps in [EOF41, DEPRECATE] {
            for (cols, params) in [(0u16, 0u16), (2, 0), (0, 3), (2, 3)] {
                let mut m = vec![stmt_prepare_ok(7, cols, params)];
                for n in [params, cols] {
                    m.extend((0..n).map(|_| coldef()));
                    if n > 0 && !caps.deprecate_eof() {
                        m.push(eof(2));
                    }
                }
                let mut s = vec![(Dir::Client, b"\x16SELECT ?".to_vec())];
                s.extend(server(m));
                ends_at_last(
                    caps,
                    &s,
                    Outcome::Prepared {
                        statement_id: 7,
                        columns: cols,
                        params,
                    },
                );
            }
        }
    }

    fn binary_row() -> Vec<u8> {
        vec![0x00, 0x00, 1, b'b']
    }

    #[test]
    fn execute_with_a_cursor_ends_after_the_metadata_and_fetch_reads_rows() {
        let cursor = status::CURSOR_EXISTS | 0x0002;
        // Without DEPRECATE_EOF the column EOF carries the cursor flag.
        let mut s = vec![(
            Dir::Client,
            vec![cmd::STMT_EXECUTE, 7, 0, 0, 0, 1, 1, 0, 0, 0],
        )];
        s.extend(server(vec![vec![1], coldef(), eof(cursor)]));
        ends_at_last(EOF41, &s, Outcome::Ok { status: cursor });
        // With it, a terminator right after the metadata does.
        let mut s = vec![(
            Dir::Client,
            vec![cmd::STMT_EXECUTE, 7, 0, 0, 0, 1, 1, 0, 0, 0],
        )];
        s.extend(server(vec![vec![1], coldef(), ok_fe(cursor)]));
        ends_at_last(DEPRECATE, &s, Outcome::Ok { status: cursor });
        // Fetch: rows, then a terminator with LAST_ROW_SENT.
        let last = status::LAST_ROW_SENT | cursor;
        let mut s = vec![(Dir::Client, vec![cmd::STMT_FETCH, 7, 0, 0, 0, 10, 0, 0, 0])];
        s.extend(server(vec![binary_row(), binary_row(), eof(last)]));
        ends_at_last(EOF41, &s, Outcome::Ok { status: last });
    }

    #[test]
    fn change_user_follows_the_auth_exchange() {
        let mut s = vec![(Dir::Client, b"\x11bob\0".to_vec())];
        s.push((Dir::Server, b"\xFEmysql_native_password\0nonce".to_vec()));
        s.push((Dir::Client, vec![9; 20]));
        s.push((Dir::Server, ok(2)));
        ends_at_last(EOF41, &s, Outcome::Ok { status: 2 });
    }

    #[test]
    fn single_packet_commands_and_statistics() {
        for (c, reply, outcome) in [
            (cmd::PING, ok(2), Outcome::Ok { status: 2 }),
            (cmd::INIT_DB, err(), Outcome::Err),
            (cmd::SET_OPTION, eof(2), Outcome::Ok { status: 2 }),
            (cmd::STATISTICS, b"Uptime: 5".to_vec(), Outcome::NoStatus),
            (0x42, err(), Outcome::Err),
        ] {
            let s = vec![(Dir::Client, vec![c]), (Dir::Server, reply)];
            ends_at_last(EOF41, &s, outcome);
        }
    }

    #[test]
    fn field_list_ends_at_its_terminator() {
        let mut s = vec![(Dir::Client, b"\x04t\0".to_vec())];
        s.extend(server(vec![coldef(), coldef(), eof(2)]));
        ends_at_last(EOF41, &s, Outcome::Ok { status: 2 });
    }

    #[test]
    fn binlog_dump_is_a_stream() {
        let p = Packet::from_payload(0, &[cmd::BINLOG_DUMP, 4, 0, 0, 0], true);
        let t = ResponseTracker::start(&p, EOF41).unwrap(); // ok: test code
        assert!(t.is_stream());
        assert_eq!(t.turn(), Turn::Server);
    }

    #[test]
    fn skipped_metadata_means_no_column_definitions() {
        let caps =
            Caps(flag::PROTOCOL_41 | flag::DEPRECATE_EOF | flag::OPTIONAL_RESULTSET_METADATA);
        let mut s = vec![query("SELECT 1")];
        s.extend(server(vec![vec![1, 0], vec![1, b'1'], ok_fe(2)]));
        ends_at_last(caps, &s, Outcome::Ok { status: 2 });
        let mut s = vec![query("SELECT 1")];
        s.extend(server(vec![vec![1, 1], coldef(), vec![1, b'1'], ok_fe(2)]));
        ends_at_last(caps, &s, Outcome::Ok { status: 2 });
    }

    // --- properties -----------------------------------------------------------------

    /// A random query response: result sets (0–3 columns is forced to ≥1), OKs and an
    /// optional final ERR, chained with MORE_RESULTS.
    fn arb_response() -> impl Strategy<Value = (bool, Vec<Vec<u8>>, Outcome)> {
        let part = prop_oneof![
            (
                1u8..4,
                proptest::collection::vec(proptest::collection::vec(any::<u8>(), 0..40), 0..20)
            )
                .prop_map(|(c, rows)| Some((c, rows))),
            Just(None),
        ];
        (
            any::<bool>(),
            proptest::collection::vec(part, 1..5),
            any::<bool>(),
        )
            .prop_map(|(deprecate, parts, end_err)| {
                let caps = if deprecate { DEPRECATE } else { EOF41 };
                let n = parts.len();
                let mut msgs = Vec::new();
                let mut outcome = Outcome::Ok { status: 0x0002 };
                for (i, part) in parts.into_iter().enumerate() {
                    let lastp = i + 1 == n;
                    if lastp && end_err {
                        msgs.push(err());
                        outcome = Outcome::Err;
                        break;
                    }
                    let st = if lastp { 0x0002 } else { 0x000A };
                    match part {
                        Some((c, rows)) => {
                            // Text rows: each field as a short length-encoded string.
                            let rows: Vec<Vec<u8>> = rows
                                .into_iter()
                                .map(|r| {
                                    let mut row = Vec::new();
                                    for k in 0..c {
                                        let f = &r[..r.len().min(k as usize * 3)];
                                        row.push(f.len() as u8);
                                        row.extend_from_slice(f);
                                    }
                                    row
                                })
                                .collect();
                            msgs.extend(result_set(caps, c, &rows, st));
                        }
                        None => msgs.push(ok(st)),
                    }
                }
                (deprecate, msgs, outcome)
            })
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(2000))]

        /// However the server's bytes are cut or glued, the response ends exactly at
        /// its last packet with the same outcome.
        #[test]
        fn verdicts_do_not_depend_on_how_bytes_arrive(
            (deprecate, msgs, outcome) in arb_response(),
            cuts in proptest::collection::vec(any::<usize>(), 0..8),
        ) {
            let caps = if deprecate { DEPRECATE } else { EOF41 };
            let mut script = vec![query("SELECT x")];
            script.extend(server(msgs));
            let pk = packets(&script);
            let cmd_bytes = &pk[0].1;
            let stream: Vec<u8> = pk[1..].iter().flat_map(|(_, b)| b.clone()).collect();
            let mut cut: Vec<usize> = cuts.iter().map(|c| c % (stream.len() + 1)).collect();
            cut.sort_unstable();
            let mut split = Splitter::new();
            let mut seen = Vec::new();
            Splitter::new().feed(cmd_bytes, |p| { seen.push(*p); true });
            let mut t = ResponseTracker::start(&seen[0], caps).unwrap(); // ok: test code
            let mut done_at = None;
            let mut consumed = 0usize;
            let mut prev = 0;
            for end in cut.into_iter().chain([stream.len()]) {
                let chunk = &stream[prev..end];
                prev = end;
                let mut res = Ok(());
                let mut after_end = false;
                split.feed(chunk, |p| {
                    after_end |= done_at.is_some();
                    if res.is_ok() {
                        res = t.server_packet(p);
                    }
                    if let Turn::Done(_) = t.turn() {
                        done_at.get_or_insert(consumed);
                    }
                    consumed += 1;
                    true
                });
                prop_assert!(!after_end, "a packet after the end");
                prop_assert_eq!(res, Ok(()));
            }
            prop_assert_eq!(done_at, Some(pk.len() - 2));
            prop_assert_eq!(t.turn(), Turn::Done(outcome));
        }

        /// Arbitrary bytes from either side never panic the splitter or the tracker.
        #[test]
        fn garbage_never_panics(
            command in proptest::collection::vec(any::<u8>(), 0..64),
            chunks in proptest::collection::vec((any::<bool>(), proptest::collection::vec(any::<u8>(), 0..300)), 0..12),
            deprecate in any::<bool>(),
        ) {
            let caps = if deprecate { DEPRECATE } else { EOF41 };
            let mut c = Splitter::new();
            let mut s = Splitter::new();
            let mut t: Option<ResponseTracker> = None;
            c.feed(&command, |p| { t = ResponseTracker::start(p, caps).ok(); false });
            for (from_client, bytes) in chunks {
                let sp = if from_client { &mut c } else { &mut s };
                sp.feed(&bytes, |p| {
                    if let Some(tr) = t.as_mut() {
                        let _ = if from_client { tr.client_packet(p) } else { tr.server_packet(p) };
                        let _ = tr.turn();
                    }
                    true
                });
            }
        }
    }
}
