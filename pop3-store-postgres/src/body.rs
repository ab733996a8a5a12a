//! Body octets: the CRLF conversion done once at delivery. Bodies are stored with CRLF line
//! ends, so a stored body is exactly what `RETR` sends and its length is the size POP3
//! reports; nothing is converted on the way out (the `TOP` cut is
//! [`pop3_server_core::top::TopCut`]).

use memchr::memchr_iter;

/// `message` with every bare LF turned into CRLF (CRLF and a bare CR are kept as they are).
pub(crate) fn to_crlf(message: &[u8]) -> Vec<u8> {
    let bare = memchr_iter(b'\n', message)
        .filter(|&i| i == 0 || message[i - 1] != b'\r')
        .count();
    let mut out = Vec::with_capacity(message.len() + bare);
    let mut start = 0;
    for i in memchr_iter(b'\n', message) {
        if i == 0 || message[i - 1] != b'\r' {
            out.extend_from_slice(&message[start..i]);
            out.extend_from_slice(b"\r\n");
            start = i + 1;
        }
    }
    out.extend_from_slice(&message[start..]);
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn crlf_conversion() {
        assert_eq!(to_crlf(b""), b"");
        assert_eq!(to_crlf(b"\n"), b"\r\n");
        assert_eq!(to_crlf(b"a\nb\r\nc\rd\n\n"), b"a\r\nb\r\nc\rd\r\n\r\n");
        assert_eq!(to_crlf(b"no end"), b"no end");
    }
}
