//! A client core against a server core, in memory: every close-code rule,
//! every row of the bad-input table that frames can reach, limits at and one
//! past their value.

use std::time::{Duration, Instant};

use bytes::Bytes;

use super::*;
use crate::config::Config;
use crate::deflate::DeflateConfig;
use crate::error::{ProtocolError, SendError};
use crate::frame::{CloseCode, apply_mask};
use crate::handshake::Extension;
use crate::message::{CloseFrame, Message, Utf8Bytes};

fn transfer(from: &mut Connection, to: &mut Connection) -> usize {
    let mut wire = Vec::new();
    from.poll_transmit(&mut wire);
    to.receive(&wire);
    wire.len()
}

fn events(c: &mut Connection) -> Vec<Event> {
    std::iter::from_fn(|| c.poll_event()).collect()
}

fn pair_with(config: Config) -> (Connection, Connection) {
    (
        Connection::new(Role::Client, config.clone(), None),
        Connection::new(Role::Server, config, None),
    )
}

fn pair() -> (Connection, Connection) {
    pair_with(Config::default())
}

/// A raw frame as a client would send it (masked), with free choice of bits.
fn raw(first_byte: u8, payload: &[u8], masked: bool) -> Vec<u8> {
    let mut out = vec![first_byte];
    let mask_bit = if masked { 0x80 } else { 0 };
    match payload.len() {
        n @ 0..=125 => out.push(mask_bit | n as u8),
        n @ 126..=65535 => {
            out.push(mask_bit | 126);
            out.extend_from_slice(&(n as u16).to_be_bytes());
        }
        n => {
            out.push(mask_bit | 127);
            out.extend_from_slice(&(n as u64).to_be_bytes());
        }
    }
    let start = out.len();
    if masked {
        out.extend_from_slice(&[0x12, 0x34, 0x56, 0x78]);
    }
    out.extend_from_slice(payload);
    if masked {
        apply_mask(&mut out[start + 4..], [0x12, 0x34, 0x56, 0x78], 0);
    }
    out
}

/// Feeds `bytes` to a fresh server and returns the close code it fails
/// with, checking that the Close frame it queued carries that code.
fn server_failure(config: Config, bytes: &[u8]) -> (ProtocolError, CloseCode) {
    let (mut client, mut server) = pair_with(config);
    server.receive(bytes);
    let ev = events(&mut server);
    let Some(Event::Failed(err)) = ev.last().cloned() else {
        panic!("no failure: {ev:?}")
    };
    assert_eq!(server.state(), State::Closed);
    transfer(&mut server, &mut client);
    let sent = events(&mut client);
    let code = match sent.as_slice() {
        [Event::Close(Some(CloseFrame { code, .. }))] => *code,
        other => panic!("server sent {other:?}"),
    };
    assert_eq!(code, err.close_code());
    (err, code)
}

#[test]
fn text_and_binary_round_trip_both_ways() {
    let (mut c, mut s) = pair();
    c.send(&Message::text("héllo")).unwrap();
    c.send(&Message::binary(vec![0u8, 1, 2, 255])).unwrap();
    transfer(&mut c, &mut s);
    assert_eq!(
        events(&mut s),
        [
            Event::Message(Message::text("héllo")),
            Event::Message(Message::binary(vec![0u8, 1, 2, 255]))
        ]
    );
    s.send(&Message::text("")).unwrap();
    s.send(&Message::binary(vec![7u8; 70_000])).unwrap();
    transfer(&mut s, &mut c);
    assert_eq!(
        events(&mut c),
        [
            Event::Message(Message::text("")),
            Event::Message(Message::binary(vec![7u8; 70_000]))
        ]
    );
}

#[test]
fn input_split_at_every_byte_assembles_the_same() {
    let (mut c, _) = pair();
    c.send(&Message::text("split me κόσμε")).unwrap();
    c.send_fragment(MessageKind::Binary, b"ab", false).unwrap();
    c.ping(b"p").unwrap();
    c.send_fragment(MessageKind::Binary, b"cd", true).unwrap();
    let mut wire = Vec::new();
    c.poll_transmit(&mut wire);
    let expected = [
        Event::Message(Message::text("split me κόσμε")),
        Event::Ping(Bytes::from_static(b"p")),
        Event::Message(Message::binary(b"abcd".to_vec())),
    ];
    for chunk in [1, 2, 3, 5, 7, 13] {
        let mut s = Connection::new(Role::Server, Config::default(), None);
        for piece in wire.chunks(chunk) {
            s.receive(piece);
        }
        assert_eq!(events(&mut s), expected, "chunk {chunk}");
    }
}

