//! A classic session whose TLS the router terminates (`client_ssl_mode` DISABLED,
//! PREFERRED or REQUIRED): the router speaks the handshake itself on both hops, then
//! relays the session's bytes between the client's stream (TLS or plain) and the
//! server's (TLS or plain).
//!
//! The client sees the server: the router forwards the server's own greeting (version,
//! connection id, nonce, capabilities — compression included), changing only the
//! `CLIENT_SSL` bit to what the router offers. The client therefore scrambles its
//! password against the server's nonce, and every authentication method passes
//! through (native, caching_sha2 fast and full, sha256, ed25519, auth switches) with no
//! password configured in the router. What the router changes:
//! * the SSLRequest / TLS of each hop: the client's on the client hop (per
//!   `client_ssl_mode`), the router's own towards the server (per `server_ssl_mode`);
//! * the `CLIENT_SSL` bit of the greeting and of the client's response;
//! * sequence ids during authentication, which differ by one per hop with TLS;
//! * a password a TLS client sends in clear (its hop is encrypted) never goes on a
//!   plain-TCP server hop in clear: caching_sha2 full authentication and
//!   sha256_password (after an auth switch, or named in the response itself) get the
//!   server's RSA public key asked for and the password sent encrypted, as a client
//!   without TLS would (MySQL Router answers 1045 here).
//!
//! After authentication (the server's OK) commands flow unchanged: compressed
//! frames too, since compression is negotiated end to end.

use std::time::Duration;

use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};

use crate::config::tls::{ClientSslMode, ServerSslMode, TlsConfig};
use crate::protocol::caps::flag;
use crate::protocol::errors;
use crate::protocol::frame::le24;

use super::compress::Codec;
use super::pool::{self, Key};
use super::pool_auth;
use super::pooled::{self, Parked};
use super::stream::MaybeTls;
use super::tls::Contexts;
use tokio::net::TcpStream;

/// Largest handshake packet accepted from a client (a response with attributes is a
/// few hundred bytes; MySQL's own limit before authentication is 16 KiB-ish).
const MAX_HANDSHAKE_PACKET: usize = 1 << 20;
const CR_SSL_CONNECTION_ERROR: u16 = 2026;
const CACHING_SHA2: &[u8] = b"caching_sha2_password";
const SHA256: &[u8] = b"sha256_password";

/// How a terminated handshake ended, for the route's counting and logging.
#[derive(Debug)]
pub enum End<C> {
    /// Authentication went through (or the server refused it): relay from here.
    Authenticated {
        client: MaybeTls<C>,
        server: MaybeTls<TcpStream>,
        /// The server's verdict was an ERR: forward nothing more.
        server_refused: bool,
        /// What pooling needs to park the server connection after the client quits.
        session: Session,
    },
    /// The client sent something that is not a handshake (1043 has been sent).
    Bad(String),
    /// The client went away; `sent` tells whether it had sent anything.
    ClientClosed { sent: bool },
    /// The server went away or sent garbage (not the client's fault).
    ServerFailed(String),
    /// The client was refused with an error it can read (e.g. TLS required).
    Refused(String),
}

/// Where the server connection came from, and what parking it later needs.
pub enum ServerSide {
    /// Just connected; the greeting is still to be read.
    Fresh(TcpStream),
    /// Taken from the pool: authenticated and reset, greeting known.
    Pooled(Key, Parked),
}

/// A finished handshake's facts for pooling.
#[derive(Debug, Clone)]
pub struct Session {
    /// The key to park the server connection under.
    pub key: Key,
    /// The greeting the server sent when this server connection was opened.
    pub greeting: Vec<u8>,
    /// Capabilities both ends of the session agreed on (the client's response ∧ the
    /// server's greeting).
    pub caps: u64,
    /// The client hop is TLS (see `pool_auth` for which plain sessions' connections
    /// are pooled).
    pub client_tls: bool,
    /// The session runs on a pooled connection.
    pub reused: bool,
    /// The server gives every COM_CHANGE_USER a new nonce (see `pool_auth`), so a
    /// plain client's connection may be parked too.
    pub renews_nonce: bool,
    /// User name, initial schema and collation id of the client's login (sharing
    /// keys idle connections by account and restores the rest).
    pub user: Vec<u8>,
    pub schema: Vec<u8>,
    pub charset: u8,
    /// Compression the router speaks with the client itself, the server hop having
    /// none (a TLS client over a plain server hop; see `compress`).
    pub client_compression: Option<Codec>,
}

impl Session {
    /// Whether the server connection may be parked when the client quits.
    pub fn poolable(&self) -> bool {
        (self.client_tls || self.renews_nonce)
            && self.key.caps & flag::PLUGIN_AUTH != 0
            && self.caps & (flag::COMPRESS | flag::ZSTD_COMPRESSION) == 0
    }
}

