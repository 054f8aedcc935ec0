//! The connection: state, message assembly and the state machine that ties
//! them to frames.

mod assembler;
mod connection;
mod keepalive;
mod state;

pub use assembler::MessageKind;
pub use connection::{Connection, DIRECT_READ_GROWTH, Event, Role};
pub use keepalive::Keepalive;
pub use state::State;

#[cfg(test)]
mod tests;
