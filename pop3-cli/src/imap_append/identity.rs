//! What identifies a message in a mailbox, for [`ImapTarget::contains`](super::ImapTarget::contains):
//! the question a run asks after a crash (or a connection lost during an APPEND) before it
//! appends a message that may already be there.
//!
//! - With a `Message-ID:` (printable ASCII, as RFC 5322 has it): `UID SEARCH HEADER Message-ID
//!   "<id>"`, and any hit means the message is there. A server that rewrites messages on
//!   APPEND (Exchange) keeps the Message-ID, so this holds there too. The residual risk: a
//!   *different* message with the same Message-ID already in the mailbox (the same mailing
//!   list post fetched from two accounts) makes the pending one count as delivered.
//! - Without one: the search narrows by size (`LARGER n-1 SMALLER m+1`, `n` the octets sent
//!   and `m` that plus one for each bare LF, which a server may count as CRLF in
//!   RFC822.SIZE) and by the `Date:` and `Subject:` values when they are one plain ASCII line
//!   (a server may decode RFC 2047 words or unfold lines before it compares, so other values
//!   are left out rather than missed); then each candidate (the newest [`CANDIDATES`]) is
//!   fetched whole and compared with the message, line ends normalised. So a hit is the same
//!   message octet for octet: the residual risk is two messages without a Message-ID that are
//!   identical (`Received:` lines and their timestamps included), of which the second, if a
//!   crash left it pending, would be taken for the first. A server that rewrites messages on
//!   APPEND makes the check miss, and the message is appended again (a duplicate, never a
//!   loss).

use imap_next::imap_types::core::{AString, Vec1};
use imap_next::imap_types::search::SearchKey;

/// How many candidates (the highest UIDs) a search without a Message-ID compares.
pub(super) const CANDIDATES: usize = 50;

/// A message's identity for a search.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Identity {
    /// The `Message-ID:` value (unfolded, trimmed), when it is usable in a search.
    pub(crate) message_id: Option<String>,
    /// `Date:` and `Subject:` values usable in a search.
    date: Option<String>,
    subject: Option<String>,
    /// RFC822.SIZE bounds: the octets as sent, and that with each bare LF counted as CRLF.
    size: (u64, u64),
}

impl Identity {
    /// The identity of `message` (CRLF line ends, as appended).
    pub(crate) fn of(message: &[u8]) -> Identity {
        let header = header_of(message);
        let value = |name: &str| field(header, name);
        let bare_lf = message
            .iter()
            .enumerate()
            .filter(|&(i, &b)| b == b'\n' && (i == 0 || message[i - 1] != b'\r'))
            .count() as u64;
        Identity {
            message_id: value("Message-ID").filter(|v| v.len() > 2 && v != "<>" && searchable(v)),
            date: value("Date")
                .filter(|v| !v.is_empty() && searchable(v) && single_line(header, "Date")),
            subject: value("Subject").filter(|v| {
                !v.is_empty()
                    && searchable(v)
                    && !v.contains("=?")
                    && single_line(header, "Subject")
            }),
            size: (message.len() as u64, message.len() as u64 + bare_lf),
        }
    }

    /// For the record and reports: `<id@host>`, else `size=N` and the date.
    pub(crate) fn describe(&self) -> String {
        match (&self.message_id, &self.date) {
            (Some(id), _) => id.clone(),
            (None, Some(date)) => format!("size={};date={date}", self.size.0),
            (None, None) => format!("size={}", self.size.0),
        }
    }

    /// The `UID SEARCH` criteria.
    pub(super) fn criteria(&self) -> Vec1<SearchKey<'static>> {
        let header = |name: &'static str, value: &str| {
            SearchKey::Header(
                AString::try_from(name).expect("a header name is an atom"),
                AString::try_from(value.to_string()).expect("printable ASCII is a quoted string"),
            )
        };
        if let Some(id) = &self.message_id {
            return Vec1::from(header("Message-ID", id));
        }
        let (low, high) = self.size;
        let mut keys = Vec::new();
        if let Ok(low) = u32::try_from(low)
            && low > 0
        {
            keys.push(SearchKey::Larger(low - 1));
        }
        keys.push(SearchKey::Smaller(
            u32::try_from(high.saturating_add(1)).unwrap_or(u32::MAX),
        ));
        if let Some(date) = &self.date {
            keys.push(header("Date", date));
        }
        if let Some(subject) = &self.subject {
            keys.push(header("Subject", subject));
        }
        Vec1::try_from(keys).expect("SMALLER is always there")
    }

    /// Whether a search hit is enough, or the hits must be compared with the message.
    pub(super) fn needs_comparison(&self) -> bool {
        self.message_id.is_none()
    }
}

/// Printable ASCII (and spaces): sent as an atom or a quoted string, never a literal, and
/// compared by every server the same way.
fn searchable(value: &str) -> bool {
    value.bytes().all(|b| (0x20..0x7f).contains(&b))
}