/// The capabilities a greeting offers (low and high 16 bits; MariaDB's extended
/// capabilities from the filler when the server announces them).
fn greeting_caps(g: &[u8], l: &GreetingLayout) -> u64 {
    let at = |i: usize| g.get(i).copied().unwrap_or(0) as u64;
    let lo = at(l.caps_lo) | at(l.caps_lo + 1) << 8;
    let hi = at(l.caps_lo + 5) | at(l.caps_lo + 6) << 8;
    let mut caps = lo | hi << 16;
    if caps & flag::LONG_PASSWORD == 0 {
        let e = l.caps_lo + 14;
        caps |= (at(e) | at(e + 1) << 8 | at(e + 2) << 16 | at(e + 3) << 24) << 32;
    }
    caps
}

/// A pooled connection not (yet) used for this client: nothing was sent on it and the
/// client saw only a router-made nonce, so when the handshake ends early (the client
/// leaves, sends garbage, times out) it goes back to the pool.
struct Unused(Option<(Key, Parked)>);

impl Drop for Unused {
    fn drop(&mut self) {
        if let Some((k, p)) = self.0.take() {
            pooled::put_back(k, p);
        }
    }
}

/// A packet read whole: sequence id and payload.
struct Packet {
    seq: u8,
    payload: Vec<u8>,
}

async fn read_packet<R: AsyncRead + Unpin>(r: &mut R) -> std::io::Result<Option<Packet>> {
    let mut hdr = [0u8; 4];
    // A clean end before a new packet is `None`; an end inside one is an error. The
    // header comes in one read when it is there (never more than the header: what
    // follows the handshake belongs to the relay).
    let mut got = 0;
    while got < 4 {
        match r.read(&mut hdr[got..]).await? {
            0 if got == 0 => return Ok(None),
            0 => return Err(std::io::ErrorKind::UnexpectedEof.into()),
            n => got += n,
        }
    }
    let len = le24(&hdr);
    if len > MAX_HANDSHAKE_PACKET {
        return Err(std::io::Error::new(
            std::io::ErrorKind::InvalidData,
            "handshake packet too large",
        ));
    }
    let mut payload = vec![0u8; len];
    r.read_exact(&mut payload).await?;
    Ok(Some(Packet {
        seq: hdr[3],
        payload,
    }))
}

async fn write_packet<W: AsyncWrite + Unpin>(
    w: &mut W,
    seq: u8,
    payload: &[u8],
) -> std::io::Result<()> {
    let mut p = Vec::with_capacity(4 + payload.len());
    p.extend_from_slice(&crate::protocol::frame::header(payload.len(), seq));
    p.extend_from_slice(payload);
    w.write_all(&p).await?;
    w.flush().await?;
    Ok(())
}

/// Offset of the capability flags' low 16 bits in a protocol-10 greeting, and of the
/// 20-byte nonce's two parts.
struct GreetingLayout {
    caps_lo: usize,
    nonce1: usize,
    nonce2: usize,
}

fn greeting_layout(g: &[u8]) -> Option<GreetingLayout> {
    if g.first() != Some(&10) {
        return None;
    }
    let nul = g[1..].iter().position(|&b| b == 0)?;
    let o = 1 + nul + 1;
    // conn id (4), nonce part 1 (8), filler (1), caps lo (2), charset (1), status (2),
    // caps hi (2), auth data length (1), reserved (10), nonce part 2 (12 + NUL)
    if g.len() < o + 31 + 12 {
        return None;
    }
    Some(GreetingLayout {
        caps_lo: o + 13,
        nonce1: o + 4,
        nonce2: o + 31,
    })
}

/// The 20-byte nonce of a protocol-10 greeting.
pub fn greeting_nonce(g: &[u8]) -> Option<Vec<u8>> {
    let l = greeting_layout(g)?;
    let mut nonce = g.get(l.nonce1..l.nonce1 + 8)?.to_vec();
    nonce.extend_from_slice(g.get(l.nonce2..l.nonce2 + 12)?);
    Some(nonce)
}

fn caps_of_response(r: &[u8]) -> u32 {
    u32::from_le_bytes([r[0], r[1], r[2], r[3]])
}

fn set_ssl_bit(r: &mut [u8], on: bool) {
    let mut c = caps_of_response(r);
    if on {
        c |= flag::SSL as u32;
    } else {
        c &= !(flag::SSL as u32);
    }
    r[..4].copy_from_slice(&c.to_le_bytes());
}

fn server_name(host: &str) -> rustls::pki_types::ServerName<'static> {
    // A destination is a host name or an IP address; anything else (never expected
    // after config validation) is named by the loopback address.
    rustls::pki_types::ServerName::try_from(host.to_string()).unwrap_or(
        rustls::pki_types::ServerName::IpAddress(std::net::Ipv4Addr::LOCALHOST.into()),
    )
}

