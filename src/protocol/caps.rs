//! Classic-protocol capability flags and status flags, and the few questions the
//! forwarder asks of them. The grammar of a connection's responses depends on the
//! capabilities *that hop* negotiated (client ∧ server), so [`Caps`] is always the
//! shared set of one hop.

/// Capability flags (low 32 bits; MariaDB's extended flags live in the upper half of
/// a `u64` and are named `MARIADB_*`).
pub mod flag {
    pub const LONG_PASSWORD: u64 = 1; // MariaDB: cleared = "MariaDB extended caps"
    pub const CONNECT_WITH_DB: u64 = 1 << 3;
    pub const COMPRESS: u64 = 1 << 5;
    pub const LOCAL_FILES: u64 = 1 << 7;
    pub const PROTOCOL_41: u64 = 1 << 9;
    pub const SSL: u64 = 1 << 11;
    pub const TRANSACTIONS: u64 = 1 << 13;
    pub const SECURE_CONNECTION: u64 = 1 << 15;
    pub const MULTI_STATEMENTS: u64 = 1 << 16;
    pub const MULTI_RESULTS: u64 = 1 << 17;
    pub const PS_MULTI_RESULTS: u64 = 1 << 18;
    pub const PLUGIN_AUTH: u64 = 1 << 19;
    pub const CONNECT_ATTRS: u64 = 1 << 20;
    pub const PLUGIN_AUTH_LENENC_DATA: u64 = 1 << 21;
    pub const SESSION_TRACK: u64 = 1 << 23;
    pub const DEPRECATE_EOF: u64 = 1 << 24;
    pub const OPTIONAL_RESULTSET_METADATA: u64 = 1 << 25;
    pub const ZSTD_COMPRESSION: u64 = 1 << 26;
    pub const QUERY_ATTRIBUTES: u64 = 1 << 27;
    /// MariaDB extended capabilities (sent in the greeting's filler, bits 32..).
    pub const MARIADB_PROGRESS: u64 = 1 << 32;
    pub const MARIADB_STMT_BULK_OPERATIONS: u64 = 1 << 34;
    pub const MARIADB_EXTENDED_METADATA: u64 = 1 << 35;
    pub const MARIADB_CACHE_METADATA: u64 = 1 << 36;
}

/// Server status flags carried by OK and EOF packets.
pub mod status {
    pub const IN_TRANS: u16 = 0x0001;
    pub const AUTOCOMMIT: u16 = 0x0002;
    pub const MORE_RESULTS_EXISTS: u16 = 0x0008;
    pub const CURSOR_EXISTS: u16 = 0x0040;
    pub const LAST_ROW_SENT: u16 = 0x0080;
    pub const IN_TRANS_READONLY: u16 = 0x2000;
    pub const SESSION_STATE_CHANGED: u16 = 0x4000;
}

/// The capabilities one hop negotiated.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Caps(pub u64);

impl Caps {
    pub fn has(self, f: u64) -> bool {
        self.0 & f == f
    }

    /// Result sets end with an OK packet (header `0xFE`) instead of EOF, and the
    /// EOF after column definitions is left out.
    pub fn deprecate_eof(self) -> bool {
        self.has(flag::DEPRECATE_EOF)
    }

    /// A column count may be followed by a "metadata follows" byte: MySQL's optional
    /// result-set metadata, or MariaDB's metadata cache.
    pub fn metadata_flag_byte(self) -> bool {
        self.has(flag::OPTIONAL_RESULTSET_METADATA) || self.has(flag::MARIADB_CACHE_METADATA)
    }

    /// The flags that change the grammar of responses: two hops must agree on these
    /// for bytes to pass between them unchanged.
    pub fn grammar(self) -> Caps {
        Caps(
            self.0
                & (flag::DEPRECATE_EOF
                    | flag::MULTI_RESULTS
                    | flag::PS_MULTI_RESULTS
                    | flag::MULTI_STATEMENTS
                    | flag::SESSION_TRACK
                    | flag::OPTIONAL_RESULTSET_METADATA
                    | flag::QUERY_ATTRIBUTES
                    | flag::MARIADB_CACHE_METADATA
                    | flag::MARIADB_EXTENDED_METADATA),
        )
    }
}

