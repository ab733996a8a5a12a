//! XOAUTH2 (Google's format) and OAUTHBEARER (RFC 7628) messages and their JSON errors.

use std::fmt::Write as _;

/// Why the application rejects an OAuth token: the fields of the JSON error challenge
/// (RFC 7628 §3.2.2; Google's XOAUTH2 uses the same `status` and `scope`).
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct OAuthError {
    /// `status`: for OAUTHBEARER an RFC 6749 error code such as `invalid_token`; for XOAUTH2
    /// usually an HTTP status such as `401`.
    pub status: String,
    /// `scope`: the scope the token needs, if useful to the client.
    pub scope: Option<String>,
    /// `openid-configuration` (OAUTHBEARER only): where the client can discover the issuer.
    pub openid_configuration: Option<String>,
}

impl OAuthError {
    /// An error with only a status.
    pub fn new(status: impl Into<String>) -> Self {
        OAuthError {
            status: status.into(),
            scope: None,
            openid_configuration: None,
        }
    }

    /// The JSON object sent as the error challenge. XOAUTH2 adds `"schemes":"bearer"`, as
    /// Google's servers do.
    pub(crate) fn to_json(&self, xoauth2: bool) -> Vec<u8> {
        let mut s = String::from("{");
        push_pair(&mut s, "status", &self.status);
        if xoauth2 {
            s.push(',');
            push_pair(&mut s, "schemes", "bearer");
        }
        if let Some(scope) = &self.scope {
            s.push(',');
            push_pair(&mut s, "scope", scope);
        }
        if let (false, Some(conf)) = (xoauth2, &self.openid_configuration) {
            s.push(',');
            push_pair(&mut s, "openid-configuration", conf);
        }
        s.push('}');
        s.into_bytes()
    }
}

fn push_pair(s: &mut String, key: &str, value: &str) {
    push_json_string(s, key);
    s.push(':');
    push_json_string(s, value);
}

fn push_json_string(s: &mut String, v: &str) {
    s.push('"');
    for c in v.chars() {
        match c {
            '"' => s.push_str("\\\""),
            '\\' => s.push_str("\\\\"),
            c if u32::from(c) < 0x20 => {
                let _ = write!(s, "\\u{:04x}", u32::from(c));
            }
            c => s.push(c),
        }
    }
    s.push('"');
}

/// A token must be non-empty and free of spaces and control characters (RFC 6750 b64token is
/// stricter; real tokens stay within it, so this only guards the framing).
pub(crate) fn is_token(t: &str) -> bool {
    !t.is_empty() && t.bytes().all(|b| b.is_ascii_graphic())
}

/// `user=U ^A auth=Bearer T ^A ^A`.
pub(crate) fn xoauth2_message(user: &str, token: &str) -> Vec<u8> {
    format!("user={user}\x01auth=Bearer {token}\x01\x01").into_bytes()
}

/// `n,a=U, ^A [host=H ^A] [port=P ^A] auth=Bearer T ^A ^A` (RFC 7628 §3.1).
pub(crate) fn oauthbearer_message(
    user: &str,
    token: &str,
    host: Option<&str>,
    port: Option<u16>,
) -> Vec<u8> {
    let mut s = format!("n,a={},\x01", super::scram::escape_saslname(user));
    if let Some(h) = host {
        let _ = write!(s, "host={h}\x01");
    }
    if let Some(p) = port {
        let _ = write!(s, "port={p}\x01");
    }
    let _ = write!(s, "auth=Bearer {token}\x01\x01");
    s.into_bytes()
}

/// A parsed client message of either mechanism.
#[derive(Debug)]
pub(crate) struct OAuthMessage<'a> {
    pub(crate) user: &'a str,
    pub(crate) authzid_escaped: bool,
    pub(crate) token: &'a str,
    pub(crate) host: Option<&'a str>,
    pub(crate) port: Option<&'a str>,
}