/// Runs the terminated handshake. `client` is the accepted client stream, `server`
/// the connected server socket; `host` names the server for certificate checks.
///
/// With a pooled connection (`ServerSide::Pooled`) the client is greeted with that
/// connection's greeting and a router-made nonce; a client with the same capabilities
/// (a plain one only where the server renews its nonce) then authenticates on it by
/// COM_CHANGE_USER, any other client on a fresh connection from `fresh` (see
/// `pool_auth`). `destination` is the key's `host:port`.
#[allow(clippy::too_many_arguments)]
pub async fn handshake<C, F, Fut>(
    client: C,
    server: ServerSide,
    fresh: F,
    destination: &str,
    host: &str,
    cfg: &TlsConfig,
    ctx: &Contexts,
) -> End<C>
where
    C: AsyncRead + AsyncWrite + Unpin,
    F: FnOnce() -> Fut,
    Fut: std::future::Future<Output = Option<TcpStream>>,
{
    let mut client = MaybeTls::Plain(client);
    let (mut server, mut pooled) = match server {
        ServerSide::Fresh(s) => (Some(MaybeTls::Plain(s)), Unused(None)),
        ServerSide::Pooled(k, p) => (None, Unused(Some((k, p)))),
    };

    // 1. The server's greeting (a pooled connection's is known).
    let greeting = match (&mut server, &pooled.0) {
        (_, Some((_, p))) => Packet {
            seq: 0,
            payload: p.greeting.clone(),
        },
        (Some(server), None) => match read_packet(server).await {
            Ok(Some(p)) => p,
            Ok(None) => return End::ServerFailed("closed before its greeting".into()),
            Err(e) => return End::ServerFailed(format!("greeting: {e}")),
        },
        (None, None) => return End::ServerFailed("no server connection".into()),
    };
    let mut original_greeting = greeting.payload.clone();
    if greeting.payload.first() == Some(&0xFF) {
        // The server refuses (its own 1040/1129): pass it on, as in PASSTHROUGH.
        let _ = write_packet(&mut client, greeting.seq, &greeting.payload).await;
        return End::ServerFailed("the server refused the connection".into());
    }
    let Some(layout) = greeting_layout(&greeting.payload) else {
        return End::ServerFailed("malformed greeting".into());
    };
    let mut g = greeting.payload.clone();
    let server_caps_lo = u16::from_le_bytes([g[layout.caps_lo], g[layout.caps_lo + 1]]);
    let mut server_has_ssl = server_caps_lo as u64 & flag::SSL != 0;
    let mut server_caps = greeting_caps(&g, &layout);
    let mut nonce: Vec<u8> = g[layout.nonce1..layout.nonce1 + 8].to_vec();
    nonce.extend_from_slice(&g[layout.nonce2..layout.nonce2 + 12]);
    if pooled.0.is_some() {
        // A pooled connection's client sees a nonce of the router's (pool_auth).
        match pool_auth::router_nonce() {
            Some(r) => {
                g[layout.nonce1..layout.nonce1 + 8].copy_from_slice(&r[..8]);
                g[layout.nonce2..layout.nonce2 + 12].copy_from_slice(&r[8..]);
            }
            None => return End::ServerFailed("no randomness for a nonce".into()),
        }
    }
    let offer_ssl = cfg.client_mode != ClientSslMode::Disabled && ctx.acceptor.is_some();
    let lo = if offer_ssl {
        server_caps_lo | flag::SSL as u16
    } else {
        server_caps_lo & !(flag::SSL as u16)
    };
    g[layout.caps_lo..layout.caps_lo + 2].copy_from_slice(&lo.to_le_bytes());
    if write_packet(&mut client, 0, &g).await.is_err() {
        return End::ClientClosed { sent: false };
    }

    // 2. The client's SSLRequest or response.
    let bad = |why: &str| End::Bad(why.to_string());
    let first = match read_packet(&mut client).await {
        Ok(Some(p)) => Ok(p),
        Ok(None) => return End::ClientClosed { sent: false },
        Err(e) if e.kind() == std::io::ErrorKind::UnexpectedEof => {
            return End::ClientClosed { sent: true }
        }
        Err(e) => Err(e.to_string()),
    };
    let first = match first {
        Ok(p)
            if p.seq == 1
                && p.payload.len() >= 32
                && caps_of_response(&p.payload) as u64 & flag::PROTOCOL_41 != 0 =>
        {
            p
        }
        other => {
            // What MySQL Router sends (sequence id 2, no SQL state).
            let e = errors::classic_error(2, errors::ER_HANDSHAKE_ERROR, "Bad handshake");
            let _ = client.write_all(&e).await;
            let _ = client.flush().await;
            return End::Bad(match other {
                Err(why) => why,
                Ok(_) => "not a handshake response".into(),
            });
        }
    };
    let client_tls = caps_of_response(&first.payload) as u64 & flag::SSL != 0;
    let response = if client_tls {
        let Some(acceptor) = ctx.acceptor.as_ref().filter(|_| offer_ssl) else {
            return bad("SSL requested where it was not offered");
        };
        let MaybeTls::Plain(raw) = client else {
            return bad("TLS twice");
        };
        client = match acceptor.accept(raw).await {
            Ok(s) => MaybeTls::ServerTls(Box::new(s)),
            Err(e) => return End::Bad(format!("TLS handshake failed: {e}")),
        };
        match read_packet(&mut client).await {
            Ok(Some(p)) if p.seq == 2 && p.payload.len() >= 32 => p.payload,
            Ok(Some(_)) => return bad("not a handshake response"),
            Ok(None) => return End::ClientClosed { sent: true },
            Err(e) => return bad(&e.to_string()),
        }
    } else {
        if cfg.client_mode == ClientSslMode::Required {
            let e = errors::classic_error41(
                2,
                CR_SSL_CONNECTION_ERROR,
                "HY000",
                "SSL connection error: SSL is required from client",
            );
            let _ = client.write_all(&e).await;
            let _ = client.flush().await;
            return End::Refused("SSL is required from client".into());
        }
        first.payload
    };

    // 3. TLS towards the server?
    let server_tls = match cfg.server_mode {
        ServerSslMode::Disabled => false,
        ServerSslMode::Required => true,
        ServerSslMode::Preferred => server_has_ssl,
        ServerSslMode::AsClient => client_tls,
    };
    let mut cseq: u8 = if client_tls { 3 } else { 2 }; // next id towards the client

    // A TLS client over a plain server hop: compression is the router's on the client
    // hop, none towards the server, so that COM_CHANGE_USER stays visible (`compress`).
    // Neither the server nor the pool key sees it.
    let client_compression = (client_tls && !server_tls)
        .then(|| compression_of(&response, server_caps))
        .flatten();
    let response = match client_compression {
        Some(_) => match without_compression(&response) {
            Some(r) => r,
            None => return bad("a malformed handshake response"),
        },
        None => response,
    };
    let client_caps = pool::grammar_caps(&response).unwrap_or(0);
    let key = Key {
        destination: destination.to_string(),
        server_tls,
        caps: client_caps,
    };

    // 3a. A pooled connection: COM_CHANGE_USER on it, or a fresh one instead.
    let mut change_user = None;
    let mut ask_for_switch = false;
    let mut need_fresh = false;
    // The server's first answer to COM_CHANGE_USER, when read before relaying.
    let mut first_reply: Option<Packet> = None;
    if let Some((pkey, parked)) = pooled.0.take() {
        let renews = pool_auth::renews_nonce(&parked.greeting, destination);
        match pool_auth::change_user_asking_switch(&response) {
            Some(cu) if pkey == key && (client_tls || renews) => {
                let mut s = parked.server;
                if client_tls && !pool_auth::predicted_to_renew(&parked.greeting) {
                    // MariaDB keeps its nonce: only TLS sessions ever used this
                    // connection, so no token for it went in clear.
                    server = Some(s);
                    change_user = Some(cu);
                } else {
                    // A server believed to renew its nonce (its connections may have
                    // served plain clients, whose tokens went in clear): the switch
                    // must bring a nonce this connection never asked before.
                    let old = greeting_layout(&parked.greeting).map(|l| {
                        let g = &parked.greeting;
                        [&g[l.nonce1..l.nonce1 + 8], &g[l.nonce2..l.nonce2 + 12]].concat()
                    });
                    let reply = match write_packet(&mut s, 0, &cu).await {
                        Ok(()) => read_packet(&mut s).await.ok().flatten(),
                        Err(_) => None,
                    };
                    match (reply, old) {
                        (Some(p), Some(old))
                            if pool_auth::switch_nonce(&p.payload)
                                .is_some_and(|n| n != old.as_slice()) =>
                        {
                            server = Some(s);
                            change_user = Some(cu);
                            first_reply = Some(p);
                        }
                        (reply, _) => {
                            if reply.is_some_and(|p| p.payload.first() == Some(&0xFE)) {
                                pool_auth::note_kept_nonce(destination);
                                tracing::info!(target: "routing", "connection pool: '{destination}' answers COM_CHANGE_USER with the nonce of the connection's greeting; its plain clients get new server connections");
                            }
                            drop(s);
                            need_fresh = true;
                        }
                    }
                }
            }
            _ => {
                // Nothing of this connection reached the client (it saw a router
                // nonce): it stays pooled.
                pooled::put_back(pkey, parked);
                need_fresh = true;
            }
        }
    }
    if need_fresh {
        let Some(mut s) = fresh().await.map(MaybeTls::Plain) else {
            let e = errors::classic_error41(
                cseq,
                errors::CR_CONN_HOST_ERROR,
                "HY000",
                errors::MSG_NO_DESTINATION,
            );
            let _ = client.write_all(&e).await;
            let _ = client.flush().await;
            return End::ServerFailed("connecting afresh failed".into());
        };
        let fresh_greeting = match read_packet(&mut s).await {
            Ok(Some(p)) if p.payload.first() != Some(&0xFF) => p.payload,
            Ok(Some(p)) => {
                let _ = write_packet(&mut client, cseq, &p.payload).await;
                return End::ServerFailed("the server refused the connection".into());
            }
            Ok(None) => return End::ServerFailed("closed before its greeting".into()),
            Err(e) => return End::ServerFailed(format!("greeting: {e}")),
        };
        let Some(l) = greeting_layout(&fresh_greeting) else {
            return End::ServerFailed("malformed greeting".into());
        };
        server_caps = greeting_caps(&fresh_greeting, &l);
        server_has_ssl = server_caps & flag::SSL != 0;
        original_greeting = fresh_greeting;
        server = Some(s);
        ask_for_switch = true;
    }
    let Some(mut server) = server else {
        return End::ServerFailed("no server connection".into());
    };
    let renews_nonce = pool_auth::renews_nonce(&original_greeting, destination);
    let (user, schema, charset) = pool_auth::identity(&response).unwrap_or_default();
    let session = Session {
        user,
        schema,
        charset,
        client_compression,
        key,
        greeting: original_greeting,
        caps: client_caps & (server_caps | flag::SSL),
        client_tls,
        reused: change_user.is_some(),
        renews_nonce,
    };
    if server_tls && change_user.is_none() && (!server_has_ssl || ctx.connector.is_none()) {
        let e = errors::classic_error41(
            cseq,
            CR_SSL_CONNECTION_ERROR,
            "HY000",
            "SSL connection error: Requirements can not be satisfied",
        );
        let _ = client.write_all(&e).await;
        let _ = client.flush().await;
        return End::Refused("the server does not offer TLS".into());
    }
    let mut response = match ask_for_switch {
        // The client scrambled against another connection's nonce: let the server
        // send its own in an auth switch.
        true => match pool_auth::ask_for_switch(&response) {
            Some(r) => r,
            None => return End::ServerFailed("the client cannot follow an auth switch".into()),
        },
        false => response,
    };
    set_ssl_bit(&mut response, server_tls);
    // sha256_password named in the response of a TLS client carries the password in
    // clear: on a plain server hop, ask for the server's key instead and send the
    // password encrypted when it arrives.
    let mut password_for_key: Option<Vec<u8>> = None;
    if client_tls && !server_tls && response_plugin(&response) == Some(SHA256) {
        if let Some((rewritten, clear)) = replace_auth_data(&response, &[0x01]) {
            if !clear.is_empty() && clear != [0x01] {
                response = rewritten;
                password_for_key = Some(clear);
            }
        }
    }
    let router_key = ctx
        .router_key
        .as_ref()
        .filter(|_| !client_tls && server_tls);
    let mut sseq: u8 = 1;
    if let Some(cu) = &change_user {
        // Pooled: the connection is authenticated (and TLS, if its key says so); a
        // plain client's COM_CHANGE_USER went out already (its answer is checked).
        if first_reply.is_none() {
            if let Err(e) = write_packet(&mut server, 0, cu).await {
                return End::ServerFailed(format!("change user: {e}"));
            }
        }
    } else if server_tls {
        let mut req = response[..32].to_vec();
        set_ssl_bit(&mut req, true);
        if let Err(e) = write_packet(&mut server, 1, &req).await {
            return End::ServerFailed(format!("SSLRequest: {e}"));
        }
        let (Some(connector), MaybeTls::Plain(raw)) = (ctx.connector.as_ref(), server) else {
            return End::ServerFailed("no TLS towards the server".into());
        };
        server = match connector
            .get(destination)
            .connect(server_name(host), raw)
            .await
        {
            Ok(s) => MaybeTls::ClientTls(Box::new(s)),
            Err(e) => {
                let msg = format!("TLS to the server failed: {e}");
                let pkt = errors::classic_error41(
                    cseq,
                    CR_SSL_CONNECTION_ERROR,
                    "HY000",
                    &format!("SSL connection error: {e}"),
                );
                let _ = client.write_all(&pkt).await;
                let _ = client.flush().await;
                return End::Refused(msg);
            }
        };
        sseq = 2;
    }
    if change_user.is_none() {
        if let Err(e) = write_packet(&mut server, sseq, &response).await {
            return End::ServerFailed(format!("handshake response: {e}"));
        }
    }
    sseq = sseq.wrapping_add(1);

    // 4. Authentication: relay packets, renumbered, until the server's OK or ERR.
    let mut plugin: Vec<u8> = response_plugin(&response).unwrap_or_default().to_vec();
    let mut client_sent_more = true;
    // The client's next packet is its password in clear (it trusts its TLS hop), to be
    // sent RSA-encrypted over the plain server hop; the byte asks the server for its key.
    let mut clear_next: Option<u8> = None;
    // A client without TLS doing caching_sha2 full authentication, or sha256_password
    // after an auth switch (MySQL 9.7 switches a response that names sha256_password and
    // asks for the key), must send its password for a TLS server hop, where the server
    // wants it in clear: the byte with which the client will ask for a public key (it
    // gets the router's, see `rsa::RouterKey`), then whether its next packet is the
    // password encrypted with that key.
    let mut key_for_client: Option<u8> = None;
    let mut decrypt_next = false;
    loop {
        tokio::select! {
            // The answer read before (a pooled connection's switch), then the wire.
            r = async {
                match first_reply.take() {
                    Some(p) => Ok(Some(p)),
                    None => read_packet(&mut server).await,
                }
            } => {
                let p = match r {
                    Ok(Some(p)) => p,
                    Ok(None) => return End::ServerFailed("closed during authentication".into()),
                    Err(e) => return End::ServerFailed(format!("authentication: {e}")),
                };
                sseq = p.seq.wrapping_add(1);
                let kind = p.payload.first().copied();
                // The server's key, asked for in place of the response's password (a
                // server that answers otherwise, e.g. with an auth switch because the
                // account uses another plugin, goes on as usual).
                let key = match (password_for_key.take(), p.payload.strip_prefix(&[0x01])) {
                    (Some(clear), Some(pem)) if pem.starts_with(b"-----BEGIN") => Some((clear, pem)),
                    _ => None,
                };
                if let Some((clear, pem)) = key {
                    let enc = match super::rsa::encrypt_password(pem, &clear, &nonce) {
                        Ok(e) => e,
                        Err(e) => return End::ServerFailed(e),
                    };
                    if let Err(e) = write_packet(&mut server, sseq, &enc).await {
                        return End::ServerFailed(format!("authentication: {e}"));
                    }
                    sseq = sseq.wrapping_add(1);
                    continue;
                }
                let plain_hop = client_tls && !server_tls;
                match kind {
                    Some(0xFE) => {
                        // Auth switch: a new plugin and nonce.
                        let body = &p.payload[1..];
                        if let Some(nul) = body.iter().position(|&b| b == 0) {
                            plugin = body[..nul].to_vec();
                            let data = &body[nul + 1..];
                            nonce = data.strip_suffix(&[0]).unwrap_or(data).to_vec();
                            if plain_hop && plugin == SHA256 {
                                clear_next = Some(0x01);
                            }
                            if router_key.is_some() && plugin == SHA256 {
                                key_for_client = Some(0x01);
                            }
                        }
                    }
                    Some(0x01) if p.payload == [0x01, 0x04] && plugin == CACHING_SHA2 && plain_hop => {
                        clear_next = Some(0x02);
                    }
                    Some(0x01) if p.payload == [0x01, 0x04] && plugin == CACHING_SHA2 && router_key.is_some() => {
                        key_for_client = Some(0x02);
                    }
                    _ => {}
                }
                if write_packet(&mut client, cseq, &p.payload).await.is_err() {
                    return End::ClientClosed { sent: true };
                }
                cseq = cseq.wrapping_add(1);
                match kind {
                    Some(0x00) => return End::Authenticated { client, server, server_refused: false, session },
                    Some(0xFF) => return End::Authenticated { client, server, server_refused: true, session },
                    _ => client_sent_more = false,
                }
            }
            r = read_packet(&mut client) => {
                let p = match r {
                    Ok(Some(p)) => p,
                    // After the server answered the login, leaving is not a bad handshake.
                    Ok(None) => return End::ClientClosed { sent: client_sent_more },
                    Err(e) => return bad(&e.to_string()),
                };
                client_sent_more = true;
                cseq = p.seq.wrapping_add(1);
                if let (Some(ask), Some(key)) = (key_for_client.take(), router_key) {
                    if p.payload == [ask] {
                        let mut reply = vec![0x01];
                        reply.extend_from_slice(key.public_pem());
                        if write_packet(&mut client, cseq, &reply).await.is_err() {
                            return End::ClientClosed { sent: true };
                        }
                        cseq = cseq.wrapping_add(1);
                        decrypt_next = true;
                        continue;
                    }
                }
                let payload = if std::mem::take(&mut decrypt_next) {
                    // Undecryptable (encrypted with another key): passed on as it came,
                    // the server refuses it as a wrong password.
                    router_key
                        .and_then(|k| k.decrypt_password(&p.payload, &nonce).ok())
                        .unwrap_or(p.payload)
                } else if let Some(ask) = clear_next.take() {
                    match rsa_password(&mut server, &mut sseq, ask, &p.payload, &nonce).await {
                        Ok(enc) => enc,
                        Err(e) => return End::ServerFailed(e),
                    }
                } else {
                    p.payload
                };
                if let Err(e) = write_packet(&mut server, sseq, &payload).await {
                    return End::ServerFailed(format!("authentication: {e}"));
                }
                sseq = sseq.wrapping_add(1);
            }
        }
    }
}

