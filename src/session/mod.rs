//! Protocol-aware sessions: routes whose router speaks the classic handshake itself
//! (TLS termination today; pooling and read/write splitting will attach here). Routes
//! in PASSTHROUGH mode never come here: they keep `relay.rs`, the byte-for-byte fast
//! path.
//!
//! * [`tls`]: rustls contexts built from a route's `client_ssl_*` / `server_ssl_*`.
//! * [`terminate`]: the terminated handshake and the relay after it.
//! * [`stream`]: a hop that is plain or TLS.
//! * [`rsa`]: the password encryption of caching_sha2 full authentication over a
//!   plain server hop.

pub mod pool;
pub mod pool_auth;
pub mod pool_relay;
pub mod pooled;
pub mod rsa;
pub mod stream;
pub mod terminate;
pub mod tls;