/// The `key=value ^A` pairs up to the closing `^A ^A`. Returns (key, value) pairs.
fn kv_pairs(body: &str) -> Option<Vec<(&str, &str)>> {
    let inner = body.strip_suffix("\x01\x01")?;
    if inner.is_empty() {
        return Some(Vec::new());
    }
    inner
        .split('\x01')
        .map(|kv| {
            let (k, v) = kv.split_once('=')?;
            let key_ok = !k.is_empty() && k.bytes().all(|b| b.is_ascii_alphabetic());
            // RFC 7628 value: *(VCHAR / SP / HTAB / CR / LF)
            let val_ok = v
                .bytes()
                .all(|b| b.is_ascii_graphic() || matches!(b, b' ' | b'\t' | b'\r' | b'\n'));
            (key_ok && val_ok).then_some((k, v))
        })
        .collect()
}

fn bearer(auth: &str) -> Option<&str> {
    let (scheme, token) = auth.split_once(' ')?;
    (scheme.eq_ignore_ascii_case("bearer") && is_token(token)).then_some(token)
}

/// Parses an XOAUTH2 initial response; keys may come in any order, unknown ones are ignored.
pub(crate) fn parse_xoauth2(msg: &str) -> Option<OAuthMessage<'_>> {
    let pairs = kv_pairs(msg)?;
    let mut user = None;
    let mut token = None;
    for (k, v) in pairs {
        match k {
            "user" if user.is_none() => user = Some(v),
            "auth" if token.is_none() => token = Some(bearer(v)?),
            "user" | "auth" => return None,
            _ => {}
        }
    }
    Some(OAuthMessage {
        user: user.filter(|u| !u.is_empty())?,
        authzid_escaped: false,
        token: token?,
        host: None,
        port: None,
    })
}

/// Parses an OAUTHBEARER client response (RFC 7628 §3.1). `Err(true)` means the client asked
/// for channel binding, which is not supported; `Err(false)` means malformed.
pub(crate) fn parse_oauthbearer(msg: &str) -> Result<OAuthMessage<'_>, bool> {
    let (cbind, rest) = msg.split_once(',').ok_or(false)?;
    match cbind {
        "n" | "y" => {}
        c if c.starts_with("p=") => return Err(true),
        _ => return Err(false),
    }
    let (authzid, rest) = rest.split_once(',').ok_or(false)?;
    let user = match authzid {
        "" => "",
        a => a.strip_prefix("a=").ok_or(false)?,
    };
    let body = rest.strip_prefix('\x01').ok_or(false)?;
    let pairs = kv_pairs(body).ok_or(false)?;
    let mut token = None;
    let mut host = None;
    let mut port = None;
    for (k, v) in pairs {
        let slot = match k {
            "auth" => {
                if token.is_some() {
                    return Err(false);
                }
                token = Some(bearer(v).ok_or(false)?);
                continue;
            }
            "host" => &mut host,
            "port" => &mut port,
            _ => continue, // RFC 7628 §3.1: unknown keys MUST be ignored.
        };
        if slot.replace(v).is_some() {
            return Err(false);
        }
    }
    Ok(OAuthMessage {
        user,
        authzid_escaped: true,
        token: token.ok_or(false)?,
        host,
        port,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn json_escapes() {
        let e = OAuthError {
            status: "a\"b\\c\n".into(),
            scope: Some("s".into()),
            openid_configuration: Some("x".into()),
        };
        assert_eq!(
            e.to_json(false),
            br#"{"status":"a\"b\\c\u000a","scope":"s","openid-configuration":"x"}"#
        );
        assert_eq!(
            e.to_json(true),
            br#"{"status":"a\"b\\c\u000a","schemes":"bearer","scope":"s"}"#
        );
    }

    #[test]
    fn kv_parsing() {
        assert!(kv_pairs("a=b\x01").is_none());
        assert_eq!(kv_pairs("a=b\x01\x01"), Some(vec![("a", "b")]));
        assert!(kv_pairs("1=b\x01\x01").is_none());
        assert!(kv_pairs("ab\x01\x01").is_none());
        assert!(parse_xoauth2("user=u\x01user=v\x01auth=Bearer t\x01\x01").is_none());
        assert!(parse_xoauth2("user=u\x01auth=Basic t\x01\x01").is_none());
        assert_eq!(
            parse_oauthbearer("p=tls-unique,,\x01auth=Bearer t\x01\x01").err(),
            Some(true)
        );
    }
}
