//! How a new client authenticates on a pooled server connection, and on a fresh one
//! after it was greeted with a pooled connection's greeting — without the router ever
//! knowing a password.
//!
//! * **Greeting**: a client about to get a pooled connection is greeted with that
//!   connection's greeting (version, thread id, capabilities) but a nonce the router
//!   made ([`router_nonce`]): its first scramble is worth nothing to anyone, whether
//!   it was sent over TLS or in clear.
//! * **Reuse** (capabilities match the pooled connection's): the router sends
//!   COM_CHANGE_USER with the client's user, schema, character set and attributes, no
//!   authentication data and a plugin no server has ([`change_user_asking_switch`]).
//!   Both servers answer every COM_CHANGE_USER with an auth switch (measured: MySQL
//!   9.7.4 and MariaDB 10.11, even for a correct token of the plugin named), carrying
//!   the account's plugin and the nonce the server checks; the router relays it and the
//!   rest of the exchange (OK, ERR, more data, caching_sha2 full authentication) as the
//!   rest of the client's handshake.
//! * **Which nonce**: MySQL makes a new nonce for every COM_CHANGE_USER; MariaDB
//!   answers with the connection's own, the same for its whole life. A token sent in
//!   clear for a nonce the server will ask again could be replayed by the next client
//!   of that connection. So a plain (non-TLS) client gets a pooled connection only from
//!   a server that renews the nonce ([`renews_nonce`]: predicted from the greeting's
//!   version, checked on every reuse of such a server's connections, TLS clients too,
//!   by comparing the switch's nonce with the
//!   connection's greeting, and remembered per destination when a server does not),
//!   and only such servers' connections are parked after a plain client. TLS clients
//!   may reuse any pooled connection.
//! * **Fallback** (a plain client of a server that keeps its nonce, or other
//!   capabilities): the pooled connection goes back unused (nothing of it was exposed)
//!   and the client gets a fresh server connection; the router names [`SWITCH_ME`] in
//!   the handshake response (as MySQL Router does) with no authentication data, the
//!   server answers with an auth switch carrying its own nonce, and the client
//!   scrambles again.

use std::collections::HashSet;
use std::sync::Mutex;

use crate::protocol::caps::flag;

/// A plugin name no server has: the server answers with an auth switch.
pub const SWITCH_ME: &[u8] = b"switch_me_if_you_can";

/// The parts of a HandshakeResponse41.
struct Response<'a> {
    caps: u64,
    charset: u8,
    user: &'a [u8],
    schema: &'a [u8],
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
    // The authentication data is skipped (a pooled login never forwards it).
    if caps & flag::PLUGIN_AUTH_LENENC_DATA != 0 {
        let (n, used) = crate::protocol::frame::lenenc_int(r.get(i..)?)?;
        r.get(i + used..i + used + n as usize)?;
        i += used + n as usize;
    } else if caps & flag::SECURE_CONNECTION != 0 {
        let n = *r.get(i)? as usize;
        r.get(i + 1..i + 1 + n)?;
        i += 1 + n;
    } else {
        i = cstr(r, i)?.1;
    }
    let mut schema: &[u8] = b"";
    if caps & flag::CONNECT_WITH_DB != 0 {
        let (s, j) = cstr(r, i)?;
        schema = s;
        i = j;
    }
    if caps & flag::PLUGIN_AUTH != 0 {
        // The plugin is skipped too; some clients end the packet without its NUL.
        i = cstr(r, i).map_or(r.len(), |(_, j)| j);
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
        schema,
        attrs,
        auth_at,
    })
}

/// COM_CHANGE_USER with the user, schema, character set and attributes of the client's
/// HandshakeResponse41, no authentication data and [`SWITCH_ME`] as plugin, so that the
/// server answers with an auth switch carrying the nonce it will check. `None` for a
/// response without `CLIENT_PLUGIN_AUTH` and `CLIENT_SECURE_CONNECTION`.
pub fn change_user_asking_switch(response: &[u8]) -> Option<Vec<u8>> {
    let r = parse(response)?;
    if r.caps & flag::PLUGIN_AUTH == 0 || r.caps & flag::SECURE_CONNECTION == 0 {
        return None;
    }
    let mut p = Vec::with_capacity(64 + r.attrs.len());
    p.push(0x11);
    p.extend_from_slice(r.user);
    p.push(0);
    p.push(0);
    p.extend_from_slice(r.schema);
    p.push(0);
    p.extend_from_slice(&[r.charset, 0]);
    p.extend_from_slice(SWITCH_ME);
    p.push(0);
    p.extend_from_slice(r.attrs);
    Some(p)
}

/// A 20-byte nonce for greeting a client on a pooled connection: random, printable,
/// never NUL (the greeting's second part is NUL-terminated) or `$`. `None` when the
/// OS has no randomness to give (then the client is not given a pooled connection).
pub fn router_nonce() -> Option<[u8; 20]> {
    let mut n = [0u8; 20];
    getrandom::fill(&mut n).ok()?;
    for b in &mut n {
        // 0x21..=0x7e without '$': 93 values.
        let mut c = 0x21 + (*b % 93);
        if c >= b'$' {
            c += 1;
        }
        *b = c;
    }
    Some(n)
}