#[test]
fn fragmented_message_with_interleaved_pings() {
    let (mut c, mut s) = pair();
    c.send_fragment(MessageKind::Text, "frag".as_bytes(), false)
        .unwrap();
    c.ping(b"1").unwrap();
    c.send_fragment(MessageKind::Text, "ment".as_bytes(), false)
        .unwrap();
    c.ping(b"2").unwrap();
    c.send_fragment(MessageKind::Text, "ed".as_bytes(), true)
        .unwrap();
    transfer(&mut c, &mut s);
    assert_eq!(
        events(&mut s),
        [
            Event::Ping(Bytes::from_static(b"1")),
            Event::Ping(Bytes::from_static(b"2")),
            Event::Message(Message::text("fragmented")),
        ]
    );
    // Both pings were answered, in order.
    transfer(&mut s, &mut c);
    assert_eq!(
        events(&mut c),
        [
            Event::Pong(Bytes::from_static(b"1")),
            Event::Pong(Bytes::from_static(b"2"))
        ]
    );
}

#[test]
fn sending_a_whole_message_inside_a_fragmented_one_is_refused() {
    let (mut c, _) = pair();
    c.send_fragment(MessageKind::Binary, b"a", false).unwrap();
    assert!(matches!(
        c.send(&Message::text("x")),
        Err(SendError::Fragmentation(_))
    ));
    c.send_fragment(MessageKind::Binary, b"b", true).unwrap();
    c.send(&Message::text("x")).unwrap();
    assert_eq!(
        c.send_fragment(MessageKind::Text, b"\xff", true),
        Err(SendError::InvalidUtf8)
    );
}

#[test]
fn closing_handshake_initiated_by_the_client() {
    let (mut c, mut s) = pair();
    let now = Instant::now();
    c.close(now, CloseCode(4000), "bye").unwrap();
    assert_eq!(c.state(), State::CloseSent);
    assert_eq!(c.send(&Message::text("late")), Err(SendError::Closed));
    assert_eq!(c.poll_timeout(), Some(now + Duration::from_secs(10)));
    transfer(&mut c, &mut s);
    let close = CloseFrame {
        code: CloseCode(4000),
        reason: Utf8Bytes::from("bye"),
    };
    assert_eq!(events(&mut s), [Event::Close(Some(close.clone()))]);
    assert_eq!(s.state(), State::Closed);
    transfer(&mut s, &mut c);
    assert_eq!(
        events(&mut c),
        [Event::Close(Some(close))],
        "code and reason echoed"
    );
    assert_eq!(c.state(), State::Closed);
    assert_eq!(c.poll_timeout(), None);
}

#[test]
fn messages_in_flight_during_close_are_delivered() {
    let (mut c, mut s) = pair();
    s.send(&Message::text("before close")).unwrap();
    c.close(Instant::now(), CloseCode::NORMAL, "").unwrap();
    transfer(&mut s, &mut c);
    assert_eq!(
        events(&mut c),
        [Event::Message(Message::text("before close"))]
    );
    assert_eq!(c.state(), State::CloseSent);
}

#[test]
fn empty_close_is_answered_with_an_empty_close() {
    let (mut c, mut s) = pair();
    s.receive(&raw(0x88, b"", true));
    assert_eq!(events(&mut s), [Event::Close(None)]);
    transfer(&mut s, &mut c);
    assert_eq!(events(&mut c), [Event::Close(None)]);
}

#[test]
fn close_timeout_fails_the_connection() {
    let (mut c, _) = pair();
    let now = Instant::now();
    c.close(now, CloseCode::NORMAL, "").unwrap();
    c.handle_timeout(now + Duration::from_secs(9));
    assert_eq!(c.state(), State::CloseSent);
    c.handle_timeout(now + Duration::from_secs(10));
    assert_eq!(c.state(), State::Closed);
    assert_eq!(events(&mut c), [Event::Failed(ProtocolError::CloseTimeout)]);
}

