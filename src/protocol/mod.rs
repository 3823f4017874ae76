//! The MySQL protocols as the router sees them.
//!
//! * [`errors`]: the few frames the router writes itself (2003, 1040, 1129, 1043).
//! * [`handshake`]: watching a classic or X handshake pass through, for
//!   `max_connect_errors`.
//! * The classic-protocol layer the protocol-aware session (TLS termination, pooling,
//!   read/write splitting) builds on, all pure: [`frame`] (streaming packet splitter),
//!   [`caps`] (capabilities and status flags per hop), [`response`] (where each
//!   command's response ends, and its status) and [`exchange`] (a whole session's
//!   commands and responses: safe points, transaction state), [`session_track`]
//!   (OK packets' counters and session-state information).
//!
//! In PASSTHROUGH routes everything passes byte for byte and only the handshake is
//! watched.

pub mod caps;
pub mod errors;
pub mod exchange;
pub mod frame;
pub mod handshake;
pub mod response;
pub mod session_track;