/// Where a HandshakeResponse41's auth data lies: (start of its length prefix, start
/// of the data, end of the data), and whether the length is length-encoded.
fn auth_data_span(r: &[u8]) -> Option<(usize, usize, usize, bool)> {
    let caps = caps_of_response(r) as u64;
    let mut i = 32;
    let nul = r.get(i..)?.iter().position(|&b| b == 0)?;
    i += nul + 1; // user name
    if caps & flag::PLUGIN_AUTH_LENENC_DATA != 0 {
        let (n, used) = crate::protocol::frame::lenenc_int(r.get(i..)?)?;
        let end = (i + used).checked_add(usize::try_from(n).ok()?)?;
        (end <= r.len()).then_some((i, i + used, end, true))
    } else if caps & flag::SECURE_CONNECTION != 0 {
        let n = *r.get(i)? as usize;
        (i + 1 + n <= r.len()).then_some((i, i + 1, i + 1 + n, false))
    } else {
        None
    }
}

/// The response with its auth data replaced by `data` (short: one length byte), and
/// the data it had.
fn replace_auth_data(r: &[u8], data: &[u8]) -> Option<(Vec<u8>, Vec<u8>)> {
    let (len_at, start, end, _) = auth_data_span(r)?;
    let old = r[start..end].to_vec();
    let mut out = r[..len_at].to_vec();
    out.push(u8::try_from(data.len()).ok().filter(|&n| n < 0xFB)?);
    out.extend_from_slice(data);
    out.extend_from_slice(&r[end..]);
    Some((out, old))
}

