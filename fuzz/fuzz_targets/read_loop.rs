//! The full read loop of a server connection with permessage-deflate and
//! small limits: arbitrary bytes, split at arbitrary points. Never panics,
//! never yields a message over the limit, and stops reading once closed.
#![no_main]

use libfuzzer_sys::fuzz_target;
use volley_proto::handshake::parse_extensions;
use volley_proto::{Config, Connection, DeflateConfig, Event, Role, State};

fuzz_target!(|data: &[u8]| {
    let Some((&control, data)) = data.split_first() else { return };
    let config = Config::builder().max_message_size(4096).max_frame_size(2048).build().unwrap();
    let offer = if control & 1 == 0 {
        "permessage-deflate; client_max_window_bits"
    } else {
        "permessage-deflate; client_no_context_takeover; server_no_context_takeover"
    };
    let params = DeflateConfig::default().accept_offers(&parse_extensions(&[offer]).unwrap()).unwrap();
    let mut conn = Connection::new(Role::Server, config, if control & 2 == 0 { params } else { None });
    let step = usize::from(control >> 2).max(1);
    let mut out = Vec::new();
    for piece in data.chunks(step) {
        conn.receive(piece);
        while let Some(event) = conn.poll_event() {
            match event {
                Event::Message(m) => {
                    assert!(m.len() <= 4096);
                    let _ = conn.send(&m);
                }
                Event::Failed(e) => assert!(conn.state() == State::Closed, "{e}"),
                _ => {}
            }
        }
        conn.poll_transmit(&mut out);
        out.clear();
    }
    conn.receive_eof();
});