#[test]
fn eof_before_close_is_abnormal() {
    let (_, mut s) = pair();
    s.receive_eof();
    let ev = events(&mut s);
    assert_eq!(ev, [Event::Failed(ProtocolError::Eof)]);
    assert_eq!(ProtocolError::Eof.close_code(), CloseCode::ABNORMAL);
    assert_eq!(s.pending_transmit(), 0, "1006 is never sent");
}

#[test]
fn every_close_code_rule() {
    for code in 0u16..=5000 {
        let mut payload = code.to_be_bytes().to_vec();
        payload.extend_from_slice(b"r");
        let (mut c, mut s) = pair();
        s.receive(&raw(0x88, &payload, true));
        let ev = events(&mut s);
        if matches!(code, 1000..=1003 | 1007..=1014 | 3000..=4999) {
            assert!(
                matches!(&ev[..], [Event::Close(Some(f))] if f.code.0 == code),
                "{code}: {ev:?}"
            );
            transfer(&mut s, &mut c);
            assert!(
                matches!(&events(&mut c)[..], [Event::Close(Some(f))] if f.code.0 == code),
                "{code} echoed"
            );
        } else {
            assert_eq!(
                ev,
                [Event::Failed(ProtocolError::InvalidCloseCode(code))],
                "{code}"
            );
        }
    }
    // Codes we may not send are refused before anything is queued.
    let (mut c, _) = pair();
    for code in [0, 999, 1005, 1006, 1015, 2000, 5000] {
        assert_eq!(
            c.close(Instant::now(), CloseCode(code), ""),
            Err(SendError::InvalidCloseCode(code))
        );
    }
    assert_eq!(
        c.close(Instant::now(), CloseCode::NORMAL, &"x".repeat(124)),
        Err(SendError::ReasonTooLong(124))
    );
    assert_eq!(c.pending_transmit(), 0);
}

#[test]
fn bad_close_payloads() {
    let (e, code) = server_failure(Config::default(), &raw(0x88, &[0x03], true));
    assert_eq!(
        (e, code),
        (ProtocolError::TruncatedClose, CloseCode::PROTOCOL_ERROR)
    );
    let (e, code) = server_failure(Config::default(), &raw(0x88, b"\x03\xe8\xff\xfe", true));
    assert_eq!(
        (e, code),
        (
            ProtocolError::InvalidCloseReason,
            CloseCode::INVALID_PAYLOAD
        )
    );
}

#[test]
fn bad_input_table_frame_rows() {
    let d = Config::default;
    let p = CloseCode::PROTOCOL_ERROR;
    // Unmasked client frame.
    assert_eq!(
        server_failure(d(), &raw(0x81, b"hi", false)),
        (ProtocolError::UnmaskedFrame, p)
    );
    // RSV bits without an extension (RSV1 too, since deflate is not negotiated).
    for bits in [0x40u8, 0x20, 0x10] {
        assert_eq!(server_failure(d(), &raw(0x81 | bits, b"hi", true)).1, p);
    }
    // Reserved opcodes.
    for op in [3u8, 4, 5, 6, 7, 0xB, 0xC, 0xD, 0xE, 0xF] {
        assert_eq!(
            server_failure(d(), &raw(0x80 | op, b"", true)).1,
            p,
            "opcode {op}"
        );
    }
    // Bad control frames: fragmented, too long.
    assert_eq!(server_failure(d(), &raw(0x09, b"", true)).1, p);
    assert_eq!(server_failure(d(), &raw(0x89, &[0u8; 126], true)).1, p);
    // Continuation with nothing to continue; new message inside a fragmented one.
    assert_eq!(
        server_failure(d(), &raw(0x80, b"x", true)),
        (ProtocolError::UnexpectedContinuation, p)
    );
    let mut two = raw(0x01, b"a", true);
    two.extend(raw(0x81, b"b", true));
    assert_eq!(
        server_failure(d(), &two),
        (ProtocolError::ExpectedContinuation, p)
    );
    // Invalid UTF-8, whole and split across fragments.
    assert_eq!(
        server_failure(d(), &raw(0x81, b"\xce\xba\xff", true)).1,
        CloseCode::INVALID_PAYLOAD
    );
    let mut split = raw(0x01, b"\xe2\x82", true);
    split.extend(raw(0x80, b"\x28", true));
    assert_eq!(
        server_failure(d(), &split),
        (ProtocolError::InvalidUtf8, CloseCode::INVALID_PAYLOAD)
    );
    // A server that masks is refused by a client.
    let mut c = Connection::new(Role::Client, d(), None);
    c.receive(&raw(0x81, b"hi", true));
    assert_eq!(events(&mut c), [Event::Failed(ProtocolError::MaskedFrame)]);
}

