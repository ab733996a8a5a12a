//! POP URLs: `pop3://[user[;AUTH=mechanism]@]host[:port]` and `pop3s://…` (RFC 2384 with
//! curl's scheme names, RFC 8314 for pop3s). No password in the URL (RFC 2384 §3).

/// A parsed POP URL.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct PopUrl {
    /// `pop3s`: implicit TLS.
    pub(crate) secure: bool,
    pub(crate) user: Option<String>,
    /// `;AUTH=` value: a SASL mechanism, `+APOP`, or `*`.
    pub(crate) auth: Option<String>,
    pub(crate) host: String,
    pub(crate) port: u16,
}

/// `%XX` escapes to bytes, in a part of a POP or IMAP URL; the result must be UTF-8 without
/// CR, LF or NUL (no command injection through an escape).
pub(crate) fn percent_decode(s: &str) -> Result<String, String> {
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        if b[i] == b'%' {
            let hex = s.get(i + 1..i + 3).ok_or("truncated %-escape")?;
            out.push(u8::from_str_radix(hex, 16).map_err(|_| "invalid %-escape")?);
            i += 3;
        } else {
            out.push(b[i]);
            i += 1;
        }
    }
    if out.iter().any(|&b| matches!(b, b'\r' | b'\n' | 0)) {
        return Err("%0D, %0A and %00 are not allowed".into());
    }
    String::from_utf8(out).map_err(|_| "a %-escaped part is not UTF-8".into())
}

/// Parses `url`; CR, LF and NUL anywhere are refused (no command injection through it).
pub(crate) fn parse(url: &str) -> Result<PopUrl, String> {
    let bad = |why: &str| Err(format!("invalid URL {url:?}: {why}"));
    let decode = |part: &str| percent_decode(part).map_err(|e| format!("invalid URL {url:?}: {e}"));
    // Checked on the raw text and again after percent-decoding (below).
    if url.bytes().any(|b| b == b'\r' || b == b'\n' || b == 0) {
        return bad("CR, LF and NUL are not allowed");
    }
    let (secure, rest) = if let Some(r) = url.strip_prefix("pop3s://") {
        (true, r)
    } else if let Some(r) = url
        .strip_prefix("pop3://")
        .or_else(|| url.strip_prefix("pop://"))
    {
        (false, r)
    } else {
        return bad("it must start with pop3:// or pop3s://");
    };
    let rest = rest.trim_end_matches('/');
    let (userinfo, hostport) = match rest.rsplit_once('@') {
        Some((u, h)) => (Some(u), h),
        None => (None, rest),
    };
    let (user, auth) = match userinfo {
        None => (None, None),
        Some(u) => {
            let (name, params) = match u.split_once(';') {
                Some((n, p)) => (n, Some(p)),
                None => (u, None),
            };
            if name.contains(':') {
                return bad(
                    "passwords do not belong in the URL (RFC 2384); use --password-env and friends",
                );
            }
            let auth = match params {
                None => None,
                Some(p) => match p.split_once('=') {
                    Some((k, v)) if k.eq_ignore_ascii_case("auth") && !v.is_empty() => {
                        Some(decode(v)?)
                    }
                    _ => return bad("only ;AUTH=mechanism is understood after the user name"),
                },
            };
            let name = decode(name)?;
            ((!name.is_empty()).then_some(name), auth)
        }
    };
    let (host, port) = if let Some(h) = hostport.strip_prefix('[') {
        let (h, after) = h.split_once(']').ok_or("unclosed [ in the host")?;
        (h.to_string(), after.strip_prefix(':'))
    } else {
        match hostport.rsplit_once(':') {
            Some((h, p)) => (h.to_string(), Some(p)),
            None => (hostport.to_string(), None),
        }
    };
    if host.is_empty() || host.contains('/') {
        return bad("no host");
    }
    let port = match port {
        Some(p) => p
            .parse()
            .map_err(|_| format!("invalid URL {url:?}: bad port"))?,
        None if secure => 995,
        None => 110,
    };
    let all = [Some(&host), user.as_ref(), auth.as_ref()];
    if all
        .iter()
        .flatten()
        .any(|s| s.bytes().any(|b| b == b'\r' || b == b'\n' || b == 0))
    {
        return bad("CR, LF and NUL are not allowed");
    }
    Ok(PopUrl {
        secure,
        user,
        auth,
        host,
        port,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn forms() {
        let u = parse("pop3s://alice%40example.com;AUTH=SCRAM-SHA-256@mail.example.com").unwrap();
        assert_eq!(
            u,
            PopUrl {
                secure: true,
                user: Some("alice@example.com".into()),
                auth: Some("SCRAM-SHA-256".into()),
                host: "mail.example.com".into(),
                port: 995
            }
        );
        let u = parse("pop3://bob@[::1]:1110/").unwrap();
        assert_eq!((u.host.as_str(), u.port, u.secure), ("::1", 1110, false));
        assert_eq!(parse("pop3://h").unwrap().port, 110);
        assert!(parse("imap://h").is_err());
        assert!(parse("pop3://u:pw@h").is_err());
        assert!(parse("pop3://u%0d%0aQUIT@h").is_err());
        assert!(parse("pop3://h:notaport").is_err());
        assert!(parse("pop3://u;FOO=x@h").is_err());
        assert!(parse("pop3://u@h\r\nx").is_err());
        assert!(parse("pop3://u;AUTH=PLAIN%00@h").is_err());
        let u = parse("pop3://u;AUTH=+APOP@h:1").unwrap();
        assert_eq!(u.auth.as_deref(), Some("+APOP"));
    }
}
