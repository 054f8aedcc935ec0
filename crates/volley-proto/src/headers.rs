//! The grammar of the header values the opening handshake and the
//! extensions share (RFC 6455 §9.1, RFC 7230 tokens): extension lists with
//! their parameters, subprotocol lists, token lists. It knows nothing of
//! either role's handshake nor of any extension, so both can build on it.

/// One extension of a `Sec-WebSocket-Extensions` header, with its parameters.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Extension {
    /// The extension token.
    pub name: String,
    /// Parameters in order; quoted values are unquoted.
    pub params: Vec<(String, Option<String>)>,
}

/// A `Sec-WebSocket-Extensions` or `Sec-WebSocket-Protocol` header is malformed.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("malformed {header} header")]
pub struct MalformedHeader {
    /// Which header.
    pub header: &'static str,
}

/// Parses `Sec-WebSocket-Extensions` values (RFC 6455 §9.1): a comma-separated
/// list of `name *(";" param ["=" (token | quoted-string)])`.
pub fn parse_extensions(values: &[&str]) -> Result<Vec<Extension>, MalformedHeader> {
    let bad = MalformedHeader {
        header: "Sec-WebSocket-Extensions",
    };
    let mut out = Vec::new();
    for value in values {
        for item in split_list(value).ok_or(bad.clone())? {
            let mut parts = split_outside_quotes(item, ';')
                .ok_or(bad.clone())?
                .into_iter();
            let name = parts.next().map(str::trim).unwrap_or_default();
            if !is_token(name) {
                return Err(bad);
            }
            let mut params = Vec::new();
            for part in parts {
                let (k, v) = match part.split_once('=') {
                    Some((k, v)) => (k.trim(), Some(v.trim())),
                    None => (part.trim(), None),
                };
                if !is_token(k) {
                    return Err(bad);
                }
                let v = match v {
                    None => None,
                    Some(v) => Some(unquote_token(v).ok_or(bad.clone())?),
                };
                params.push((k.to_owned(), v));
            }
            out.push(Extension {
                name: name.to_owned(),
                params,
            });
        }
    }
    Ok(out)
}

/// Parses `Sec-WebSocket-Protocol` values: a comma-separated list of tokens.
pub fn parse_protocols(values: &[&str]) -> Result<Vec<String>, MalformedHeader> {
    let bad = MalformedHeader {
        header: "Sec-WebSocket-Protocol",
    };
    let mut out = Vec::new();
    for value in values {
        for item in value.split(',') {
            let item = item.trim();
            if item.is_empty() {
                continue;
            }
            if !is_token(item) {
                return Err(bad);
            }
            out.push(item.to_owned());
        }
    }
    Ok(out)
}

/// Whether a comma-separated header value contains `token`, ignoring case.
pub(crate) fn header_has_token(value: &[u8], token: &str) -> bool {
    value
        .split(|&b| b == b',')
        .any(|t| t.trim_ascii().eq_ignore_ascii_case(token.as_bytes()))
}

/// Splits a list on commas outside quoted strings, dropping empty elements.
fn split_list(value: &str) -> Option<Vec<&str>> {
    Some(
        split_outside_quotes(value, ',')?
            .into_iter()
            .map(str::trim)
            .filter(|s| !s.is_empty())
            .collect(),
    )
}

/// Splits on `sep` outside double quotes; `None` if a quote is unterminated.
fn split_outside_quotes(value: &str, sep: char) -> Option<Vec<&str>> {
    let mut parts = Vec::new();
    let (mut start, mut quoted, mut escaped) = (0, false, false);
    for (i, c) in value.char_indices() {
        if escaped {
            escaped = false;
        } else if quoted && c == '\\' {
            escaped = true;
        } else if c == '"' {
            quoted = !quoted;
        } else if c == sep && !quoted {
            parts.push(&value[start..i]);
            start = i + 1;
        }
    }
    if quoted {
        return None;
    }
    parts.push(&value[start..]);
    Some(parts)
}

/// A token, or a quoted string whose content is a token (RFC 6455 §9.1).
fn unquote_token(v: &str) -> Option<String> {
    let inner = match v.strip_prefix('"') {
        Some(rest) => {
            let body = rest.strip_suffix('"')?;
            let mut s = String::with_capacity(body.len());
            let mut chars = body.chars();
            while let Some(c) = chars.next() {
                s.push(if c == '\\' { chars.next()? } else { c });
            }
            s
        }
        None => v.to_owned(),
    };
    is_token(&inner).then_some(inner)
}

/// RFC 7230 token.
fn is_token(s: &str) -> bool {
    !s.is_empty()
        && s.bytes().all(|b| {
            b.is_ascii_alphanumeric()
                || matches!(
                    b,
                    b'!' | b'#'
                        | b'$'
                        | b'%'
                        | b'&'
                        | b'\''
                        | b'*'
                        | b'+'
                        | b'-'
                        | b'.'
                        | b'^'
                        | b'_'
                        | b'`'
                        | b'|'
                        | b'~'
                )
        })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn extension_grammar() {
        let e = parse_extensions(&[
            "permessage-deflate; client_max_window_bits; server_max_window_bits=\"10\", x-foo",
            "bar;a=b",
        ])
        .unwrap();
        assert_eq!(e.len(), 3);
        assert_eq!(e[0].name, "permessage-deflate");
        assert_eq!(e[0].params[0], ("client_max_window_bits".into(), None));
        assert_eq!(
            e[0].params[1],
            ("server_max_window_bits".into(), Some("10".into()))
        );
        assert_eq!(e[2].params[0], ("a".into(), Some("b".into())));
        for bad in ["; a", "x; =1", "x; a=\"b c\"", "x; a=\"unterminated", "x y"] {
            assert!(parse_extensions(&[bad]).is_err(), "{bad}");
        }
    }

    #[test]
    fn protocol_lists() {
        assert_eq!(
            parse_protocols(&["chat, superchat", "v2"]).unwrap(),
            ["chat", "superchat", "v2"]
        );
        assert!(parse_protocols(&["a b"]).is_err());
        assert!(header_has_token(b"keep-alive, Upgrade", "upgrade"));
        assert!(!header_has_token(b"keep-alive", "upgrade"));
    }
}