#[test]
fn invalid_utf8_fails_before_the_message_ends() {
    let (_, mut s) = pair();
    // First fragment has an invalid sequence; the message never finishes.
    s.receive(&raw(0x01, b"ok\xed\xa0\x80", true));
    assert_eq!(events(&mut s), [Event::Failed(ProtocolError::InvalidUtf8)]);
    // And within a single frame whose payload arrives in pieces.
    let (_, mut s) = pair();
    let frame = raw(0x81, b"valid then \xf4\x90\x80\x80 more", true);
    s.receive(&frame[..20]);
    assert_eq!(events(&mut s), [Event::Failed(ProtocolError::InvalidUtf8)]);
}

#[test]
fn frame_and_message_limits_at_and_one_past() {
    let config = Config::builder()
        .max_message_size(1000)
        .max_frame_size(600)
        .build()
        .unwrap();
    // A frame at the limit passes; one byte more is refused.
    let (_, mut s) = pair_with(config.clone());
    s.receive(&raw(0x82, &[1u8; 600], true));
    assert!(matches!(&events(&mut s)[..], [Event::Message(m)] if m.len() == 600));
    let (e, code) = server_failure(config.clone(), &raw(0x82, &[1u8; 601], true));
    assert_eq!(
        (e, code),
        (
            ProtocolError::FrameTooLarge { len: 601, max: 600 },
            CloseCode::MESSAGE_TOO_BIG
        )
    );
    // A message at the limit passes; one byte more is refused at the header.
    let (_, mut s) = pair_with(config.clone());
    let mut at = raw(0x02, &[1u8; 500], true);
    at.extend(raw(0x80, &[2u8; 500], true));
    s.receive(&at);
    assert!(matches!(&events(&mut s)[..], [Event::Message(m)] if m.len() == 1000));
    let mut past = raw(0x02, &[1u8; 500], true);
    past.extend(raw(0x80, &[2u8; 501], true));
    assert_eq!(server_failure(config, &past).1, CloseCode::MESSAGE_TOO_BIG);
}

#[test]
fn oversized_declared_length_is_refused_before_any_payload_arrives() {
    // A header claiming 2^62 bytes, with no payload behind it.
    let mut header = vec![0x82, 0x80 | 127];
    header.extend_from_slice(&(1u64 << 62).to_be_bytes());
    header.extend_from_slice(&[0, 0, 0, 0]);
    let (e, code) = server_failure(Config::default(), &header);
    assert!(matches!(e, ProtocolError::FrameTooLarge { .. }));
    assert_eq!(code, CloseCode::MESSAGE_TOO_BIG);
}

#[test]
fn tiny_fragment_flood_pins_only_its_bytes() {
    let (_, mut s) = pair();
    s.receive(&raw(0x02, b"", true));
    for _ in 0..10_000 {
        s.receive(&raw(0x00, b"x", true));
    }
    assert!(events(&mut s).is_empty());
    // 10,000 bytes received: the buffer holds them plus at most as much again.
    assert!(
        s.assembler_capacity() <= 2 * 10_000 + 64,
        "{}",
        s.assembler_capacity()
    );
    s.receive(&raw(0x80, b"", true));
    assert!(matches!(&events(&mut s)[..], [Event::Message(m)] if m.len() == 10_000));
}

#[test]
fn pings_are_answered_with_the_same_payload_and_not_after_close() {
    let (mut c, mut s) = pair();
    s.receive(&raw(0x89, b"abc", true));
    transfer(&mut s, &mut c);
    assert_eq!(events(&mut c), [Event::Pong(Bytes::from_static(b"abc"))]);
    s.close(Instant::now(), CloseCode::NORMAL, "").unwrap();
    s.receive(&raw(0x89, b"late", true));
    let mut wire = Vec::new();
    s.poll_transmit(&mut wire);
    c.receive(&wire);
    assert_eq!(events(&mut c).len(), 1, "only the close, no pong");
    let (mut c, _) = pair();
    assert_eq!(c.ping(&[0u8; 126]), Err(SendError::ControlTooLong(126)));
}

