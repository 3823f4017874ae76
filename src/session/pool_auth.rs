//! How a new client authenticates on a pooled server connection, and on a fresh one
//! after it was greeted with a pooled connection's greeting — without the router ever
//! knowing a password.
//!
//! * **Reuse** (a TLS client whose capabilities match the pooled connection's): the
//!   client was greeted with the pooled connection's own greeting, so it scrambled its
//!   password against the nonce that server connection holds. MariaDB and MySQL check
//!   COM_CHANGE_USER's authentication data against that same nonce (a client library's
//!   `mysql_change_user` scrambles with the greeting's nonce too), so the router turns
//!   the client's HandshakeResponse into a COM_CHANGE_USER with the same user,
//!   authentication data, schema, character set, plugin and attributes, and relays the
//!   server's answer (OK, ERR, auth switch, more data) as the rest of the client's
//!   handshake. Every method that works through the terminated handshake works here.
//!   Since the nonce of a pooled connection is used by every client that reuses it,
//!   a token sent in clear could be replayed on it: hence reuse only for TLS client
//!   hops, and a connection whose greeting a plain client saw is never pooled again.
//! * **Fallback** (a plain client, or other capabilities): a fresh server connection.
//!   The client scrambled against the pooled connection's nonce, not the fresh one's,
//!   so the router names a plugin the server does not know
//!   ([`SWITCH_ME`], as MySQL Router does) with no authentication data; the server
//!   answers with an auth switch carrying its own nonce and the account's plugin,
//!   which the router relays, and the client scrambles again.

use crate::protocol::caps::flag;

/// A plugin name no server has: the server answers with an auth switch.
pub const SWITCH_ME: &[u8] = b"switch_me_if_you_can";

/// The parts of a HandshakeResponse41.
struct Response<'a> {
    caps: u64,
    charset: u8,
    user: &'a [u8],
    auth: &'a [u8],
    schema: &'a [u8],
    plugin: &'a [u8],
    /// Connection attributes, with their length prefix, as sent.
    attrs: &'a [u8],
    /// Offset of the authentication data's length prefix.
    auth_at: usize,
}

/// The user name, initial schema (empty for none) and character set (collation id) a
/// HandshakeResponse41 asks for: what a shared session restores on another connection.
pub fn identity(response: &[u8]) -> Option<(Vec<u8>, Vec<u8>, u8)> {
    let r = parse(response)?;
    Some((r.user.to_vec(), r.schema.to_vec(), r.charset))
}

fn cstr(b: &[u8], i: usize) -> Option<(&[u8], usize)> {
    let rest = b.get(i..)?;
    let nul = rest.iter().position(|&c| c == 0)?;
    Some((&rest[..nul], i + nul + 1))
}

fn parse(r: &[u8]) -> Option<Response<'_>> {
    let caps = u32::from_le_bytes(r.get(..4)?.try_into().ok()?) as u64;
    let charset = *r.get(8)?;
    let (user, mut i) = cstr(r, 32)?;
    let auth_at = i;
    let auth = if caps & flag::PLUGIN_AUTH_LENENC_DATA != 0 {
        let (n, used) = crate::protocol::frame::lenenc_int(r.get(i..)?)?;
        let a = r.get(i + used..i + used + n as usize)?;
        i += used + n as usize;
        a
    } else if caps & flag::SECURE_CONNECTION != 0 {
        let n = *r.get(i)? as usize;
        let a = r.get(i + 1..i + 1 + n)?;
        i += 1 + n;
        a
    } else {
        let (a, j) = cstr(r, i)?;
        i = j;
        a
    };
    let mut schema: &[u8] = b"";
    if caps & flag::CONNECT_WITH_DB != 0 {
        let (s, j) = cstr(r, i)?;
        schema = s;
        i = j;
    }
    let mut plugin: &[u8] = b"";
    if caps & flag::PLUGIN_AUTH != 0 {
        // Some clients end the packet without the NUL.
        match cstr(r, i) {
            Some((p, j)) => {
                plugin = p;
                i = j;
            }
            None => {
                plugin = r.get(i..)?;
                i = r.len();
            }
        }
    }
    let attrs = if caps & flag::CONNECT_ATTRS != 0 {
        r.get(i..).unwrap_or(b"")
    } else {
        b""
    };
    Some(Response {
        caps,
        charset,
        user,
        auth,
        schema,
        plugin,
        attrs,
        auth_at,
    })
}

/// The plugin a response names (empty when none).
pub fn plugin(response: &[u8]) -> Option<Vec<u8>> {
    parse(response).map(|r| r.plugin.to_vec())
}

