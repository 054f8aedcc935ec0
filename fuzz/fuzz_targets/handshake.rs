//! Handshake parsing in both roles: request heads, response heads and the
//! extension grammar. Never panics; errors map to an HTTP status.
#![no_main]

use libfuzzer_sys::fuzz_target;
use volley_proto::handshake::{ClientHandshake, HeadScanner, ServerRequest, parse_extensions};
use volley_proto::{DeflateConfig, HeadLimits};

fuzz_target!(|data: &[u8]| {
    let limits = HeadLimits { max_head_size: 4096, max_headers: 32 };
    let mut scanner = HeadScanner::new();
    // Feed in two pieces to exercise the resumable scan.
    let split = data.len() / 2;
    let end = match scanner.scan(&data[..split], &limits) {
        Ok(Some(end)) => Some(end),
        Ok(None) => scanner.scan(data, &limits).ok().flatten(),
        Err(_) => None,
    };
    if let Some(end) = end {
        assert!(end <= data.len());
        match ServerRequest::parse(&data[..end], &limits) {
            Ok(req) => {
                let _ = DeflateConfig::default().accept_offers(&req.extensions);
            }
            Err(e) => assert!(matches!(e.status().as_u16(), 400 | 426 | 431)),
        }
        let mut out = Vec::new();
        let hs = ClientHandshake::start(&mut out, "h", "/", &[], Some(&DeflateConfig::default()), &Default::default());
        let _ = hs.finish(&data[..end], &limits);
    }
    if let Ok(text) = std::str::from_utf8(data) {
        if let Ok(exts) = parse_extensions(&[text]) {
            let _ = DeflateConfig::default().accept_offers(&exts);
            let _ = DeflateConfig::default().accept_response(&exts);
        }
    }
});