/// The capabilities a server announces in its greeting (protocol version 10), with
/// MariaDB's extended capabilities when the greeting carries them.
pub fn from_greeting(payload: &[u8]) -> Option<Caps> {
    if payload.first() != Some(&10) {
        return None;
    }
    let nul = payload[1..].iter().position(|&b| b == 0)?;
    let o = 1 + nul + 1; // after the version string and its NUL
    let b = payload.get(o..o + 31)?;
    let lo = u16::from_le_bytes([b[13], b[14]]) as u64;
    let hi = u16::from_le_bytes([b[18], b[19]]) as u64;
    let mut caps = lo | hi << 16;
    if caps & flag::LONG_PASSWORD == 0 {
        // MariaDB: the last 4 bytes of the reserved area hold the extended flags.
        let ext = u32::from_le_bytes([b[27], b[28], b[29], b[30]]) as u64;
        caps |= ext << 32;
    }
    Some(Caps(caps))
}

/// The capabilities a client asks for in its HandshakeResponse41 or SSLRequest, with
/// MariaDB's extended capabilities (the last 4 filler bytes) when it clears bit 0.
pub fn from_response(payload: &[u8]) -> Option<Caps> {
    let b = payload.get(..32)?;
    let mut caps = u32::from_le_bytes([b[0], b[1], b[2], b[3]]) as u64;
    if caps & flag::LONG_PASSWORD == 0 {
        caps |= (u32::from_le_bytes([b[28], b[29], b[30], b[31]]) as u64) << 32;
    }
    Some(Caps(caps))
}

/// What one hop negotiated: the flags both sides set (MariaDB's extended flags only
/// when both speak them).
pub fn negotiated(server: Caps, client: Caps) -> Caps {
    let mut both = server.0 & client.0;
    let mariadb = server.0 & flag::LONG_PASSWORD == 0 && client.0 & flag::LONG_PASSWORD == 0;
    if !mariadb {
        both &= 0xFFFF_FFFF;
    }
    Caps(both)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A greeting as MariaDB 10.11 sends it (extended caps announced).
    fn mariadb_greeting(caps: u32, ext: u32) -> Vec<u8> {
        let mut g = vec![10];
        g.extend(b"5.5.5-10.11.14-MariaDB-0+deb12u2\0");
        g.extend(7u32.to_le_bytes());
        g.extend(b"12345678\0");
        g.extend(((caps & 0xFFFF) as u16).to_le_bytes());
        g.push(45);
        g.extend(2u16.to_le_bytes());
        g.extend(((caps >> 16) as u16).to_le_bytes());
        g.push(21);
        g.extend([0; 6]);
        g.extend(ext.to_le_bytes());
        g.extend(b"901234567890\0mysql_native_password\0");
        g
    }

    #[test]
    fn greeting_and_response_give_the_hop_caps() {
        let server = 0xF7FE_u32 | (0x81BF << 16); // bit 0 cleared: MariaDB
        let g = from_greeting(&mariadb_greeting(server, 0x1D)).unwrap(); // ok: test code
        assert!(g.has(flag::DEPRECATE_EOF) && g.has(flag::MARIADB_CACHE_METADATA));
        let mut resp = (flag::PROTOCOL_41 | flag::DEPRECATE_EOF | flag::MULTI_RESULTS) as u32;
        let mut r = resp.to_le_bytes().to_vec();
        r.resize(32, 0);
        let hop = negotiated(g, from_response(&r).unwrap()); // ok: test code
        assert!(hop.deprecate_eof() && !hop.has(flag::SSL));
        assert!(
            !hop.has(flag::MARIADB_CACHE_METADATA),
            "a MySQL client gets no MariaDB extras"
        );
        // A MariaDB client (bit 0 cleared) asking for the metadata cache gets it.
        resp &= !1;
        let mut r = resp.to_le_bytes().to_vec();
        r.resize(28, 0);
        r.extend(((flag::MARIADB_CACHE_METADATA >> 32) as u32).to_le_bytes());
        let hop = negotiated(g, from_response(&r).unwrap()); // ok: test code
        assert!(hop.metadata_flag_byte());
    }

    #[test]
    fn short_or_foreign_payloads_give_none() {
        assert_eq!(from_greeting(&[9, b'x', 0]), None);
        assert_eq!(from_greeting(&[10, b'x']), None);
        assert_eq!(from_greeting(&[10, b'x', 0, 1, 2]), None);
        assert_eq!(from_response(&[0; 31]), None);
    }
}
