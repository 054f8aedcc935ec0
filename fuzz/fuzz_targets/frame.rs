//! One frame header, parsed with no context: never panics, and whatever
//! parses re-encodes to a header that parses the same.
#![no_main]

use libfuzzer_sys::fuzz_target;
use volley_proto::frame::{FrameHeader, MAX_HEADER_LEN, apply_mask, apply_mask_bytewise};

fuzz_target!(|data: &[u8]| {
    if let Ok(Some((header, used))) = FrameHeader::parse(data) {
        assert!(used <= MAX_HEADER_LEN && used <= data.len());
        let mut buf = [0u8; MAX_HEADER_LEN];
        let n = header.encode(&mut buf);
        assert_eq!(FrameHeader::parse(&buf[..n]), Ok(Some((header, n))));
        if let Some(key) = header.mask {
            let payload = &data[used..];
            let offset = payload.len() % 7;
            let mut fast = payload.to_vec();
            let mut slow = payload.to_vec();
            apply_mask(&mut fast, key, offset);
            apply_mask_bytewise(&mut slow, key, offset);
            assert_eq!(fast, slow);
        }
    }
});