/// Where a HandshakeResponse41's fields end (after the attributes, or the plugin
/// name, or the schema): the zstd compression level, when asked for, comes next.
fn end_of_fields(r: &[u8]) -> Option<usize> {
    let caps = caps_of_response(r) as u64;
    let mut i = plugin_at(r)?;
    if caps & flag::PLUGIN_AUTH != 0 {
        // Some clients end the packet without the plugin's NUL.
        i = r[i..]
            .iter()
            .position(|&b| b == 0)
            .map_or(r.len(), |n| i + n + 1);
    }
    if caps & flag::CONNECT_ATTRS != 0 && i < r.len() {
        let (n, used) = crate::protocol::frame::lenenc_int(r.get(i..)?)?;
        i = (i + used).checked_add(usize::try_from(n).ok()?)?;
    }
    (i <= r.len()).then_some(i)
}

/// Where a HandshakeResponse41's plugin name starts (or would): after the auth data
/// and the schema.
fn plugin_at(r: &[u8]) -> Option<usize> {
    let caps = caps_of_response(r) as u64;
    let (_, _, mut i, _) = auth_data_span(r)?;
    if caps & flag::CONNECT_WITH_DB != 0 {
        i += r.get(i..)?.iter().position(|&b| b == 0)? + 1;
    }
    (i <= r.len()).then_some(i)
}