#[test]
fn input_after_close_is_ignored() {
    let (_, mut s) = pair();
    let mut bytes = raw(0x88, &1000u16.to_be_bytes(), true);
    bytes.extend(raw(0x81, b"after", true));
    bytes.extend([0xff; 10]);
    s.receive(&bytes);
    assert!(matches!(&events(&mut s)[..], [Event::Close(Some(_))]));
}

fn deflate_pair(client: DeflateConfig, server: DeflateConfig) -> (Connection, Connection) {
    let offer = crate::handshake::parse_extensions(&[&client.client_offer()]).unwrap();
    let params = server.accept_offers(&offer).unwrap().unwrap();
    let response: Vec<Extension> =
        crate::handshake::parse_extensions(&[&params.response_header()]).unwrap();
    let client_params = client.accept_response(&response).unwrap().unwrap();
    let config = Config::default();
    (
        Connection::new(Role::Client, config.clone(), Some(client_params)),
        Connection::new(Role::Server, config, Some(params)),
    )
}

#[test]
fn compressed_messages_round_trip_in_every_configuration() {
    let text = "a compressible message, a compressible message, a compressible message";
    for (snct, cnct) in [(false, false), (true, false), (false, true), (true, true)] {
        for bits in [8u8, 9, 11, 15] {
            let cfg = DeflateConfig::default()
                .server_no_context_takeover(snct)
                .client_no_context_takeover(cnct)
                .server_max_window_bits(bits)
                .client_max_window_bits(bits);
            let (mut c, mut s) = deflate_pair(cfg.clone(), DeflateConfig::default());
            for _ in 0..3 {
                c.send(&Message::text(text)).unwrap();
                let n = transfer(&mut c, &mut s);
                if bits > 8 {
                    assert!(n < text.len(), "compressed: {n} bytes");
                }
                assert_eq!(events(&mut s), [Event::Message(Message::text(text))]);
                s.send(&Message::binary(vec![9u8; 50_000])).unwrap();
                transfer(&mut s, &mut c);
                assert_eq!(
                    events(&mut c),
                    [Event::Message(Message::binary(vec![9u8; 50_000]))]
                );
            }
            // Without context takeover nothing stays allocated between messages.
            if snct && cnct {
                assert!(!c.has_compression_state() && !s.has_compression_state());
            }
        }
    }
}

#[test]
fn small_and_opted_out_messages_go_uncompressed() {
    let (mut c, mut s) = deflate_pair(DeflateConfig::default(), DeflateConfig::default());
    c.send(&Message::text("tiny")).unwrap();
    let mut wire = Vec::new();
    c.poll_transmit(&mut wire);
    assert_eq!(wire[0] & 0x40, 0, "below the threshold: RSV1 clear");
    s.receive(&wire);
    let secret = Message::text("secret=".repeat(20));
    c.send_uncompressed(&secret).unwrap();
    let mut wire = Vec::new();
    c.poll_transmit(&mut wire);
    assert_eq!(wire[0] & 0x40, 0, "opted out: RSV1 clear");
    s.receive(&wire);
    assert_eq!(
        events(&mut s),
        [
            Event::Message(Message::text("tiny")),
            Event::Message(secret)
        ]
    );
}

#[test]
fn deflate_protocol_errors() {
    let (_, mut s) = deflate_pair(DeflateConfig::default(), DeflateConfig::default());
    // RSV1 on a continuation frame.
    let mut bytes = raw(0x42, b"\x00", true);
    bytes.extend(raw(0xC0, b"\x00", true));
    s.receive(&bytes);
    assert!(matches!(
        &events(&mut s)[..],
        [Event::Failed(ProtocolError::ReservedBits(_))]
    ));
    // RSV1 on a control frame.
    let (_, mut s) = deflate_pair(DeflateConfig::default(), DeflateConfig::default());
    s.receive(&raw(0xC9, b"", true));
    assert!(matches!(
        &events(&mut s)[..],
        [Event::Failed(ProtocolError::ReservedBits(_))]
    ));
    // Corrupt compressed data closes with 1007.
    let (_, mut s) = deflate_pair(DeflateConfig::default(), DeflateConfig::default());
    s.receive(&raw(0xC1, &[0xff, 0xff, 0xff, 0xff], true));
    let ev = events(&mut s);
    assert_eq!(ev, [Event::Failed(ProtocolError::CorruptDeflate)]);
    assert_eq!(
        ProtocolError::CorruptDeflate.close_code(),
        CloseCode::INVALID_PAYLOAD
    );
}

