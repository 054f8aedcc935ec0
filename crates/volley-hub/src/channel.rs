//! Channel names: `[$][namespace:]name` (docs/protocol.md §8.1).

/// The longest channel name, in bytes.
pub(crate) const MAX_CHANNEL_LEN: usize = 255;

/// A channel name split into its parts.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct ChannelName<'a> {
    /// The namespace; `""` for the default namespace.
    pub namespace: &'a str,
    /// Whether the channel is private (a leading `$`).
    pub private: bool,
}

/// Parses a channel name; `None` when it breaks the grammar.
pub(crate) fn parse(channel: &str) -> Option<ChannelName<'_>> {
    if channel.is_empty() || channel.len() > MAX_CHANNEL_LEN {
        return None;
    }
    let (private, rest) = match channel.strip_prefix('$') {
        Some(rest) => (true, rest),
        None => (false, channel),
    };
    let (namespace, name) = match rest.split_once(':') {
        Some((ns, name)) => {
            if !valid_namespace(ns) {
                return None;
            }
            (ns, name)
        }
        None => ("", rest),
    };
    let name_ok = !name.is_empty()
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"_-.=@/".contains(&b));
    name_ok.then_some(ChannelName { namespace, private })
}

/// Whether `ns` is a valid namespace name.
pub(crate) fn valid_namespace(ns: &str) -> bool {
    !ns.is_empty()
        && ns.len() <= 64
        && ns
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-')
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_grammar_table() {
        let ok = |c, ns, private| {
            assert_eq!(
                parse(c),
                Some(ChannelName {
                    namespace: ns,
                    private
                }),
                "{c}"
            )
        };
        ok("news", "", false);
        ok("chat:lobby", "chat", false);
        ok("chat:room/7.general", "chat", false);
        ok("$orders:42", "orders", true);
        ok("$inbox", "", true);
        for bad in ["chat:a:b", "chat:", ":x", "ch at", "$", "", "a:b c", "é"] {
            assert_eq!(parse(bad), None, "{bad}");
        }
        assert!(parse(&"a".repeat(255)).is_some());
        assert!(parse(&"a".repeat(256)).is_none());
    }
}