/// The compression a response asks for and the greeting offered: zlib
/// (`CLIENT_COMPRESS`, which the server prefers) or zstd with the response's level.
fn compression_of(r: &[u8], server_caps: u64) -> Option<Codec> {
    let caps = caps_of_response(r) as u64 & server_caps;
    if caps & flag::COMPRESS != 0 {
        Some(Codec::Zlib)
    } else if caps & flag::ZSTD_COMPRESSION != 0 {
        let level = end_of_fields(r)
            .and_then(|i| r.get(i).copied())
            .unwrap_or(3);
        Some(Codec::Zstd(level as i32))
    } else {
        None
    }
}

/// The response asking for no compression (and without the zstd level).
fn without_compression(r: &[u8]) -> Option<Vec<u8>> {
    let caps = caps_of_response(r) as u64;
    let mut out = r.to_vec();
    if caps & flag::ZSTD_COMPRESSION != 0 {
        out.truncate(end_of_fields(r)?);
    }
    let c = caps & !(flag::COMPRESS | flag::ZSTD_COMPRESSION);
    out[..4].copy_from_slice(&(c as u32).to_le_bytes());
    Some(out)
}

/// The auth plugin a HandshakeResponse41 names, if it names one.
fn response_plugin(r: &[u8]) -> Option<&[u8]> {
    if caps_of_response(r) as u64 & flag::PLUGIN_AUTH == 0 {
        return None;
    }
    let rest = &r[plugin_at(r)?..];
    let nul = rest.iter().position(|&b| b == 0).unwrap_or(rest.len());
    Some(&rest[..nul])
}