#[test]
fn inflated_size_is_bounded_while_inflating() {
    let config = Config::builder().max_size(64 << 10).build().unwrap();
    let params = DeflateConfig::default()
        .accept_offers(&crate::handshake::parse_extensions(&["permessage-deflate"]).unwrap())
        .unwrap();
    let mut s = Connection::new(Role::Server, config.clone(), params);
    let mut c = Connection::new(Role::Client, Config::default(), params);
    c.send(&Message::binary(vec![0u8; 1 << 20])).unwrap();
    let mut wire = Vec::new();
    c.poll_transmit(&mut wire);
    assert!(
        wire.len() < 16 << 10,
        "1 MiB of zeros compresses to {} bytes",
        wire.len()
    );
    s.receive(&wire);
    assert_eq!(
        events(&mut s),
        [Event::Failed(ProtocolError::MessageTooLarge {
            max: 64 << 10
        })]
    );
}

#[test]
fn a_message_before_an_error_can_still_be_answered() {
    // Autobahn 3.2: a text message, then a frame with RSV2, then a ping, all
    // in one read. The echo of the message must go out before the close.
    let (mut c, mut s) = pair();
    let mut bytes = raw(0x81, b"Hello", true);
    bytes.extend(raw(0xA1, b"bad", true));
    bytes.extend(raw(0x89, b"p", true));
    s.receive(&bytes);
    assert_eq!(
        s.state(),
        State::Open,
        "the failure waits for earlier events"
    );
    assert_eq!(s.poll_event(), Some(Event::Message(Message::text("Hello"))));
    s.send(&Message::text("Hello")).unwrap();
    assert!(matches!(
        s.poll_event(),
        Some(Event::Failed(ProtocolError::ReservedBits(_)))
    ));
    assert_eq!(s.state(), State::Closed);
    assert_eq!(s.poll_event(), None, "the ping after the error is not read");
    transfer(&mut s, &mut c);
    let ev = events(&mut c);
    assert_eq!(ev[0], Event::Message(Message::text("Hello")));
    assert!(
        matches!(&ev[1], Event::Close(Some(f)) if f.code == CloseCode::PROTOCOL_ERROR),
        "{ev:?}"
    );
    assert_eq!(ev.len(), 2);
}

#[test]
fn a_message_before_a_close_can_still_be_answered() {
    let (mut c, mut s) = pair();
    let mut bytes = raw(0x81, b"last", true);
    bytes.extend(raw(0x88, &1000u16.to_be_bytes(), true));
    s.receive(&bytes);
    assert_eq!(s.poll_event(), Some(Event::Message(Message::text("last"))));
    s.send(&Message::text("reply")).unwrap();
    assert!(matches!(s.poll_event(), Some(Event::Close(Some(_)))));
    transfer(&mut s, &mut c);
    let ev = events(&mut c);
    assert_eq!(ev[0], Event::Message(Message::text("reply")));
    assert!(matches!(&ev[1], Event::Close(Some(f)) if f.code == CloseCode::NORMAL));
}

#[test]
fn compressed_frames_may_exceed_the_frame_limit_by_deflate_expansion_only() {
    let config = Config::builder().max_size(1000).build().unwrap();
    let params = DeflateConfig::default()
        .accept_offers(&crate::handshake::parse_extensions(&["permessage-deflate"]).unwrap())
        .unwrap();
    // Incompressible 1000 bytes compress to a little more than 1000.
    let mut c = Connection::new(Role::Client, Config::default(), params);
    let noise: Vec<u8> = (0..1000).map(|_| rand::random::<u8>()).collect();
    c.send(&Message::binary(noise.clone())).unwrap();
    let mut wire = Vec::new();
    c.poll_transmit(&mut wire);
    assert!(wire.len() > 1000 + 6, "expanded to {}", wire.len());
    let mut s = Connection::new(Role::Server, config.clone(), params);
    s.receive(&wire);
    assert_eq!(events(&mut s), [Event::Message(Message::binary(noise))]);
    // Far past the allowance is still refused at the header.
    let mut s = Connection::new(Role::Server, config, params);
    s.receive(&raw(0xC2, &[0u8; 3000], true));
    assert!(matches!(
        &events(&mut s)[..],
        [Event::Failed(ProtocolError::FrameTooLarge { .. })]
    ));
}

