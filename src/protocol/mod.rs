//! The few MySQL frames the router writes itself, and (in [`handshake`]) the classic
//! handshake it watches. Everything else passes through byte for byte.

pub mod errors;
pub mod handshake;
