//! permessage-deflate (RFC 7692): negotiation and the codec.

#[cfg(feature = "deflate")]
pub(crate) mod codec;
#[cfg(not(feature = "deflate"))]
#[path = "codec_off.rs"]
pub(crate) mod codec;
mod negotiation;

pub use negotiation::{DeflateConfig, DeflateParams, EXTENSION_NAME, NegotiationError};
