//! IMAP URLs of the delivery target: `imap[s]://user@host[:port][/MAILBOX]` (the server part
//! of RFC 5092, with RFC 8314's `imaps` for implicit TLS), and the mailbox name as the server
//! wants it on the wire (RFC 3501 §5.1.3's modified UTF-7).

use base64::Engine as _;

use super::ImapError;
use crate::url::percent_decode;

/// A parsed IMAP delivery URL: `imaps://user@imap.gmail.com/INBOX`.
///
/// User name and mailbox are percent-decoded (`%40` for `@`, `%2F` is kept as `/`, the
/// hierarchy separator of most servers, and spaces as `%20`). No password in the URL: it comes
/// through [`super::ImapAuth`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct ImapUrl {
    /// `imaps://`: TLS from the first byte (port 993). `imap://` is port 143 with STARTTLS.
    pub(crate) implicit_tls: bool,
    /// The login name (UTF-8), required to log in.
    pub(crate) user: Option<String>,
    /// The server's host name or IP address (without the brackets of an IPv6 literal); also the
    /// name the certificate is checked against.
    pub(crate) host: String,
    /// The TCP port: the URL's, or 993 (`imaps`) / 143 (`imap`).
    pub(crate) port: u16,
    /// The mailbox messages are appended to, in UTF-8 as the user wrote it (`INBOX` when the
    /// URL has no path).
    pub(crate) mailbox: String,
}

impl ImapUrl {
    /// Parses `imap://` and `imaps://` URLs. CR, LF and NUL are refused anywhere, before and
    /// after percent-decoding; so are a password in the URL, RFC 5092's `;AUTH=` and
    /// `;UIDVALIDITY=` parameters and queries, which a delivery target has no use for.
    pub(crate) fn parse(url: &str) -> Result<ImapUrl, ImapError> {
        let bad = |why: &str| ImapError::Url(format!("invalid IMAP URL {url:?}: {why}"));
        if url.bytes().any(|b| matches!(b, b'\r' | b'\n' | 0)) {
            return Err(bad("CR, LF and NUL are not allowed"));
        }
        let (implicit_tls, rest) = if let Some(r) = strip_prefix_ci(url, "imaps://") {
            (true, r)
        } else if let Some(r) = strip_prefix_ci(url, "imap://") {
            (false, r)
        } else {
            return Err(bad("it must start with imap:// or imaps://"));
        };
        if rest.contains('?') || rest.contains('#') {
            return Err(bad("queries and fragments are not understood"));
        }
        let (authority, path) = match rest.find('/') {
            Some(i) => (&rest[..i], &rest[i + 1..]),
            None => (rest, ""),
        };
        let (userinfo, hostport) = match authority.rsplit_once('@') {
            Some((u, h)) => (Some(u), h),
            None => (None, authority),
        };
        let user = match userinfo {
            None => None,
            Some(u) if u.contains(':') => {
                return Err(bad(
                    "a password does not belong in the URL; give it (or a token command) separately",
                ));
            }
            Some(u) if u.contains(';') => {
                return Err(bad(
                    ";AUTH= is not understood: the mechanism follows from the credentials given \
                     (a password: LOGIN; a token: OAUTHBEARER or XOAUTH2)",
                ));
            }
            Some(u) => {
                let u = percent_decode(u).map_err(|e| bad(&e))?;
                (!u.is_empty()).then_some(u)
            }
        };
        let (host, port) = if let Some(h) = hostport.strip_prefix('[') {
            let (h, after) = h
                .split_once(']')
                .ok_or_else(|| bad("unclosed [ in the host"))?;
            let port = match after {
                "" => None,
                p => Some(p.strip_prefix(':').ok_or_else(|| bad("junk after ]"))?),
            };
            (h.to_string(), port)
        } else {
            match hostport.rsplit_once(':') {
                Some((h, p)) => (h.to_string(), Some(p)),
                None => (hostport.to_string(), None),
            }
        };
        if host.is_empty() {
            return Err(bad("no host"));
        }
        let port = match port {
            None => {
                if implicit_tls {
                    993
                } else {
                    143
                }
            }
            Some(p) => p
                .parse::<u16>()
                .ok()
                .filter(|&p| p != 0)
                .ok_or_else(|| bad("the port is not a number from 1 to 65535"))?,
        };
        if path.contains(';') {
            return Err(bad(
                "URL parameters such as ;UIDVALIDITY= are not understood (write ; in a mailbox \
                 name as %3B)",
            ));
        }
        let path = path.trim_end_matches('/');
        let mailbox = if path.is_empty() {
            "INBOX".to_string()
        } else {
            percent_decode(path).map_err(|e| bad(&e))?
        };
        Ok(ImapUrl {
            implicit_tls,
            user,
            host,
            port,
            mailbox,
        })
    }
}