/// The nonce of an auth switch request (`0xFE plugin NUL data [NUL]`).
pub fn switch_nonce(p: &[u8]) -> Option<&[u8]> {
    let body = p.strip_prefix(&[0xFE])?;
    let nul = body.iter().position(|&b| b == 0)?;
    let data = &body[nul + 1..];
    Some(data.strip_suffix(&[0]).unwrap_or(data))
}

/// Destinations seen answering COM_CHANGE_USER with the nonce of the connection's
/// greeting (their plain clients are not given pooled connections).
static KEEPS_NONCE: Mutex<Option<HashSet<String>>> = Mutex::new(None);

/// Records that `destination` answered COM_CHANGE_USER with a nonce it used before.
pub fn note_kept_nonce(destination: &str) {
    let mut g = KEEPS_NONCE.lock().unwrap_or_else(|p| p.into_inner());
    g.get_or_insert_with(HashSet::new)
        .insert(destination.to_string());
}

/// Whether the server that sent `greeting` (at `destination`) gives every
/// COM_CHANGE_USER a new nonce: MySQL does, MariaDB (its version says `MariaDB`)
/// does not; a destination caught keeping its nonce is believed.
pub fn renews_nonce(greeting: &[u8], destination: &str) -> bool {
    if !predicted_to_renew(greeting) {
        return false;
    }
    let g = KEEPS_NONCE.lock().unwrap_or_else(|p| p.into_inner());
    !g.as_ref().is_some_and(|s| s.contains(destination))
}

/// Whether the greeting's version predicts a new nonce per COM_CHANGE_USER (not
/// MariaDB). Connections of such servers may have been parked after plain sessions, so
/// every reuse of one checks the nonce, also after the destination was caught keeping
/// it.
pub fn predicted_to_renew(greeting: &[u8]) -> bool {
    let version = greeting
        .get(1..)
        .and_then(|g| g.split(|&b| b == 0).next())
        .unwrap_or(b"");
    !version.windows(7).any(|w| w == b"MariaDB")
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
    fn ask_for_switch_empties_the_token_and_names_an_unknown_plugin() {
        let r = response(0, &[7; 20], Some(b"db1"), b"\x02\x01a");
        let s = ask_for_switch(&r).unwrap(); // ok: test code
        assert_eq!(&s[..32], &r[..32]);
        assert_eq!(&s[32..], b"alice\0\x00db1\0switch_me_if_you_can\0\x02\x01a");
    }

    #[test]
    fn change_user_asking_switch_names_an_unknown_plugin_without_a_token() {
        let r = response(0, &[7; 20], Some(b"db1"), b"\x03\x01a\x01b");
        let cu = change_user_asking_switch(&r).unwrap(); // ok: test code
        assert_eq!(
            cu,
            b"\x11alice\0\0db1\0\x2d\x00switch_me_if_you_can\0\x03\x01a\x01b".to_vec()
        );
    }

    #[test]
    fn router_nonces_are_printable_fresh_and_never_nul_or_dollar() {
        let a = router_nonce().unwrap(); // ok: test code
        let b = router_nonce().unwrap(); // ok: test code
        assert_ne!(a, b);
        for n in [a, b] {
            assert!(
                n.iter().all(|&c| (0x21..=0x7f).contains(&c) && c != b'$'),
                "{n:?}"
            );
        }
    }

    #[test]
    fn switch_nonces_and_which_servers_renew_them() {
        assert_eq!(
            switch_nonce(b"\xfecaching_sha2_password\0abcdefghijklmnopqrst\0"),
            Some(&b"abcdefghijklmnopqrst"[..])
        );
        assert_eq!(switch_nonce(b"\xfeplugin"), None);
        assert_eq!(switch_nonce(b"\x00\0\0"), None);
        let greeting = |v: &[u8]| [&[10u8][..], v, b"\0rest"].concat();
        assert!(!renews_nonce(
            &greeting(b"5.5.5-10.11.6-MariaDB-0+deb12u1"),
            "a:1"
        ));
        assert!(renews_nonce(&greeting(b"9.7.4"), "b:1"));
        note_kept_nonce("b:1");
        assert!(!renews_nonce(&greeting(b"9.7.4"), "b:1"));
        assert!(renews_nonce(&greeting(b"9.7.4"), "c:1"));
    }

    #[test]
    fn truncated_responses_are_refused_not_panicking() {
        let r = response(0, &[7; 20], Some(b"db1"), b"");
        for n in 0..r.len() - 25 {
            let _ = change_user_asking_switch(&r[..n]);
            let _ = ask_for_switch(&r[..n]);
        }
        assert!(change_user_asking_switch(&r[..40]).is_none());
    }
}
