//! permessage-deflate (RFC 7692): negotiation and the codec.

pub(crate) mod codec;
mod negotiation;

pub use negotiation::{DeflateConfig, DeflateParams, EXTENSION_NAME, NegotiationError};