/// A password the client sent in clear, for a plain server hop: asks the server for its
/// public key (`ask`: 0x02 for caching_sha2, 0x01 for sha256_password) and returns the
/// `password` (NUL-terminated, as the client sent it) XOR the nonce, RSA-OAEP encrypted.
async fn rsa_password<S: AsyncRead + AsyncWrite + Unpin>(
    server: &mut S,
    sseq: &mut u8,
    ask: u8,
    password: &[u8],
    nonce: &[u8],
) -> Result<Vec<u8>, String> {
    write_packet(server, *sseq, &[ask])
        .await
        .map_err(|e| format!("public key request: {e}"))?;
    let reply = match read_packet(server).await {
        Ok(Some(p)) => p,
        Ok(None) => return Err("closed before sending its public key".into()),
        Err(e) => return Err(format!("public key: {e}")),
    };
    *sseq = reply.seq.wrapping_add(1);
    let pem = reply
        .payload
        .strip_prefix(&[0x01])
        .ok_or("the server sent no public key")?;
    super::rsa::encrypt_password(pem, password, nonce)
}

/// Relays the authenticated session until either side ends it: the server's end ends
/// the session at once; the client's end is passed on and the server's last bytes
/// still reach the client (bounded).
pub async fn relay<C, S>(client: MaybeTls<C>, server: MaybeTls<S>, buffer: usize)
where
    C: AsyncRead + AsyncWrite + Unpin,
    S: AsyncRead + AsyncWrite + Unpin,
{
    let (mut cr, mut cw) = tokio::io::split(client);
    let (mut sr, mut sw) = tokio::io::split(server);
    let up = pump(&mut cr, &mut sw, buffer);
    let down = pump(&mut sr, &mut cw, buffer);
    tokio::pin!(up, down);
    tokio::select! {
        _ = &mut down => {}
        _ = &mut up => {
            let _ = tokio::time::timeout(Duration::from_secs(5), &mut down).await;
        }
    }
}

