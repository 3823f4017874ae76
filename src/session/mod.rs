//! Protocol-aware sessions: routes whose router speaks the classic handshake itself
//! (TLS termination, the connection pool; read/write splitting will attach here). Routes
//! in PASSTHROUGH mode never come here: they keep `relay.rs`, the byte-for-byte fast
//! path.
//!
//! * [`tls`]: rustls contexts built from a route's `client_ssl_*` / `server_ssl_*`.
//! * [`terminate`]: the terminated handshake and the relay after it.
//! * [`stream`]: a hop that is plain or TLS.
//! * [`change_user`]: the same for COM_CHANGE_USER after the login.
//! * [`compress`]: protocol compression the router terminates on the client hop (TLS
//!   clients over a plain server hop, so that `change_user` can see their exchanges).
//! * [`rsa`]: the password encryption of caching_sha2 full authentication over a
//!   plain server hop.
//! * [`pool`]: the pool's policy (keys, warmest-first, idle timeout, the global bound),
//!   pure; [`pooled`]: the per-thread pools of real connections (reset, liveness,
//!   sweeper); [`pool_auth`]: logging a new client in on a pooled connection without
//!   knowing its password; [`pool_relay`]: the relay that hands the server connection
//!   back when the client quits at a safe point.
//! * [`share`]: connection sharing (`connection_sharing = 1`): the command-by-command
//!   driver that stashes an idle session's server connection and relinks it, restored,
//!   on the session's next command; [`share_state`]: what is restored, what pins or
//!   holds a session (the statement classifier and the response policy), pure.

pub mod change_user;
pub mod compress;
pub mod pool;
pub mod pool_auth;
pub mod pool_relay;
pub mod pooled;
pub mod rsa;
pub mod share;
pub mod share_state;
pub mod stream;
pub mod terminate;
pub mod tls;