/// The header of `message`: up to and including the blank line (all of it without one).
fn header_of(message: &[u8]) -> &[u8] {
    if message.starts_with(b"\r\n") {
        return &message[..2];
    }
    if message.starts_with(b"\n") {
        return &message[..1];
    }
    let crlf = memchr::memmem::find(message, b"\n\r\n").map(|i| i + 3);
    let lf = memchr::memmem::find(message, b"\n\n").map(|i| i + 2);
    let end = match (crlf, lf) {
        (Some(a), Some(b)) => a.min(b),
        (a, b) => a.or(b).unwrap_or(message.len()),
    };
    &message[..end]
}

/// Lines of `header`, without their line ends.
fn lines(header: &[u8]) -> impl Iterator<Item = &[u8]> {
    header
        .split(|&b| b == b'\n')
        .map(|l| l.strip_suffix(b"\r").unwrap_or(l))
}

/// Whether `name` starts `line` as a field name.
fn is_field(line: &[u8], name: &str) -> bool {
    line.len() > name.len()
        && line[name.len()] == b':'
        && line[..name.len()].eq_ignore_ascii_case(name.as_bytes())
}

/// The unfolded, trimmed value of the first field `name`.
fn field(header: &[u8], name: &str) -> Option<String> {
    super::header::first(header, name).map(|v| String::from_utf8_lossy(&v).trim().to_string())
}

/// Whether the first field `name` fits on one line (no folding a server might undo).
fn single_line(header: &[u8], name: &str) -> bool {
    let mut it = lines(header).skip_while(|l| !is_field(l, name));
    it.next();
    !it.next()
        .is_some_and(|l| l.first().is_some_and(|&b| b == b' ' || b == b'\t'))
}

/// `message` as compared with a candidate: every line end CRLF, the trailing ones cut.
pub(super) fn normalise(message: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(message.len() + 16);
    for (i, &b) in message.iter().enumerate() {
        if b == b'\n' && (i == 0 || message[i - 1] != b'\r') {
            out.push(b'\r');
        }
        out.push(b);
    }
    while out.ends_with(b"\r\n") {
        out.truncate(out.len() - 2);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn message_id_when_usable() {
        let m = b"Subject: x\r\nMessage-ID:\r\n <a.b@example.org>\r\n\r\nbody\r\n";
        let id = Identity::of(m);
        assert_eq!(id.message_id.as_deref(), Some("<a.b@example.org>"));
        assert_eq!(id.describe(), "<a.b@example.org>");
        assert_eq!(id.criteria().as_ref().len(), 1);
        assert!(!id.needs_comparison());
        // Not one: an empty one, `<>`, 8-bit, and one in the body only.
        for m in [
            &b"Message-ID: \r\n\r\n"[..],
            b"Message-Id: <>\r\n\r\n",
            "Message-ID: <é@x>\r\n\r\n".as_bytes(),
            b"Subject: x\r\n\r\nMessage-ID: <a@b>\r\n",
        ] {
            assert_eq!(Identity::of(m).message_id, None, "{m:?}");
        }
    }

    #[test]
    fn without_message_id_size_date_and_subject() {
        let m = b"Date: Mon, 2 Feb 2026 10:00:00 +0000\r\nSubject: hello\r\n\r\nbody\r\n";
        let id = Identity::of(m);
        assert!(id.needs_comparison());
        let n = m.len() as u32;
        assert_eq!(
            id.criteria().into_inner(),
            vec![
                SearchKey::Larger(n - 1),
                SearchKey::Smaller(n + 1),
                SearchKey::Header(
                    "Date".try_into().unwrap(),
                    "Mon, 2 Feb 2026 10:00:00 +0000".try_into().unwrap()
                ),
                SearchKey::Header("Subject".try_into().unwrap(), "hello".try_into().unwrap()),
            ]
        );
        assert_eq!(
            id.describe(),
            format!("size={n};date=Mon, 2 Feb 2026 10:00:00 +0000")
        );
        // As a server may give it back: LF, a line end added.
        assert_eq!(
            normalise(m),
            normalise(b"Date: Mon, 2 Feb 2026 10:00:00 +0000\nSubject: hello\n\nbody\n\n")
        );
        assert_ne!(normalise(m), normalise(b"Subject: hello\r\n\r\nbody\r\n"));
        // Encoded or folded values, and none at all: only the size.
        let m = b"Subject: =?UTF-8?Q?caf=C3=A9?=\r\nDate: Mon,\r\n 2 Feb 2026\r\n\r\nx\nbare\n";
        let id = Identity::of(m);
        let n = m.len() as u32;
        assert_eq!(
            id.criteria().into_inner(),
            vec![SearchKey::Larger(n - 1), SearchKey::Smaller(n + 2 + 1)]
        );
        let id = Identity::of(b"");
        assert_eq!(id.criteria().into_inner(), vec![SearchKey::Smaller(1)]);
    }
}