fn strip_prefix_ci<'a>(s: &'a str, prefix: &str) -> Option<&'a str> {
    let head = s.get(..prefix.len())?;
    head.eq_ignore_ascii_case(prefix)
        .then(|| &s[prefix.len()..])
}

/// RFC 3501 §5.1.3's modified UTF-7 of a mailbox name: printable ASCII stands for itself
/// (`&` as `&-`), every other run of characters is `&`, the base64 of its UTF-16BE with `,`
/// for `/` and no padding, and `-`. Every IMAP4rev1 server (Gmail included) takes it; a name
/// that is all printable ASCII but for `&` comes out unchanged.
pub(crate) fn mailbox_to_modified_utf7(name: &str) -> String {
    let engine = base64::engine::GeneralPurpose::new(
        &base64::alphabet::IMAP_MUTF7,
        base64::engine::general_purpose::NO_PAD,
    );
    let mut out = String::with_capacity(name.len());
    let mut run: Vec<u16> = Vec::new();
    let flush = |run: &mut Vec<u16>, out: &mut String| {
        if !run.is_empty() {
            let bytes: Vec<u8> = run.iter().flat_map(|u| u.to_be_bytes()).collect();
            out.push('&');
            out.push_str(&engine.encode(bytes));
            out.push('-');
            run.clear();
        }
    };
    for c in name.chars() {
        if (' '..='~').contains(&c) {
            flush(&mut run, &mut out);
            if c == '&' {
                out.push_str("&-");
            } else {
                out.push(c);
            }
        } else {
            let mut units = [0u16; 2];
            run.extend_from_slice(c.encode_utf16(&mut units));
        }
    }
    flush(&mut run, &mut out);
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn url(s: &str) -> ImapUrl {
        ImapUrl::parse(s).unwrap_or_else(|e| panic!("{s}: {e}"))
    }

    #[test]
    fn forms() {
        assert_eq!(
            url("imaps://me%40example.com@imap.gmail.com/INBOX"),
            ImapUrl {
                implicit_tls: true,
                user: Some("me@example.com".into()),
                host: "imap.gmail.com".into(),
                port: 993,
                mailbox: "INBOX".into(),
            }
        );
        let u = url("imap://alice@127.0.0.1:1143");
        assert!(!u.implicit_tls);
        assert_eq!((u.port, u.mailbox.as_str()), (1143, "INBOX"));
        assert_eq!(url("IMAPS://a@h/").mailbox, "INBOX");
        assert_eq!(
            url("imaps://a@h/%5BGmail%5D/All%20Mail").mailbox,
            "[Gmail]/All Mail"
        );
        assert_eq!(url("imaps://a@h/Re%C3%A7us").mailbox, "Reçus");
        let u = url("imap://[::1]:144/x");
        assert_eq!((u.host.as_str(), u.port, u.user), ("::1", 144, None));
        assert_eq!(url("imaps://a@[::1]").port, 993);
    }

    #[test]
    fn refused() {
        for bad in [
            "pop3://a@h",
            "imaps://a:pw@h/INBOX",
            "imaps://a;AUTH=*@h/INBOX",
            "imaps://a@h/INBOX;UIDVALIDITY=5",
            "imaps://a@h/INBOX?x",
            "imaps://a@h:0/INBOX",
            "imaps://a@h:99999/INBOX",
            "imaps://a@/INBOX",
            "imaps://a@h/IN%0D%0ABOX",
            "imaps://a@h/IN\r\nBOX",
            "imaps://a@h/%FF",
            "imaps://a@h/%4",
        ] {
            assert!(
                matches!(ImapUrl::parse(bad), Err(ImapError::Url(_))),
                "{bad}"
            );
        }
    }

    #[test]
    fn modified_utf7() {
        // RFC 3501 §5.1.3's example, and the usual suspects.
        assert_eq!(
            mailbox_to_modified_utf7("~peter/mail/台北/日本語"),
            "~peter/mail/&U,BTFw-/&ZeVnLIqe-"
        );
        assert_eq!(mailbox_to_modified_utf7("A & B"), "A &- B");
        assert_eq!(mailbox_to_modified_utf7("Reçus"), "Re&AOc-us");
        assert_eq!(
            mailbox_to_modified_utf7("[Gmail]/All Mail"),
            "[Gmail]/All Mail"
        );
        // Outside the BMP: a surrogate pair.
        assert_eq!(mailbox_to_modified_utf7("📬"), "&2D3c7A-");
    }
}
