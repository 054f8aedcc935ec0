//! Without the `deflate` feature there is no codec: [`Config`](crate::Config)
//! refuses permessage-deflate settings, so nothing negotiates it and a
//! [`Connection`](crate::Connection) is never built with these types. They
//! are uninhabited, and every path that would use them is unreachable.

use std::convert::Infallible;

/// Why inflating stopped (matched by the assembler, never produced here).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[allow(dead_code)]
pub(crate) enum InflateError {
    /// The output would exceed the limit.
    TooBig,
    /// The input is not valid DEFLATE data.
    Corrupt,
}

/// No decompressor in this build.
#[derive(Debug)]
pub(crate) struct Inflater(Infallible);

impl Inflater {
    pub(crate) fn inflate(
        &mut self,
        _input: &[u8],
        _out: &mut Vec<u8>,
        _max: usize,
    ) -> Result<(), InflateError> {
        match self.0 {}
    }

    pub(crate) fn finish_message(
        &mut self,
        _out: &mut Vec<u8>,
        _max: usize,
    ) -> Result<(), InflateError> {
        match self.0 {}
    }

    pub(crate) fn reset(&mut self) {
        match self.0 {}
    }

    pub(crate) fn is_allocated(&self) -> bool {
        match self.0 {}
    }
}

/// No compressor in this build.
#[derive(Debug)]
pub(crate) struct Deflater(Infallible);

impl Deflater {
    pub(crate) fn compress(&mut self, _input: &[u8], _out: &mut Vec<u8>) {
        match self.0 {}
    }

    pub(crate) fn is_allocated(&self) -> bool {
        match self.0 {}
    }
}