#[test]
fn prepared_frame_is_copied_by_a_server_and_masked_by_a_client() {
    let (mut client, mut server) = pair();
    let frame = crate::frame::PreparedFrame::new(&Message::text("to everyone"));
    server.send_prepared(&frame).unwrap();
    let mut wire = Vec::new();
    server.poll_transmit(&mut wire);
    assert_eq!(
        wire,
        frame.as_bytes(),
        "a server writes the shared bytes as they are"
    );
    client.receive(&wire);
    assert_eq!(
        events(&mut client),
        vec![Event::Message(Message::text("to everyone"))]
    );

    client.send_prepared(&frame).unwrap();
    let mut wire = Vec::new();
    client.poll_transmit(&mut wire);
    assert_ne!(wire, frame.as_bytes(), "a client masks the payload");
    server.receive(&wire);
    assert_eq!(
        events(&mut server),
        vec![Event::Message(Message::text("to everyone"))]
    );

    client
        .send_fragment(MessageKind::Text, b"part", false)
        .unwrap();
    assert!(matches!(
        client.send_prepared(&frame),
        Err(SendError::Fragmentation(_))
    ));
}

#[test]
fn joined_prepared_frames_are_copied_by_a_server_and_masked_one_by_one_by_a_client() {
    let (mut client, mut server) = pair();
    let a = crate::frame::PreparedFrame::new(&Message::text("first"));
    let b = crate::frame::PreparedFrame::new(&Message::binary(vec![7u8; 300]));
    let both = crate::frame::PreparedFrames::join([&a, &b]);
    let expected = vec![
        Event::Message(Message::text("first")),
        Event::Message(Message::binary(vec![7u8; 300])),
    ];

    server.send_prepared_frames(&both).unwrap();
    let mut wire = Vec::new();
    server.poll_transmit(&mut wire);
    assert_eq!(
        wire,
        both.as_bytes(),
        "a server writes the joined bytes as they are"
    );
    client.receive(&wire);
    assert_eq!(events(&mut client), expected);

    client.send_prepared_frames(&both).unwrap();
    let mut wire = Vec::new();
    client.poll_transmit(&mut wire);
    assert_eq!(
        wire.len(),
        both.len() + 2 * 4,
        "each frame masked, with its key"
    );
    server.receive(&wire);
    assert_eq!(events(&mut server), expected);

    server
        .send_fragment(MessageKind::Text, b"part", false)
        .unwrap();
    assert!(matches!(
        server.send_prepared_frames(&both),
        Err(SendError::Fragmentation(_))
    ));
}

// Keepalive and the close timeout, with time as an argument: no socket, no
// runtime, no clock.

const KEEPALIVE: Keepalive = Keepalive {
    interval: Duration::from_secs(10),
    timeout: Duration::from_secs(5),
};

fn queued(c: &mut Connection) -> bool {
    let mut wire = Vec::new();
    c.poll_transmit(&mut wire)
}

#[test]
fn keepalive_pings_on_time_and_measures_the_round_trip() {
    let t0 = Instant::now();
    let (mut client, mut server) = pair();
    assert_eq!(client.poll_timeout(), None);
    client.set_keepalive(Some(KEEPALIVE), t0);
    for round in 1..=3u32 {
        let due = t0 + KEEPALIVE.interval * round;
        assert_eq!(client.poll_timeout(), Some(due), "round {round}");
        // Early: nothing is sent.
        client.handle_timeout(due - Duration::from_millis(1));
        assert!(!queued(&mut client));
        client.handle_timeout(due);
        // Now the pong's deadline is the next one.
        assert_eq!(client.poll_timeout(), Some(due + KEEPALIVE.timeout));
        transfer(&mut client, &mut server);
        let ping = match events(&mut server).as_slice() {
            [Event::Ping(p)] => p.clone(),
            other => panic!("server got {other:?}"),
        };
        assert_eq!(ping[..], u64::from(round).to_be_bytes());
        transfer(&mut server, &mut client);
        assert_eq!(events(&mut client), [Event::Pong(ping)]);
        client.measure_rtt(due + Duration::from_millis(30));
        assert_eq!(client.rtt(), Some(Duration::from_millis(30)));
        // Answered: the next ping, not the pong deadline, is due.
        assert_eq!(client.poll_timeout(), Some(due + KEEPALIVE.interval));
    }
}