/// COM_CHANGE_USER carrying the client's HandshakeResponse41: same user, auth data,
/// schema, character set, plugin and attributes. `None` for a response without
/// `CLIENT_PLUGIN_AUTH` and `CLIENT_SECURE_CONNECTION` (pre-4.1 style clients), which
/// are never given a pooled connection.
pub fn change_user(response: &[u8]) -> Option<Vec<u8>> {
    let r = parse(response)?;
    if r.caps & flag::PLUGIN_AUTH == 0 || r.caps & flag::SECURE_CONNECTION == 0 {
        return None;
    }
    let auth_len = u8::try_from(r.auth.len()).ok()?;
    let mut p = Vec::with_capacity(64 + r.auth.len() + r.attrs.len());
    p.push(0x11);
    p.extend_from_slice(r.user);
    p.push(0);
    p.push(auth_len);
    p.extend_from_slice(r.auth);
    p.extend_from_slice(r.schema);
    p.push(0);
    p.extend_from_slice(&[r.charset, 0]);
    p.extend_from_slice(r.plugin);
    p.push(0);
    p.extend_from_slice(r.attrs);
    Some(p)
}

/// The response with its authentication data emptied and the plugin replaced by
/// [`SWITCH_ME`], so the server answers with an auth switch carrying its own nonce.
/// `None` when the client cannot follow a switch (no `CLIENT_PLUGIN_AUTH`).
pub fn ask_for_switch(response: &[u8]) -> Option<Vec<u8>> {
    let r = parse(response)?;
    if r.caps & flag::PLUGIN_AUTH == 0 {
        return None;
    }
    let mut p = response[..r.auth_at].to_vec();
    if r.caps & (flag::PLUGIN_AUTH_LENENC_DATA | flag::SECURE_CONNECTION) != 0 {
        p.push(0);
    } else {
        p.push(0); // empty NUL-terminated data
    }
    if r.caps & flag::CONNECT_WITH_DB != 0 {
        p.extend_from_slice(r.schema);
        p.push(0);
    }
    p.extend_from_slice(SWITCH_ME);
    p.push(0);
    p.extend_from_slice(r.attrs);
    Some(p)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn response(caps: u64, auth: &[u8], schema: Option<&[u8]>, attrs: &[u8]) -> Vec<u8> {
        let mut c = caps | flag::PROTOCOL_41 | flag::SECURE_CONNECTION | flag::PLUGIN_AUTH;
        if schema.is_some() {
            c |= flag::CONNECT_WITH_DB;
        }
        if !attrs.is_empty() {
            c |= flag::CONNECT_ATTRS;
        }
        let mut r = (c as u32).to_le_bytes().to_vec();
        r.extend_from_slice(&(1u32 << 24).to_le_bytes());
        r.push(45);
        r.extend_from_slice(&[0; 23]);
        r.extend_from_slice(b"alice\0");
        r.push(auth.len() as u8);
        r.extend_from_slice(auth);
        if let Some(s) = schema {
            r.extend_from_slice(s);
            r.push(0);
        }
        r.extend_from_slice(b"mysql_native_password\0");
        r.extend_from_slice(attrs);
        r
    }

    #[test]
    fn change_user_carries_everything_the_client_sent() {
        let r = response(0, &[7; 20], Some(b"db1"), b"\x03\x01a\x01b");
        let cu = change_user(&r).unwrap();
        let mut want = b"\x11alice\0\x14".to_vec();
        want.extend_from_slice(&[7; 20]);
        want.extend_from_slice(b"db1\0\x2d\x00mysql_native_password\0\x03\x01a\x01b");
        assert_eq!(cu, want);
        // Without a schema: an empty one (COM_CHANGE_USER always has the field).
        let cu = change_user(&response(0, &[], None, b"")).unwrap();
        assert_eq!(
            cu,
            b"\x11alice\0\x00\0\x2d\x00mysql_native_password\0".to_vec()
        );
    }

    #[test]
    fn ask_for_switch_empties_the_token_and_names_an_unknown_plugin() {
        let r = response(0, &[7; 20], Some(b"db1"), b"\x02\x01a");
        let s = ask_for_switch(&r).unwrap();
        assert_eq!(&s[..32], &r[..32]);
        assert_eq!(&s[32..], b"alice\0\x00db1\0switch_me_if_you_can\0\x02\x01a");
        assert_eq!(plugin(&r).unwrap(), b"mysql_native_password");
    }

    #[test]
    fn truncated_responses_are_refused_not_panicking() {
        let r = response(0, &[7; 20], Some(b"db1"), b"");
        for n in 0..r.len() - 25 {
            let _ = change_user(&r[..n]);
            let _ = ask_for_switch(&r[..n]);
        }
        assert!(change_user(&r[..40]).is_none());
    }
}