/// Copies until end of stream or an error; passes the end on.
async fn pump<R, W>(from: &mut R, to: &mut W, buffer: usize)
where
    R: AsyncRead + Unpin,
    W: AsyncWrite + Unpin,
{
    let mut buf = vec![0u8; buffer];
    loop {
        match from.read(&mut buf).await {
            Ok(0) | Err(_) => break,
            Ok(k) => {
                if to.write_all(&buf[..k]).await.is_err() || to.flush().await.is_err() {
                    return;
                }
            }
        }
    }
    let _ = to.shutdown().await;
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A HandshakeResponse41 with a schema, a plugin, attributes and, with zstd, the
    /// level byte after them.
    fn response(caps: u64, level: Option<u8>) -> Vec<u8> {
        let c = caps
            | flag::PROTOCOL_41
            | flag::SECURE_CONNECTION
            | flag::PLUGIN_AUTH
            | flag::CONNECT_WITH_DB
            | flag::CONNECT_ATTRS
            | if level.is_some() {
                flag::ZSTD_COMPRESSION
            } else {
                0
            };
        let mut r = (c as u32).to_le_bytes().to_vec();
        r.extend_from_slice(&(1u32 << 24).to_le_bytes());
        r.push(255);
        r.extend_from_slice(&[0; 23]);
        r.extend_from_slice(b"u\0");
        r.push(3);
        r.extend_from_slice(b"abc");
        r.extend_from_slice(b"db\0caching_sha2_password\0");
        r.extend_from_slice(&[4, 1, b'k', 1, b'v']);
        r.extend(level);
        r
    }

    #[test]
    fn compression_is_read_from_the_response_and_taken_off_it() {
        let offered = flag::COMPRESS | flag::ZSTD_COMPRESSION;
        let z = response(0, Some(7));
        assert_eq!(compression_of(&z, offered), Some(Codec::Zstd(7)));
        assert_eq!(compression_of(&z, flag::COMPRESS), None);
        let plain = without_compression(&z).unwrap(); // ok: test code
        assert_eq!(plain[4..], response(0, None)[4..], "the level byte dropped");
        assert_eq!(caps_of_response(&plain) as u64 & offered, 0);
        assert_eq!(plain.len(), z.len() - 1);
        let zl = response(flag::COMPRESS, None);
        assert_eq!(compression_of(&zl, offered), Some(Codec::Zlib));
        let plain = without_compression(&zl).unwrap(); // ok: test code
        assert_eq!(plain.len(), zl.len());
        assert_eq!(caps_of_response(&plain) as u64 & flag::COMPRESS, 0);
        assert_eq!(compression_of(&response(0, None), offered), None);
    }
}