#[test]
fn a_pong_that_does_not_echo_the_ping_does_not_answer_it() {
    let t0 = Instant::now();
    let (mut client, mut server) = pair();
    client.set_keepalive(Some(KEEPALIVE), t0);
    client.handle_timeout(t0 + KEEPALIVE.interval);
    server.pong(b"unsolicited").unwrap();
    transfer(&mut server, &mut client);
    events(&mut client);
    assert_eq!(
        client.poll_timeout(),
        Some(t0 + KEEPALIVE.interval + KEEPALIVE.timeout)
    );
    assert_eq!(client.rtt(), None);
}

#[test]
fn a_pong_that_never_comes_fails_the_connection_with_1011() {
    let t0 = Instant::now();
    let (mut client, mut server) = pair();
    client.set_keepalive(Some(KEEPALIVE), t0);
    let ping_at = t0 + KEEPALIVE.interval;
    client.handle_timeout(ping_at);
    let pong_deadline = ping_at + KEEPALIVE.timeout;
    client.handle_timeout(pong_deadline - Duration::from_millis(1));
    assert!(events(&mut client).is_empty());
    assert_eq!(client.state(), State::Open);
    client.handle_timeout(pong_deadline);
    assert_eq!(
        events(&mut client),
        [Event::Failed(ProtocolError::KeepaliveTimeout)]
    );
    assert_eq!(client.state(), State::Closed);
    assert_eq!(client.poll_timeout(), None);
    // On the wire: the ping, then a Close with 1011.
    transfer(&mut client, &mut server);
    match events(&mut server).as_slice() {
        [Event::Ping(_), Event::Close(Some(f))] => assert_eq!(f.code, CloseCode::INTERNAL_ERROR),
        other => panic!("server got {other:?}"),
    }
}

#[test]
fn a_close_that_never_completes_fails_at_the_close_timeout() {
    let t0 = Instant::now();
    let config = Config::builder()
        .close_timeout(Duration::from_secs(30))
        .build()
        .unwrap();
    let (mut client, mut server) = pair_with(config);
    client.set_keepalive(Some(KEEPALIVE), t0);
    let closing_at = t0 + Duration::from_secs(1);
    client.close(closing_at, CloseCode::NORMAL, "bye").unwrap();
    // Closing: the close timeout replaces the keepalive deadlines.
    let deadline = closing_at + Duration::from_secs(30);
    assert_eq!(client.poll_timeout(), Some(deadline));
    // No ping is sent while closing, even past the ping's time.
    client.handle_timeout(t0 + KEEPALIVE.interval - Duration::from_millis(1));
    transfer(&mut client, &mut server);
    match events(&mut server).as_slice() {
        [Event::Close(Some(f))] => assert_eq!(f.code, CloseCode::NORMAL),
        other => panic!("server got {other:?}"),
    }
    // The server's reply is lost: the timeout fails the connection.
    client.handle_timeout(deadline - Duration::from_millis(1));
    assert_eq!(client.state(), State::CloseSent);
    client.handle_timeout(deadline);
    assert_eq!(
        events(&mut client),
        [Event::Failed(ProtocolError::CloseTimeout)]
    );
    assert_eq!(client.state(), State::Closed);
    assert_eq!(client.poll_timeout(), None);
}

#[test]
fn a_close_answered_in_time_cancels_the_deadline() {
    let t0 = Instant::now();
    let (mut client, mut server) = pair();
    client.set_keepalive(Some(KEEPALIVE), t0);
    client.close(t0, CloseCode::NORMAL, "").unwrap();
    transfer(&mut client, &mut server);
    events(&mut server);
    transfer(&mut server, &mut client);
    assert!(matches!(events(&mut client).as_slice(), [Event::Close(_)]));
    assert_eq!(client.poll_timeout(), None);
    client.handle_timeout(t0 + Duration::from_secs(3600));
    assert!(events(&mut client).is_empty());
}
